r"""The proposal of missing cells: a missing node that others depend on, drawn with its Markov blanket.

A row with holes is scored by importance sampling over the latents *and* the missing values that
other nodes read (:meth:`~sirenvae.models.SIReNVAE.importance_samples`). Drawn from its own decoder
conditional :math:`p(u_j \mid pa(j))`, a missing node is proposed blind to its children, so a row
whose hole has informative children gets few effective draws. Here a missing continuous node
:math:`j` with children is drawn from

.. math:: u_j = \mu_j + \sigma_j \, (a_j + e^{b_j} \eta_j), \qquad \eta_j \sim p_\eta,

where :math:`\mu_j, \sigma_j, p_\eta` are its decoder conditional's location, scale and noise, and
:math:`(a_j, b_j)` come from an MLP masked so that they read only :math:`j`'s Markov blanket in the
graph (its parents, children and the children's other parents): the latents (drawn first by the
encoder), the present cells (a hole reads as 0) and the presence bits. They never read a drawn
missing value, so the draws stay triangular in the graph's order and the proposal's density is

.. math:: \log q(u_j) = \log p_\eta(\eta_j) - \log \sigma_j - b_j,

and the importance weight gains :math:`\sum_j \log p(u_j \mid pa(j)) - \log q(u_j)`: the bound on
:math:`\log p(x_{obs})` holds whatever the network outputs. The last layer starts at zero, where the
proposal is the decoder conditional (the scheme without it); training by the same objective moves
it towards :math:`p(u_j \mid z, x_{obs})`. Leaves (a missing leaf's factor integrates to 1) and
discrete nodes keep the decoder's draw.

References:
    | Faithful Inversion of Generative Models for Effective Amortized Inference (Webb et al., 2018)
    | https://arxiv.org/abs/1712.00287
    | MIWAE: Deep Generative Modelling and Imputation of Incomplete Data Sets (Mattei & Frellsen, 2019)
    | https://arxiv.org/abs/1812.02633
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sirenvae.graph import LatentSplit
from sirenvae.layers import MaskedMLP
from sirenvae.models.observation import Observation, graph_units

__all__ = ["HoleProposal", "LOG_SCALE_RANGE", "blanket_sets", "proposed_nodes"]

#: :math:`b_j = r \tanh(b_{raw} / r)`: the proposal's scale stays within :math:`e^{\pm r}` of the
#: decoder conditional's.
LOG_SCALE_RANGE = 4.0


def proposed_nodes(split: LatentSplit, obs: Observation) -> list[int]:
    """The observed nodes (positions among ``split.observed``) a hole of which is proposed: those
    with location-scale noise (continuous families) and at least one child in the graph.
    """
    g = split.graph
    return [
        i
        for i, (v, f) in enumerate(zip(split.observed, obs.members, strict=True))
        if f.abduction and not f.discrete and len(g.children(v)) > 0
    ]


def blanket_sets(split: LatentSplit, targets: list[int]) -> Tensor:
    """``(T, V + X)`` boolean: what target ``t`` reads, the graph's nodes of its Markov blanket
    (columns in graph order) and the presence bits of its observed members (then in observed order).
    """
    g = split.graph
    index = {v: k for k, v in enumerate(g.nodes)}
    observed = {v: k for k, v in enumerate(split.observed)}
    sets = torch.zeros(len(targets), len(g.nodes) + len(split.observed), dtype=torch.bool)
    for t, i in enumerate(targets):
        v = split.observed[i]
        blanket = set(g.parents(v)) | set(g.children(v))
        for c in g.children(v):
            blanket |= set(g.parents(c))
        blanket.discard(v)
        for u in blanket:
            sets[t, index[u]] = True
            if u in observed:
                sets[t, len(g.nodes) + observed[u]] = True
    return sets


class HoleProposal(nn.Module):
    r"""The shift and log-scale :math:`(a_j, b_j)` of the proposal of each target's hole (see the module).

    Arguments:
        split: The network and its latent/observed nodes.
        obs: The observed nodes' families.
        hidden_per_set: Hidden units per distinct Markov blanket.
        hidden_layers: Hidden layers of the MLP.
        layout: The MLP's layout (:class:`~sirenvae.layers.MaskedMLP`).
    """

    def __init__(
        self,
        split: LatentSplit,
        obs: Observation,
        hidden_per_set: int = 4,
        hidden_layers: int = 1,
        layout: str = "auto",
    ) -> None:
        super().__init__()
        targets = proposed_nodes(split, obs)
        if not targets:
            raise ValueError("no observed node has both continuous noise and a child: nothing to propose")
        self.register_buffer("targets", torch.tensor(targets, dtype=torch.long), persistent=False)
        covered = torch.zeros(len(split.observed), dtype=torch.bool)
        covered[targets] = True
        #: ``(D,)`` boolean over the observed nodes: the targets.
        self.register_buffer("covered", covered, persistent=False)
        in_units = torch.cat([graph_units(split, obs), torch.ones(len(split.observed), dtype=torch.long)])
        self.net = MaskedMLP(
            blanket_sets(split, targets),
            hidden_per_set,
            hidden_layers,
            layout=layout,
            in_units=in_units,
            out_units=2,
        )
        with torch.no_grad():  # the decoder conditional at the start
            last = self.net.layers[-1]
            last.weight.zero_()
            if last.bias is not None:
                last.bias.zero_()

    def forward(self, nodes: Tensor, present: Tensor) -> tuple[Tensor, Tensor]:
        """``(a, b)``, each ``(*, D)`` over the observed nodes (0 where a node is no target), from
        the nodes' input units with every hole at 0 ``(*, units)`` and the presence bits ``(*, D)``.
        """
        shape = torch.broadcast_shapes(nodes.shape[:-1], present.shape[:-1])
        inputs = torch.cat([nodes.expand(*shape, -1), present.to(nodes.dtype).expand(*shape, -1)], -1)
        out = self.net(inputs).unflatten(-1, (-1, 2))  # (*, T, 2), node-major
        a = nodes.new_zeros(*shape, present.shape[-1])
        b = torch.zeros_like(a)
        a[..., self.targets] = out[..., 0]
        b[..., self.targets] = LOG_SCALE_RANGE * torch.tanh(out[..., 1] / LOG_SCALE_RANGE)
        return a, b
