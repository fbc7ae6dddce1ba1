r"""The pieces of a model as lazy distributions: ``component(context)`` returns a distribution.

- decoder: :math:`p(x_i \mid pa(i))` in an observation family of :mod:`sirenvae.models.likelihoods`,
  its head from a masked MLP, a graph-masked affine map, or both (:class:`Decoder`);
- diagonal encoder: :math:`q(z \mid x) = \mathcal{N}(\mu(x), \mathrm{diag}\,\sigma(x)^2)` (the plain VAE);
- MAF encoder: zuko's masked autoregressive transforms, inverse-autoregressive direction (VAE+MAF).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from sirenvae.flows import DiagNormal, LazyDistribution
from sirenvae.layers import MaskedLinear, MaskedMLP, mlp_layout
from sirenvae.masks import edge_blocks
from sirenvae.models.config import DECODER_MEANS
from sirenvae.models.likelihoods import family
from sirenvae.models.observation import Observation
from sirenvae.models.tables import ConditionalTables, LearnedTables, learned_nodes

if TYPE_CHECKING:
    import zuko

__all__ = ["Decoder", "DiagonalEncoder", "maf_encoder"]

#: The range of the VAE encoder's log standard deviations, against overflow early in training.
LOG_SD_RANGE = (-12.0, 6.0)
#: The linear couplings start at this fraction of the usual ``±1/sqrt(fan_in)`` range: small, since
#: large ones would dominate the MLP, but not zero, where latent-to-observed couplings sit at a saddle.
LINEAR_INIT = 0.1


class Decoder(LazyDistribution):
    r""":math:`p(x_i \mid pa(i))` for every observed :math:`i`, in an observation family.

    ``decoder(nodes)`` takes the values of all nodes in the graph's order and returns the family's
    distribution over the observed ones (standardised units; see
    :mod:`sirenvae.models.likelihoods`). Each node gets the raw outputs the family declares
    (:attr:`~sirenvae.models.likelihoods.Family.heads`, e.g. a location and a raw scale):

    - ``"mlp"`` (the paper's): all of them from an MLP masked by the graph;
    - ``"linear"``: the location :math:`\mu_i = b_i + \sum_{j \in pa(i)} W_{ij} v_j`, the others
      learned constants per node (with ``"normal"``, a linear-Gaussian BN conditional);
    - ``"linear+mlp"``: that affine term plus the masked MLP's location as a residual, the others
      from the MLP.

    Arguments:
        sets: ``(X, V)`` boolean, the nodes output :math:`i` sees (its parents).
        hidden_per_set: Hidden units per distinct parent set and layer.
        hidden_layers: The number of hidden layers.
        min_scale: The smallest scale.
        width: With full sets (a plain VAE), the hidden width instead.
        mean: ``"mlp"``, ``"linear"`` or ``"linear+mlp"``.
        likelihood: The family's name in :data:`~sirenvae.models.likelihoods.FAMILIES`.
        layout: ``"dense"``, ``"block-sparse"`` (the MLP and the linear term by blocks between
            parent sets, memory and time by the graph's edges) or ``"auto"``, block-sparse for large
            sparse graphs (:func:`~sirenvae.layers.mlp_layout`). Both compute the same function.
        observation: The observed nodes' families (default: ``likelihood`` for every one).
        in_units: Input units per graph node (a category's one-hot block).
        tables: The graph positions of the observed nodes: a binary or categorical node whose
            parents are all observed and discrete then takes its smoothed count table
            (:mod:`sirenvae.models.tables`) instead of the head, fitted with the offsets.
        untabled: Graph positions of observed nodes whose column is never seen (summed hidden
            nodes): neither they nor their children take a table.
        learned: With ``untabled``, the summed nodes and their discrete children take free tables
            learned with the model (:class:`~sirenvae.models.tables.LearnedTables`) instead of heads.
    """

    def __init__(
        self,
        sets: Tensor,
        hidden_per_set: int,
        hidden_layers: int,
        min_scale: float,
        width: int = 0,
        *,
        mean: str = "mlp",
        likelihood: str = "normal",
        layout: str = "auto",
        observation: Observation | None = None,
        in_units: Tensor | None = None,
        tables: list[int] | None = None,
        untabled: Sequence[int] = (),
        learned: list[int] | None = None,
    ) -> None:
        super().__init__()
        if mean not in DECODER_MEANS:
            raise ValueError(f"unknown decoder mean {mean!r}; choose one of {', '.join(DECODER_MEANS)}")
        self.observed = sets.shape[0]
        if observation is None:
            observation = Observation([family(likelihood, min_scale)] * self.observed)
        if len(observation) != self.observed:
            raise ValueError(f"{len(observation)} observation families for {self.observed} observed nodes")
        self.observation = observation
        self.min_scale = min_scale
        self.mean_kind, self.likelihood = mean, likelihood
        sets = node_sets = sets.bool()
        if in_units is not None and bool((in_units != 1).any()):
            sets = sets.repeat_interleave(in_units, 1)  # each input unit with its variable's outputs
        layout = mlp_layout(layout, sets, hidden_per_set)
        rows = observation.head_rows()
        if mean != "linear":  # the outputs head by head (see sirenvae.models.observation)
            head_sets = sets[torch.tensor([i for i, _ in rows], dtype=torch.long)]
            self.net = MaskedMLP(head_sets, hidden_per_set, hidden_layers, width, layout=layout)
        if mean != "mlp":
            linear_sets = sets.repeat_interleave(observation.linear_units, 0)
            self.linear = MaskedLinear(edge_blocks(linear_sets), layout=layout, kappa=None)
            with torch.no_grad():
                self.linear.weight.mul_(LINEAR_INIT)
        single = observation.single
        if single is not None:  # one family: named constants per head
            if mean == "linear":
                for name in single.heads[1:]:
                    self.register_parameter(name, nn.Parameter(torch.zeros(self.observed)))
        else:
            fed = torch.zeros(len(rows), dtype=torch.bool)
            fed[observation.linear_rows] = True
            self.register_buffer("_fed", fed, persistent=False)
            if mean == "linear":
                self.raw_rows = nn.Parameter(torch.zeros(int((~fed).sum())))
            self.register_buffer("offset", torch.zeros(len(rows)))
        self.tables = self.learned = None
        units = in_units if in_units is not None else torch.ones(sets.shape[1], dtype=torch.long)
        where = {r: n for n, r in enumerate(rows)}

        def head_rows(nodes: list[int]) -> Tensor:
            heads = [len(observation.members[i].heads) for i in nodes]
            return torch.tensor([where[i, h] for i, k in zip(nodes, heads, strict=True) for h in range(k)])

        if tables is not None and any(f.levels for f in observation.members):
            found = ConditionalTables(node_sets, observation, tables, units, untabled)
            if len(found):
                self.tables = found
                self.register_buffer("_table_rows", head_rows(found.nodes), persistent=False)
        if learned is not None and untabled:
            nodes = learned_nodes(node_sets, observation, learned, untabled)
            if nodes:
                self.learned = LearnedTables(node_sets, observation, learned, units, nodes)
                self.register_buffer("_learned_rows", head_rows(nodes), persistent=False)
        self._constants = sorted({c for f in observation.members for c in f.constants})
        for name in self._constants:
            init = [f.constants.get(name, 0.0) for f in observation.members]
            self.register_parameter(name, nn.Parameter(torch.tensor(init)))

    @property
    def family(self):
        """The observation family of every node (:class:`~sirenvae.models.likelihoods.Family`), or of
        a mixed table their :class:`~sirenvae.models.observation.Observation`.
        """
        return self.observation.single or self.observation

    @property
    def layout(self) -> str:
        """The layout of the network and the linear term (:mod:`sirenvae.layers.layout`)."""
        return (self.net if self.mean_kind != "linear" else self.linear).layout

    def set_offsets(self, x: Tensor) -> None:
        """Starts every head at its node's marginal, from training values (a mixed table's decoder),
        and fits the count tables.
        """
        if hasattr(self, "offset"):
            self.offset.copy_(self.observation.offsets(x))
        if self.tables is not None:
            self.tables.fit(x)

    def _tabled(self, rows: Tensor, tabled_from: Tensor, nodes: Tensor) -> Tensor:
        """``rows`` with the tabled nodes' rows read from their tables (the count tables from
        ``tabled_from``, the learned ones from ``nodes``).
        """
        if self.tables is None and self.learned is None:
            return rows
        rows = rows.clone()
        if self.tables is not None:
            rows[..., self._table_rows.to(rows.device)] = self.tables(tabled_from).to(rows.dtype)
        if self.learned is not None:
            rows[..., self._learned_rows.to(rows.device)] = self.learned(nodes).to(rows.dtype)
        return rows

    def forward(self, nodes: Tensor, tabled_from: Tensor | None = None) -> Distribution:
        """The distribution given all nodes' values ``nodes``; the count tables read ``tabled_from``
        instead where given (values equal to ``nodes`` on every tabled node's parents, broadcastable to
        them: a sum over hidden states that no tabled node reads scores its tables once).
        """
        tabled_from = nodes if tabled_from is None else tabled_from
        constants = {name: getattr(self, name) for name in self._constants}
        single = self.observation.single
        if single is not None:
            if self.mean_kind == "linear":
                heads = [self.linear(nodes)] + [getattr(self, h) for h in single.heads[1:]]
            else:
                heads = list(self.net(nodes).split(self.observed, -1))
                if self.mean_kind == "linear+mlp":
                    heads[0] = self.linear(nodes) + heads[0]
            if self.tables is not None or self.learned is not None:  # one family with tables: binary
                shape = torch.broadcast_shapes(nodes.shape[:-1], tabled_from.shape[:-1])
                heads[0] = self._tabled(heads[0].expand(*shape, self.observed), tabled_from, nodes)
            return single.distribution(*heads, **constants)
        rows_idx = self.observation.linear_rows.to(nodes.device)
        if self.mean_kind == "linear":
            lin = self.linear(nodes)
            rows = lin.new_empty(*lin.shape[:-1], len(self.observation.rows))
            rows[..., rows_idx] = lin
            rows[..., ~self._fed] = self.raw_rows.to(lin.dtype)
        else:
            rows = self.net(nodes)
            if self.mean_kind == "linear+mlp":
                rows = rows.index_add(-1, rows_idx, self.linear(nodes))
        return self.observation.distribution(self._tabled(rows + self.offset, tabled_from, nodes), constants)


class DiagonalEncoder(LazyDistribution):
    r""":math:`q(z \mid x) = \mathcal{N}(\mu(x), \mathrm{diag}\, \sigma(x)^2)` from an MLP (the plain VAE)."""

    def __init__(self, observed: int, latent: int, width: int, hidden_layers: int) -> None:
        super().__init__()
        self.latent = latent
        self.net = MaskedMLP(torch.ones(2 * latent, observed, dtype=torch.bool), 1, hidden_layers, width)

    def forward(self, x: Tensor) -> DiagNormal:
        out = self.net(x)
        mean, log_sd = out[..., : self.latent], out[..., self.latent :].clamp(*LOG_SD_RANGE)
        return DiagNormal(mean, log_sd.exp(), log_scale=log_sd)


def maf_encoder(observed: int, latent: int, transforms: int, hidden: int) -> zuko.flows.Flow:
    r"""Masked autoregressive transforms (zuko) as an unstructured posterior :math:`q(z \mid x)`.

    The transforms are used in the inverse-autoregressive direction (Kingma et al. 2016), so that
    :math:`z \sim q(z \mid x)` and its density cost one pass per transform; the order of the latents
    is reversed between transforms, as in zuko's MAF. zuko is an extra (``sirenvae[maf]``; why:
    :mod:`sirenvae.flows.core`), imported here only.
    """
    try:
        import zuko
    except ImportError:
        raise ImportError("the vae-maf baseline needs zuko: pip install 'sirenvae[maf]'") from None

    steps = []
    for t in range(transforms):
        order = torch.arange(latent)
        steps.append(
            zuko.flows.MaskedAutoregressiveTransform(
                latent,
                observed,
                order=order if t % 2 == 0 else order.flip(0),
                hidden_features=(hidden, hidden),
            ).inv
        )
    base = zuko.flows.UnconditionalDistribution(
        zuko.distributions.DiagNormal, torch.zeros(latent), torch.ones(latent), buffer=True
    )
    return zuko.flows.Flow(steps, base)
