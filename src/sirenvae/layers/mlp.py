r"""An MLP masked by parent sets (ELU, no spectral bound), in either layout: a decoder's network.

Hidden units carry the distinct sets (``hidden_per_set`` per set and layer,
:func:`~sirenvae.masks.set_blocks`); a connection is kept iff the receiving unit's set contains the
sending unit's, so output :math:`o` depends only on the inputs in ``sets[o]``. The inputs and the
outputs may have several units per variable (``in_units``, ``out_units``): every unit keeps its
variable's connections.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from sirenvae.layers.layout import choose_layout
from sirenvae.layers.linear import MaskedLinear
from sirenvae.masks import set_blocks, set_groups

__all__ = ["MaskedMLP", "mlp_layout"]


def mlp_layout(layout: str, sets: Tensor, hidden_per_set: int) -> str:
    """The layout of an MLP over ``sets`` by :func:`~sirenvae.layers.layout.choose_layout`: the density
    of the sets, and ``hidden_per_set`` hidden units per distinct set.
    """
    sets = sets.bool()
    return choose_layout(
        layout,
        connections=int(sets.sum()),
        cells=sets.numel(),
        units=lambda: set_groups(sets)[2] * hidden_per_set,  # walks every member in Python: last
    )


class MaskedMLP(nn.Module):
    r"""An MLP whose output :math:`o` depends only on the inputs in ``sets[o]``.

    Arguments:
        sets: ``(O, I)`` boolean, the inputs each output may see.
        hidden_per_set: Hidden units per distinct output set and layer.
        hidden_layers: The number of hidden layers.
        width: With full sets (a plain MLP), the hidden width instead.
        layout: ``"dense"``, ``"block-sparse"`` (memory by the members of the sets rather than by
            ``O x I``) or ``"auto"`` (:func:`mlp_layout`). Both compute the same function.
        in_units: Units per input (an int for all): input :math:`i` is that many columns.
        out_units: Units per output (an int for all): output :math:`o` is that many rows.
    """

    def __init__(
        self,
        sets: Tensor,
        hidden_per_set: int,
        hidden_layers: int,
        width: int = 0,
        *,
        layout: str = "dense",
        in_units: Tensor | int | None = None,
        out_units: Tensor | int | None = None,
    ) -> None:
        super().__init__()
        sets = sets.bool()
        layout = mlp_layout(layout, sets, hidden_per_set)
        if width and bool(sets.all()):
            hidden_per_set = width  # one set: its units are the hidden layer
        layers = list(set_blocks(sets, hidden_per_set, hidden_layers))
        if in_units is not None:
            layers[0] = layers[0].with_units(inputs=in_units)
        if out_units is not None:
            layers[-1] = layers[-1].with_units(outputs=out_units)
        self.layers = nn.ModuleList(MaskedLinear(L, layout=layout, kappa=None) for L in layers)

    @property
    def layout(self) -> str:
        """The layout of the layers."""
        return self.layers[0].layout

    def forward(self, x: Tensor) -> Tensor:
        if self.layout == "dense":  # batch-first, one matmul a layer
            for layer in self.layers[:-1]:
                x = F.elu(layer(x))
            return self.layers[-1](x)
        h = x.reshape(-1, x.shape[-1]).T.contiguous()
        for layer in self.layers[:-1]:
            h = F.elu(layer.batch_last(h))
        out = self.layers[-1].batch_last(h)
        return out.T.reshape(*x.shape[:-1], -1)
