r"""SIReN-VAE: a VAE whose prior, likelihood and inference network follow a Bayesian network.

.. math:: p(x, z) = p_\theta(z \mid x_{pa(Z) \cap X}) \prod_{i \in X} p_\theta(x_i \mid pa(i))

References:
    | SIReN-VAE: Leveraging Flows and Amortized Inference for Bayesian Networks (Mouton & Kroon, 2022)
    | https://arxiv.org/abs/2204.11847
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import torch
from torch import Tensor, nn

from sirenvae.flows.grf import GraphicalResidualFlow
from sirenvae.graph import BayesianNetwork, LatentSplit
from sirenvae.models.config import ModelConfig
from sirenvae.models.observation import graph_units, unit_ranges
from sirenvae.models.summed import SummedNodes, exact_rows, summed_parts

__all__ = ["DEFENSIVE_SHARE", "SIReNVAE", "prior_draws", "resample"]

#: The share of evaluation draws taken from the prior (defensive importance sampling, see
#: :meth:`SIReNVAE.importance_samples`): ``ceil(share * K)`` prior draws beside the
#: ``K`` encoder draws.
DEFENSIVE_SHARE = 0.1


def prior_draws(importance_samples: int, share: float | None = None) -> int:
    """The prior draws beside ``importance_samples`` encoder draws (:data:`DEFENSIVE_SHARE`)."""
    share = DEFENSIVE_SHARE if share is None else share
    return math.ceil(share * importance_samples) if importance_samples > 1 else 0


class SIReNVAE(nn.Module):
    r"""A VAE over a :class:`~sirenvae.graph.LatentSplit` of a Bayesian network, from three lazy
    distributions; every variant of Table 1 is one of them (build it with
    :func:`~sirenvae.models.build_model`).

    ``x`` holds the observed nodes in topological order, on the raw scale; internally the model
    works on standardised values :math:`u = (x - \mathrm{loc}) / \mathrm{scale}` and reports
    log-densities of :math:`x`. A NaN in ``x`` is a missing cell (missing at random): densities are
    those of the present cells, :math:`\log p(x_{obs})`, and the missing values are drawn inside the
    importance sampler (:meth:`fill`).

    Arguments:
        split: The network and its latent/observed nodes.
        prior: ``prior(c)`` is :math:`p(z \mid c)`, ``c`` the standardised values of ``prior_context``
            (``None`` when empty); a normalizing flow whose ``transform.inv`` maps noise to ``z``.
        decoder: ``decoder(nodes)`` is :math:`p(u \mid pa)` given all nodes' values in the graph's
            order, a distribution of its observation family ``decoder.family``
            (:mod:`sirenvae.models.likelihoods`) with ``log_prob``, ``mean``, ``noise`` and
            ``reparameterize``, and ``residual`` where the family has location-scale noise
            (see :class:`~sirenvae.models.Decoder`).
        encoder: ``encoder(u)`` is :math:`q(z \mid x)`, with ``rsample_and_log_prob``.
        config: The configuration the model was built from.
        prior_context: The observed nodes the prior is conditioned on.
        inverse_graph: The faithful inverse that structures the encoder, if any.
        holes: The proposal of the holes that other nodes read
            (:class:`~sirenvae.models.holes.HoleProposal`); ``None``: their decoder conditionals.

    Discrete hidden nodes in ``config.summed`` sit among the observed nodes with a column always
    missing, summed out exactly: :math:`p(x, z) = \sum_h p(x, h, z)` (:mod:`sirenvae.models.summed`).
    """

    def __init__(
        self,
        split: LatentSplit,
        *,
        prior: nn.Module,
        decoder: nn.Module,
        encoder: nn.Module,
        config: ModelConfig,
        prior_context: tuple[str, ...] = (),
        inverse_graph: BayesianNetwork | None = None,
        holes: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.split, self.config = split, config
        self.prior_context, self.inverse_graph = prior_context, inverse_graph
        self.register_buffer("_idx_z", torch.tensor(split.latent_index(), dtype=torch.long), persistent=False)
        self.register_buffer("_idx_x", torch.tensor(split.observed_index()), persistent=False)
        self.register_buffer("loc", torch.zeros(len(split.observed)))
        self.register_buffer("scale", torch.ones(len(split.observed)))
        self.decoder, self.prior, self.encoder = decoder, prior, encoder
        self.holes = holes
        ctx = [split.observed.index(v) for v in prior_context]
        self.register_buffer("_ctx_idx", torch.tensor(ctx, dtype=torch.long), persistent=False)
        # where each node's input units sit (one per node, unless a family takes several)
        units = graph_units(split, self.observation)
        spans, x_spans = unit_ranges(units), unit_ranges(self.observation.input_units)

        def at(spread: list[Tensor], which) -> Tensor:
            return (
                torch.cat([spread[int(i)] for i in which]) if len(which) else torch.zeros(0, dtype=torch.long)
            )

        self.register_buffer("_unit_z", at(spans, self._idx_z), persistent=False)
        self.register_buffer("_unit_x", at(spans, self._idx_x), persistent=False)
        self.register_buffer("_unit_ctx", at(x_spans, ctx), persistent=False)
        self._units = int(units.sum())
        self._schedule = _ancestral_schedule(split)
        self.register_buffer("_hole_links", _observed_links(split), persistent=False)
        prior = (config.head_prior, config.head_prior_form)
        self.summed_nodes = SummedNodes(split, self.observation, tuple(config.summed), *prior)
        self.summed: tuple[str, ...] = self.summed_nodes.names
        self._summed_context = bool(set(self.summed) & set(prior_context))

    @property
    def graph(self) -> BayesianNetwork:
        return self.split.graph

    @property
    def latent(self) -> tuple[str, ...]:
        return self.split.latent

    @property
    def observed(self) -> tuple[str, ...]:
        return self.split.observed

    @property
    def hidden(self) -> tuple[str, ...]:
        """Every hidden node in graph order: the latents and the summed nodes."""
        hidden = set(self.latent) | set(self.summed)
        return tuple(v for v in self.graph.nodes if v in hidden)

    @property
    def measured(self) -> tuple[str, ...]:
        """The observed nodes that have a column: all but the summed ones."""
        return tuple(v for v in self.observed if v not in set(self.summed))

    @property
    def columns(self) -> LatentSplit:
        """The split of the rows a user gives: every hidden node latent, the :attr:`measured` observed."""
        return self.split if not self.summed else LatentSplit(self.graph, self.hidden)

    def with_summed(self, x: Tensor) -> Tensor:
        """Rows of the :attr:`measured` nodes as rows of :attr:`observed` (summed nodes' cells NaN)."""
        return self.summed_nodes.widen(x, len(self.observed)) if self.summed else x

    @property
    def family(self):
        """The decoder's observation family (:class:`~sirenvae.models.likelihoods.Family`), or a
        mixed table's :class:`~sirenvae.models.observation.Observation`.
        """
        return self.decoder.family

    @property
    def observation(self):
        """The families of the observed nodes (:class:`~sirenvae.models.observation.Observation`)."""
        return self.decoder.observation

    # ------------------------------------------------------------------ data scale
    def set_standardization(self, x: Tensor) -> None:
        """Sets the internal standardisation from training data, by the observation family's rule
        (if the config asks for it).
        """
        if self.config.standardize and x.shape[0] > 1:
            loc, scale = self.observation.standardization(x)
            self.loc.copy_(loc)
            self.scale.copy_(scale)
        self.decoder.set_offsets(x)

    def standardize(self, x: Tensor) -> Tensor:
        r""":math:`u = (t(x) - \mathrm{loc}) / \mathrm{scale}` (``t`` the identity but for a
        transformed family: a log for log-normal nodes).
        """
        return self.observation.standardize(x, self.loc, self.scale)

    def unstandardize(self, u: Tensor) -> Tensor:
        """The raw values of standardised ``u``, the inverse of :meth:`standardize`."""
        return self.observation.unstandardize(u, self.loc, self.scale)

    # ------------------------------------------------------------------ pieces of the joint
    def nodes(self, z: Tensor, u: Tensor) -> Tensor:
        """All nodes' values in graph order from latents ``z`` and standardised observed ``u`` (as
        the observation family encodes them where they are inputs).
        """
        u = self.family.encode(u)
        shape = torch.broadcast_shapes(z.shape[:-1], u.shape[:-1])
        out = z.new_empty(*shape, self._units)
        out[..., self._unit_z] = z.expand(*shape, z.shape[-1])
        out[..., self._unit_x] = u.expand(*shape, u.shape[-1])
        return out

    def values(self, z: Tensor, x: Tensor) -> Tensor:
        """Every node's value in graph order from latents ``z`` and raw observed values ``x`` (the
        table a user reads; :meth:`nodes` is the decoder's input).
        """
        shape = torch.broadcast_shapes(z.shape[:-1], x.shape[:-1])
        out = z.new_empty(*shape, len(self.graph))
        out[..., self._idx_z] = z.expand(*shape, z.shape[-1])
        out[..., self._idx_x] = x.to(z.dtype).expand(*shape, x.shape[-1])
        return out

    def prior_given(self, u: Tensor):
        r"""The prior :math:`p(z \mid x_{pa(Z)})` given standardised observed values ``u``."""
        if not self.prior_context:
            return self.prior(None)
        return self.prior(self.family.encode(u)[..., self._unit_ctx])  # as the decoder reads them

    def log_joint(self, x: Tensor, z: Tensor) -> Tensor:
        r""":math:`\log p(x, z)` on the raw scale of ``x``; ``z`` may carry leading sample dims."""
        log_px, log_pz = self.log_joint_parts(x, z)
        return log_px + log_pz

    def log_joint_parts(
        self, x: Tensor, z: Tensor, filled: Tensor | None = None, log_ratio: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        r""":math:`\log p(x \mid z)` (raw scale: :math:`\log p(u \mid z) - \sum_i \log s_i` for
        :math:`u = (x - m) / s`) and :math:`\log p(z \mid x_{pa(Z)})`.

        With missing cells (NaN), the first is over the present cells only, and the missing values
        that other nodes depend on are drawn (see :meth:`propose_holes`) and their
        :math:`\log p(x_{mis} \mid \cdot) - \log q(x_{mis} \mid \cdot)` added, so that
        ``log_joint - log q`` is a log importance weight of :math:`p(x_{obs})` under the proposal
        :math:`q(z \mid x)\, q(x_{mis} \mid z, x_{obs})`; ``filled`` and ``log_ratio`` give those
        draws (standardised) and that term (from :meth:`propose_holes`) instead.
        """
        mask = _present(x)
        if mask is not None and filled is not None and log_ratio is None and self.holes is not None:
            raise ValueError("give the log_ratio of the filled draws too (see propose_holes)")
        return self._log_joint_parts(x, z, mask, filled, log_ratio)

    def _log_joint_parts(
        self,
        x: Tensor,
        z: Tensor,
        mask: Tensor | None,
        filled: Tensor | None,
        log_ratio: Tensor | None = None,
    ):
        if self.summed:
            if filled is not None:
                raise ValueError("a model with summed nodes draws its holes per state: leave out filled")
            return summed_parts(self, x, z)[:2]
        u = self.standardize(x)
        if mask is not None:
            if filled is None:
                filled, log_ratio = self.propose_holes(u, mask, z)
            u = filled
        log_pz = self.prior_given(u).log_prob(z)
        log_pu = self.decoder(self.nodes(z, u)).log_prob(u, mask)
        if log_ratio is not None:
            log_pu = log_pu + log_ratio
        return log_pu + self.observation.log_det(x, self.scale, mask), log_pz

    def importance_samples(
        self, x: Tensor, samples: int, prior_samples: int = 0
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        r"""``samples`` proposals per row with their log importance weights for :math:`\log p(x_{obs})`:
        :math:`z \sim q(z \mid x)` ``(S, N, Dz)``, the holes of ``x`` drawn by :meth:`fill`
        (standardised, ``(S, N, Dx)``; ``None`` when ``x`` has none) and :math:`\log w` ``(S, N)``.

        With ``prior_samples`` :math:`P`, that many more come from the prior
        :math:`p(z \mid x_{pa(Z)})` and every weight is taken against the mixture that drew them
        (defensive importance sampling, Hesterberg 1995; the deterministic-mixture weights of Owen &
        Zhou 2000): :math:`w = p(x, z) / \frac{S q(z \mid x) + P p(z)}{S + P}`, so that
        :math:`\frac{1}{S + P} \sum w` stays unbiased for :math:`p(x)`. Where the encoder is good the
        prior draws carry almost no weight and cost nothing; where it proposes far from the
        posterior (a row far outside the training range) they bound the damage. The prior draws
        are skipped (``S`` proposals returned) when the prior reads an observed cell that is missing;
        an unconditional prior's draws are shared by the rows (each row's estimate stays unbiased).
        """
        parts = self.proposal_parts(x, samples, prior_samples)
        return parts["z"], parts["filled"], parts["log_w"]

    def proposal_parts(self, x: Tensor, samples: int, prior_samples: int = 0) -> dict[str, Tensor | None]:
        r""":meth:`importance_samples` with its pieces: ``z`` (the ``samples`` encoder draws first),
        ``filled``, ``log_w`` (against the mixture), ``log_q`` :math:`\log q(z \mid x)`, ``log_px``
        :math:`\log p(x \mid z)` and ``log_pz`` :math:`\log p(z \mid x_{pa(Z)})`, each ``(S + P, N)``
        (``P`` = 0 where the prior draws are skipped).
        """
        if self.summed and exact_rows(self, x):
            # exact: no latent and no hole to draw, so every proposal has the same weight
            parts = self.proposal_parts(x, 1, 0) if samples > 1 or prior_samples else None
            if parts is not None:
                return {k: None if v is None else v.expand(samples, *v.shape[1:]) for k, v in parts.items()}
        z, log_q, filled, log_px, log_pz = self._proposals(x, samples, prior_samples)
        log_proposal = log_q
        if z.shape[0] > samples:  # the deterministic mixture S q + P p over S + P
            counts = torch.tensor([samples, z.shape[0] - samples], dtype=log_q.dtype, device=log_q.device)
            mixture = torch.logsumexp(torch.stack([log_q, log_pz]) + counts.log()[:, None, None], 0)
            log_proposal = mixture - counts.sum().log()
        log_w = log_px + log_pz - log_proposal
        return {"z": z, "filled": filled, "log_w": log_w, "log_q": log_q, "log_px": log_px, "log_pz": log_pz}

    def _proposals(self, x: Tensor, samples: int, prior_samples: int):
        z, log_q = self.posterior(x, samples)
        mask = _present(x)
        if prior_samples > 0 and self._prior_reads_all(mask):
            with _lenient_inverses(self.prior):  # a proposal draw solved to 1e-5 weighs as well
                zp = self.prior_given(self.standardize(x)).sample((prior_samples,))
            if not self.prior_context:  # p(z) reads no row: the rows share its draws (one solve each)
                zp = zp[:, None].expand(prior_samples, x.shape[0], zp.shape[-1])
            z = torch.cat([z, zp])
            log_q = torch.cat([log_q, self.posterior_log_prob(x, zp)])
        if self.summed:
            log_px, log_pz, filled = summed_parts(self, x, z, draw=True)
            return z, log_q, filled, log_px, log_pz
        filled, log_ratio = (None, None) if mask is None else self.propose_holes(self.standardize(x), mask, z)
        log_px, log_pz = self._log_joint_parts(x, z, mask, filled, log_ratio)
        return z, log_q, filled, log_px, log_pz

    def _prior_reads_all(self, mask: Tensor | None) -> bool:
        """Whether the prior's context is present in every row (no hole the prior would read)."""
        if self._summed_context:
            return False
        return mask is None or not self.prior_context or bool(mask[:, self._ctx_idx].all())

    def fill(self, u: Tensor, mask: Tensor, z: Tensor) -> Tensor:
        r"""Standardised values ``u`` with each missing cell (``mask`` false) drawn from its decoder
        conditional :math:`p(u_i \mid pa(i))` given ``z`` (leading sample dims) and the other nodes
        (:meth:`propose_holes` without the hole proposal: a draw that reads no child).
        """
        return self.propose_holes(u, mask, z, blind=True)[0]

    def propose_holes(self, u: Tensor, mask: Tensor, z: Tensor, blind: bool = False) -> tuple[Tensor, Tensor]:
        r"""Standardised values ``u`` with each missing cell (``mask`` false) drawn given ``z``
        (leading sample dims) and the other nodes, and :math:`\log p(u_{mis} \mid \cdot) - \log
        q(u_{mis})` of the draws (0 where every hole comes from its decoder conditional).

        A hole is drawn from its decoder conditional :math:`p(u_i \mid pa(i))` or, where the model
        has a :class:`~sirenvae.models.holes.HoleProposal` (a continuous node with children), from
        that conditional shifted and scaled by what the node's Markov blanket says. The draws are
        reparameterised with noise drawn once; each decoder pass settles one more generation of
        missing observed nodes (chains of observed parents), as in :meth:`sample`. A draw from
        the model's own conditional cancels in the importance weight: a missing leaf needs no draw
        (its factor integrates to 1) and gets one anyway. ``blind``: every hole from its decoder
        conditional, as without a proposal (log-ratio 0).
        """
        shape = torch.broadcast_shapes(z.shape[:-1], u.shape[:-1])
        present = u.expand(*shape, u.shape[-1])
        filled = torch.where(mask, present, 0.0)
        proposal = None if self.holes is None or blind else self.holes
        if proposal is not None:
            a, b = proposal(self._masked_nodes(z, filled, mask), mask)
            proposed = ~mask & proposal.covered
        eta = eps = p = None
        for _ in range(_hole_sweeps(holes := ~mask, self._hole_links)):
            p = self.decoder(self.nodes(z, filled))
            if eta is None:
                eta = p.noise()
                eps = eta if proposal is None else torch.where(proposed, a + b.exp() * eta, eta)
            filled = torch.where(mask, present, p.reparameterize(eps, holes))
        if proposal is None:
            return filled, filled.new_zeros(shape)
        decoders = torch.where(proposed, p.reparameterize(eta), filled)  # the decoder's own draws
        log_ratio = p.log_prob(filled, proposed) - p.log_prob(decoders, proposed)
        return filled, log_ratio + torch.where(proposed, b, 0.0).sum(-1)

    def _masked_nodes(self, z: Tensor, u: Tensor, mask: Tensor) -> Tensor:
        """:meth:`nodes` with every unit of a hole at 0 (``u`` already 0 there)."""
        out = self.nodes(z, u)
        if self.observation.single is None:  # a categorical hole's one-hot block: all 0
            out[..., self._unit_x] = out[..., self._unit_x] * self.observation.unit_mask(mask).to(out.dtype)
        return out

    def posterior(self, x: Tensor, samples: int = 1) -> tuple[Tensor, Tensor]:
        r"""``samples`` draws of :math:`z \sim q(z \mid x)` with :math:`\log q`, shapes
        ``(samples, N, Dz)`` and ``(samples, N)``.
        """
        return self.encoder(self._encoder_inputs(x)).rsample_and_log_prob((samples,))

    def posterior_log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        r""":math:`\log q(z \mid x)` of latents ``z`` ``(S, N, Dz)``, shape ``(S, N)`` (a flow encoder
        inverts its transform here: slower than :meth:`posterior`'s draws).
        """
        q = self.encoder(self._encoder_inputs(x))
        with _lenient_inverses(self.encoder):
            return q.log_prob(z)

    def _encoder_inputs(self, x: Tensor) -> Tensor:
        u = self.standardize(x)
        mask = _present(x)
        if mask is not None:  # a hole reads as the training mean (0 in standardised units)
            u = torch.where(mask, u, 0.0)
        inputs = self.family.encode(u)
        if mask is not None and self.observation.single is None:  # a hole's units all 0
            inputs = inputs * self.observation.unit_mask(mask).to(inputs.dtype)
        if self.config.mask_inputs:  # each value's presence bit beside it
            bits = torch.ones_like(u) if mask is None else mask.to(u.dtype)
            inputs = torch.cat([inputs, bits], -1)
        return inputs

    def reconstruction(self, x: Tensor, z: Tensor) -> Tensor:
        r""":math:`E[x \mid z]` on the raw scale (observed parents teacher-forced; missing ones drawn
        as in :meth:`fill`).
        """
        u = self.standardize(x)
        mask = _present(x)
        if mask is not None:
            u = self.fill(u, mask, z)
        return self.observation.raw_point(self.decoder(self.nodes(z, u)), self.loc, self.scale)

    def residuals(self, x: Tensor, z: Tensor, filled: Tensor | None = None, discrete: bool = False) -> Tensor:
        r"""The decoder's standardised residuals :math:`\eta = (u - \mu) / \sigma` of ``x`` given ``z``:
        the noise that :meth:`sample` would need to produce ``x`` from ``z`` (a ``ValueError`` for a
        family without location-scale noise, whose noise a value does not determine; in a mixed
        table NaN at such nodes, or with ``discrete`` a binary or categorical node's inverse-CDF
        noise drawn given its value). ``filled``: standardised values with the holes of ``x`` drawn
        (:meth:`fill`), to use instead.
        """
        if not self.family.abduction and self.observation.single is not None:  # mixed: NaN where none
            raise ValueError(
                f"the {self.family.name} observation family has no location-scale noise, so a value "
                "does not determine its noise (counterfactuals need that)"
            )
        if filled is None and _present(x) is not None:
            raise ValueError("x has missing cells: give their draws as filled (see fill)")
        u = self.standardize(x) if filled is None else filled
        d = self.decoder(self.nodes(z, u))
        return d.residual(u, discrete) if discrete else d.residual(u)

    @torch.no_grad()
    def sample(self, n: int) -> tuple[Tensor, Tensor]:
        """Draws ``n`` ancestral samples ``(z, x)``, ``x`` on the raw scale.

        With fixed noise, alternating the prior's inverse and a decoder pass is exact after the
        sweeps of :func:`_ancestral_schedule`, each of which settles one more generation. The
        decoder's noise is drawn once, by its first distribution (its family does not depend on the
        parents).
        """
        like = self.loc
        eps = torch.randn(n, len(self.latent), dtype=like.dtype, device=like.device)
        eta = None
        u = torch.zeros(n, len(self.observed), dtype=like.dtype, device=like.device)
        for solve in self._schedule:
            if solve:
                z = self.prior_given(u).transform.inv(eps)
            p = self.decoder(self.nodes(z, u))
            eta = p.noise() if eta is None else eta
            u = p.reparameterize(eta)
        return z, self.unstandardize(u)


def resample(w: Tensor, n: int, *values: Tensor) -> list[Tensor]:
    """``n`` draws per row from each of ``values`` (``(S, N, ...)``), the same proposals in each, by
    the normalised weights ``w`` ``(S, N)`` (sampling-importance-resampling, with replacement).
    """
    pick = torch.multinomial(w.T, n, replacement=True).T  # (n, N)
    return [v.gather(0, pick[..., None].expand(n, *v.shape[1:])) for v in values]


#: Iterations allowed to an inverse that evaluates a density away from where the flow was trained.
LENIENT_MAX_ITER = 500


@contextmanager
def _lenient_inverses(module: nn.Module) -> Iterator[None]:
    """Within, the residual flows of ``module`` solve their inverses with up to
    :data:`LENIENT_MAX_ITER` iterations and keep the last iterate where the tolerance is still not
    met (a density evaluated at a prior draw far from the encoder's mass, where a residual of
    1e-5 moves the log-density by far less than the Monte-Carlo error).
    """
    flows = [m for m in module.modules() if isinstance(m, GraphicalResidualFlow)]
    saved = [f.root_finding for f in flows]
    try:
        for f, rf in zip(flows, saved, strict=True):
            f.root_finding = replace(rf, max_iter=max(rf.max_iter, LENIENT_MAX_ITER), on_fail="warn")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            yield
    finally:
        for f, rf in zip(flows, saved, strict=True):
            f.root_finding = rf


def _present(x: Tensor) -> Tensor | None:
    """The mask of present cells of ``x`` (not NaN), or ``None`` when every cell is present."""
    mask = ~x.isnan()
    return None if bool(mask.all()) else mask


def _observed_links(split: LatentSplit) -> Tensor:
    """``(2, E)``: each edge between observed nodes, its parent's and its child's positions among them."""
    where = {v: i for i, v in enumerate(split.observed)}
    pairs = [(where[p], i) for v, i in where.items() for p in split.graph.parents(v) if p in where]
    return torch.tensor(pairs, dtype=torch.long).reshape(-1, 2).T


def _hole_sweeps(holes: Tensor, links: Tensor) -> int:
    """Decoder passes that settle every hole given the latents and the present cells: one plus the
    longest chain of holes in one row whose parent is a hole too (at most the longest chain of
    observed nodes; with a few scattered holes, usually one or two). ``links``: :func:`_observed_links`.
    """
    parent, child = links
    sweeps, chain = 1, holes
    while True:
        # the holes with a hole parent at the end of a chain one longer
        reached = torch.zeros(holes.shape, dtype=torch.int32, device=holes.device)
        chain = reached.index_add_(-1, child, chain[..., parent].int()).bool() & holes
        if not bool(chain.any()):
            return sweeps
        sweeps += 1


def _ancestral_schedule(split: LatentSplit) -> tuple[bool, ...]:
    r"""Which decoder passes of ancestral sampling follow a solve of the prior.

    A sweep is a solve of the prior given the current observed values (if it is scheduled), then a
    decoder pass. Node :math:`v` is final after sweep :math:`s(v) = \max_{p \in pa(v)} s(p) +
    [p \text{ observed}]` (0 for roots): a solve settles every latent whose observed ancestors are
    final, the pass after it every observed node whose parents are. The prior is solved in the
    sweeps where some latent becomes final, and in the first (the decoder reads every latent);
    without observed parents of latents, only in the first.
    """
    graph, latent = split.graph, set(split.latent)
    sweep: dict[str, int] = {}
    for v in graph.nodes:
        sweep[v] = max((sweep[p] + (p not in latent) for p in graph.parents(v)), default=0)
    solves = {0} | {sweep[v] for v in latent}
    return tuple(s in solves for s in range(max(sweep.values()) + 1))
