r"""The masked linear layer: :math:`y = (W \odot M)_s x + b`, one type whatever its layout.

A layer is built from its connections by blocks between unit groups
(:class:`~sirenvae.masks.BlockLayer`): a graphical flow's layers (:func:`~sirenvae.masks.graphical_blocks`),
an MLP over parent sets (:func:`~sirenvae.masks.set_blocks`), one block per edge
(:func:`~sirenvae.masks.edge_blocks`), with several units per variable on either side where
:meth:`~sirenvae.masks.BlockLayer.with_units` says so. ``MaskedLinear(structure, layout=...)``
returns the layer in that layout (:mod:`sirenvae.layers.layout`): a dense one
(:class:`~sirenvae.layers.dense.DenseLinear`) or a block-sparse one
(:class:`~sirenvae.layers.blocks.BlockSparseLinear`). Both keep the structure, so a checkpoint
saved in either layout loads into either, and both hand a transform what it needs as a
:class:`Prepared`: the folded weight, the diagonal blocks and the off-diagonal part.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from sirenvae.defaults import KAPPA
from sirenvae.layers.layout import choose_layout
from sirenvae.layers.spectral import SpectralLinear
from sirenvae.masks import BlockLayer, edge_blocks

__all__ = ["MaskedLinear", "Prepared"]


class Prepared(NamedTuple):
    r"""A layer's weights prepared once for a transform (:meth:`MaskedLinear.prepare`).

    Attributes:
        weight: The masked, spectrally normalised weight times a factor, as the layout stores it:
            ``(out, in)`` dense, ``(blocks, out_units, in_units)`` by blocks.
        bias: The bias times its factor, or ``None``.
        diagonal: ``(groups, out_units, in_units)``: the blocks between the units of each variable
            (the first ``groups`` input groups are the output groups' own variables; a graphical
            layer, ``structure.diagonal``), else ``None``.
        off: The connections between different variables where the layer computes them apart
            from the diagonal (by :meth:`MaskedLinear.batch_last`: a dense layer's few such
            connections gathered into one small matrix, the block layout's other blocks), else
            ``None``.
    """

    weight: Tensor
    bias: Tensor | None
    diagonal: Tensor | None
    off: Tensor | None

    def detach(self) -> Prepared:
        """The same tensors cut from the parameters' graph."""
        return Prepared(*(None if t is None else t.detach() for t in self))


class MaskedLinear(SpectralLinear):
    r"""A linear layer :math:`y = (W \odot M)_s x + b` masked by a graph, in the layout it is given.

    With ``kappa`` set, :math:`(W \odot M)_s = (W \odot M) / \max(1, \sigma / \kappa)` where
    :math:`\sigma` estimates the spectral norm of :math:`W \odot M` by power iteration, run per
    connected component of the mask. The power vectors are persistent buffers, updated in training
    mode only; leaving training mode sets them to the top singular vectors, so in ``eval()`` the
    bound holds and no forward pass updates anything.

    Arguments:
        structure: The connections by blocks (:class:`~sirenvae.masks.BlockLayer`), or an
            ``(out, in)`` boolean mask (a group per unit).
        layout: ``"dense"``, ``"block-sparse"``, or ``"auto"``: the rule of
            :func:`~sirenvae.layers.layout.choose_layout` on this layer's blocks and output units
            (a network chooses for all its layers at once instead, from its graph).
        kappa: The spectral bound (``None``: no normalisation).
        n_power_iterations: Power iterations per forward pass in training mode.
        bias: Whether to learn a bias.
        bounded_groups: Bound only the input groups below this (the flow's own variables); the
            others (a context) are free, since invertibility in :math:`z` only needs
            :math:`\mathrm{Lip}_z(g) < 1`. All by default.
        by_blocks: A dense layer computes :meth:`batch_last` by its diagonal blocks plus the few
            other connections, where those are few (the hidden layers of a graphical flow), instead
            of one matmul. The block layout always does.

    Example:
        >>> S = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 1, 1]], dtype=torch.bool)
        >>> structure = edge_blocks(S).with_units(inputs=[1, 3, 1], outputs=2)
        >>> dense = MaskedLinear(structure, layout="dense", kappa=None)
        >>> sparse = MaskedLinear(structure, layout="block-sparse", kappa=None)
        >>> _ = sparse.load_state_dict(dense.state_dict())
        >>> x = torch.randn(4, 5)
        >>> torch.allclose(dense(x), sparse(x)), dense(x).shape
        (True, torch.Size([4, 6]))
    """

    #: The layout of the layer's class, and the class of every layout.
    layout: str
    _CLASSES: dict[str, type[MaskedLinear]] = {}

    def __init_subclass__(cls, layout: str | None = None, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if layout is not None:
            cls.layout = layout
            MaskedLinear._CLASSES[layout] = cls

    def __new__(cls, structure: BlockLayer | Tensor | None = None, *args, layout: str = "dense", **kwargs):
        if cls is MaskedLinear:
            if layout == "auto":
                s = _structure(structure)
                out_units = s.out_blocks * s.mask.shape[1]
                cells = s.out_blocks * s.in_blocks
                layout = choose_layout(layout, connections=s.mask.shape[0], cells=cells, units=out_units)
            try:
                cls = MaskedLinear._CLASSES[layout]
            except KeyError:
                choices = ", ".join(["auto", *MaskedLinear._CLASSES])
                raise ValueError(f"unknown layout {layout!r}; choose one of {choices}") from None
        return super().__new__(cls)

    def __init__(
        self,
        structure: BlockLayer | Tensor,
        *,
        layout: str = "dense",
        kappa: float | None = KAPPA,
        n_power_iterations: int = 1,
        bias: bool = True,
        bounded_groups: int | None = None,
        by_blocks: bool = False,
    ) -> None:
        super().__init__()
        structure = _structure(structure)
        if kappa is not None and not 0 < kappa:
            raise ValueError(f"kappa must be positive, got {kappa}")
        #: The connections by blocks, in both layouts (on the CPU): what checkpoint conversion reads.
        self.structure = structure
        self.kappa = kappa
        self.n_power_iterations = n_power_iterations
        self.bounded_groups = structure.in_blocks if bounded_groups is None else bounded_groups
        if not 0 < self.bounded_groups <= structure.in_blocks:
            raise ValueError(f"bounded_groups must lie in [1, {structure.in_blocks}], got {bounded_groups}")
        self._build(structure, bias, by_blocks)

    def _build(self, structure: BlockLayer, bias: bool, by_blocks: bool) -> None:
        """Registers the layout's ``weight``, ``bias``, ``mask`` and power vectors."""
        raise NotImplementedError

    @property
    def units(self) -> tuple[int, int]:
        """``(out_units, in_units)`` per group."""
        return self.structure.mask.shape[1], self.structure.mask.shape[2]

    @property
    def shape(self) -> tuple[int, int]:
        """``(out, in)`` of the equivalent dense layer."""
        return self.structure.shape

    @property
    def in_features(self) -> int:
        return self.shape[1]

    @property
    def out_features(self) -> int:
        return self.shape[0]

    @property
    def bounded_columns(self) -> int:
        """The number of bounded input units (those of the first :attr:`bounded_groups` groups)."""
        return self.bounded_groups * self.units[1]

    def prepare(
        self,
        update: bool | None = None,
        *,
        factor: Tensor | float = 1.0,
        bias_factor: Tensor | float | None = None,
    ) -> Prepared:
        r"""The weights a transform needs, computed once: :math:`(W \odot M)_s` times ``factor``, the
        bias times ``bias_factor`` (as it is by default), the diagonal blocks and the off-diagonal
        part (:class:`Prepared`).

        Arguments:
            update: Run a power iteration first; by default in training mode only.
            factor: A scalar folded into the weight (e.g. activations' scales).
            bias_factor: A scalar folded into the bias.
        """
        W = self.normalized_weight(update, factor)
        b = self.bias if bias_factor is None or self.bias is None else self.bias * bias_factor
        return Prepared(W, b, *self._parts(W))

    def _parts(self, W: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """``(diagonal, off)`` of a prepared weight."""
        raise NotImplementedError

    def batch_last(self, x: Tensor, prepared: Prepared | None = None) -> Tensor:
        """``(in, N) -> (out, N)``: the layer on batch-last activations, with weights from
        :meth:`prepare` (prepared now by default).
        """
        raise NotImplementedError

    def batch_last_vjp(
        self, prepared: Prepared, grad: Tensor, x: Tensor, *, weight_grad: bool = True, off_grad: bool = True
    ) -> tuple[Tensor, Prepared]:
        """The gradient of :meth:`batch_last` at ``x`` for the output gradient ``grad`` (both
        batch-last): that of ``x``, and those of the prepared tensors it multiplied by (``weight``, or
        ``diagonal`` and ``off`` where the layer computes by blocks; ``None`` where not asked or
        unused), for hand-written backward passes (:mod:`sirenvae.flows.fused`). A layout without it
        leaves those to autograd.
        """
        raise NotImplementedError

    def to_dense(self, weight: Tensor | None = None) -> Tensor:
        r"""The dense ``(out, in)`` matrix of a weight in this layer's layout (default :math:`W \odot M`)."""
        raise NotImplementedError

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        """Also loads a checkpoint of the other layout: a dense ``(out, in)`` weight and mask, or
        blocks ``(blocks, out_units, in_units)``, if its mask is this layer's graph.
        """
        mask, weight = state_dict.get(prefix + "mask"), state_dict.get(prefix + "weight")
        if mask is not None and weight is not None and mask.dim() != self.mask.dim():
            s = self.structure
            theirs, ours = (s.dense(), s.blocks_of) if mask.dim() == 2 else (s.mask, s.dense_weight)
            if tuple(mask.shape) != tuple(theirs.shape) or not torch.equal(mask.bool().cpu(), theirs):
                raise ValueError(f"{prefix}mask of the checkpoint does not match this layer's graph")
            state_dict[prefix + "weight"] = ours(weight)
            state_dict[prefix + "mask"] = self.mask
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        (out, inp), blocks = self.shape, self.structure.mask.shape[0]
        return (
            f"layout={self.layout}, shape=({out}, {inp}), {blocks=}, "
            f"effective_weights={int(self.mask.sum())}, kappa={self.kappa}"
        )


def _structure(structure: BlockLayer | Tensor) -> BlockLayer:
    if isinstance(structure, BlockLayer):
        return structure
    mask = torch.as_tensor(structure)
    if mask.ndim != 2:
        raise ValueError(f"mask must be (out, in), got shape {tuple(mask.shape)}")
    return edge_blocks(mask)
