r"""Masked layers that own their storage layout: one type, dense or block-sparse.

- :class:`MaskedLinear` (:mod:`~sirenvae.layers.linear`): :math:`y = (W \odot M)_s x + b` over the
  connections of a graph by blocks between unit groups (:class:`~sirenvae.masks.BlockLayer`),
  several units per variable on either side allowed; ``MaskedLinear(structure, layout=...)`` is
  the layer in the dense layout (:mod:`~sirenvae.layers.dense`) or the block-sparse one
  (:mod:`~sirenvae.layers.blocks`). It loads a checkpoint of either layout, and
  :meth:`~MaskedLinear.prepare` hands a transform its folded weights, diagonal blocks and
  off-diagonal part as a :class:`Prepared`.
- :mod:`~sirenvae.layers.layout`: the layouts and the one rule that picks one for ``"auto"``.
- :class:`MaskedMLP` (:mod:`~sirenvae.layers.mlp`): an MLP over parent sets, a decoder's network.
- :class:`GraphCoupling` and :class:`Couplings` (:mod:`~sirenvae.layers.coupling`): the affine
  step's couplings :math:`B \odot A` in either layout.
- :class:`SpectralLinear` (:mod:`~sirenvae.layers.spectral`): the power iteration they share.

"""

from sirenvae.layers.blocks import BlockSparseLinear
from sirenvae.layers.coupling import Couplings, GraphCoupling
from sirenvae.layers.dense import DenseLinear
from sirenvae.layers.layout import LAYOUTS, MAX_DENSITY, SPARSE_MIN_UNITS, Layout, choose_layout
from sirenvae.layers.linear import MaskedLinear, Prepared
from sirenvae.layers.mlp import MaskedMLP, mlp_layout
from sirenvae.layers.spectral import SpectralLinear

__all__ = [
    "LAYOUTS",
    "MAX_DENSITY",
    "SPARSE_MIN_UNITS",
    "BlockSparseLinear",
    "Couplings",
    "DenseLinear",
    "GraphCoupling",
    "Layout",
    "MaskedLinear",
    "MaskedMLP",
    "Prepared",
    "SpectralLinear",
    "choose_layout",
    "mlp_layout",
]
