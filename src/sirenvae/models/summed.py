r"""Discrete hidden nodes summed out exactly.

A hidden node with a few stated states (binary or categorical) sits among the model's observed nodes
with a column that is always missing; its conditional :math:`p(h \mid pa(h))` is a decoder head and its
children read its one-hot block. Instead of being drawn, the joint states of these nodes are
enumerated for every row: :math:`p(x, z) = \sum_h p(x, h, z)`, an exact sum whose terms give every
conditional an exact gradient (a drawn discrete value gives its own conditional none). With no
continuous latent left the model is a discrete Bayesian network with learned conditionals and
:math:`\log p(x)` is exact, as EM's likelihood is.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor, nn

from sirenvae.graph import LatentSplit
from sirenvae.models.config import HEAD_PRIOR_FORMS
from sirenvae.models.tables import MAX_CONFIGS

__all__ = ["MAX_SUMMED_STATES", "SummedNodes", "exact_rows", "only_holes_at", "summed_parts"]

#: The most joint states of the summed hidden nodes (each row is scored once per state).
MAX_SUMMED_STATES = 1024


class SummedNodes(nn.Module):
    """The summed nodes of a model: their positions among its observed nodes (``where``), their joint
    states ``(E, len(names))`` (codes, the last node varying fastest) and the log of the mass a
    category keeps for an unseen level (``renorm``: a summed node's states are its stated levels, so
    that mass goes back to them).

    Its :meth:`log_prior` is a Dirichlet prior on the conditionals that involve a summed node (theirs
    and their discrete children's, wherever every parent is discrete), spread evenly over the levels
    as EM's smoothing does for a table: with ``form="bdeu"``, ``strength`` pseudo-rows per node spread
    evenly over its :math:`q_i` parent configurations too (BDeu's equivalent sample size), with
    ``form="configuration"`` ``strength`` pseudo-rows per parent configuration. A conditional fitted
    through a sum over hidden states has no count table to fall back on, and on a few rows it
    otherwise learns near-certain conditionals from a handful of rows.

    Arguments:
        split: The model's split (the summed nodes among its observed).
        observation: The observed nodes' families.
        names: The summed nodes.
        strength: The prior's pseudo-rows per node or per parent configuration (0: none).
        form: ``"bdeu"`` or ``"configuration"``, as above.
    """

    def __init__(
        self,
        split: LatentSplit,
        observation,
        names: tuple[str, ...],
        strength: float = 0.0,
        form: str = "bdeu",
    ) -> None:
        super().__init__()
        if form not in HEAD_PRIOR_FORMS:
            raise ValueError(f"unknown head prior form {form!r}; choose one of {', '.join(HEAD_PRIOR_FORMS)}")
        self.names = tuple(names)
        self.strength = float(strength)
        self.form = form
        sizes, unseen = [], []
        for v in self.names:
            if v not in split.observed:
                raise ValueError(f"summed node {v!r} must sit among the model's observed nodes")
            f = observation.members[split.observed.index(v)]
            if not f.levels:
                raise ValueError(f"summed node {v!r} needs a binary or categorical family, not {f.name}")
            sizes.append(f.levels)
            unseen.append(f.unseen)
        if math.prod(sizes) > MAX_SUMMED_STATES:
            raise ValueError(
                f"the summed nodes {', '.join(self.names)} have {math.prod(sizes)} joint states, more "
                f"than {MAX_SUMMED_STATES}: model some of them as continuous latents"
            )
        where = [split.observed.index(v) for v in self.names]
        self.register_buffer("where", torch.tensor(where, dtype=torch.long), persistent=False)
        states = torch.zeros(1, 0)
        if sizes:
            grids = torch.meshgrid(*(torch.arange(k, dtype=torch.float32) for k in sizes), indexing="ij")
            states = torch.stack([g.flatten() for g in grids], -1)
        self.register_buffer("states", states, persistent=False)
        self.renorm = -sum(math.log1p(-e) for e in unseen)
        self._smoothed(split, observation)

    def _smoothed(self, split: LatentSplit, observation) -> None:
        """The rows of :meth:`log_prior`: per smoothed node, every configuration of its parents."""
        graph, observed, members = split.graph, split.observed, observation.members
        discrete = {v for v, f in zip(observed, members, strict=True) if f.levels}
        near = set(self.names) | {c for v in self.names for c in graph.children(v)}
        rows, target = [], []
        for i, v in enumerate(observed):
            parents = graph.parents(v)
            if v not in near or v not in discrete or not set(parents) <= discrete:
                continue
            sizes = [members[observed.index(p)].levels for p in parents]
            if math.prod(sizes) > MAX_CONFIGS:  # as for the count tables
                continue
            for config in itertools.product(*(range(k) for k in sizes)):
                row = [0.0] * len(observed)
                for p, code in zip(parents, config, strict=True):
                    row[observed.index(p)] = float(code)
                rows.append(row)
                target.append(i)
        self.register_buffer("_rows", torch.tensor(rows).reshape(len(rows), len(observed)), persistent=False)
        self.register_buffer("_target", torch.tensor(target, dtype=torch.long), persistent=False)
        levels = [members[i].levels for i in target]
        self.register_buffer("_levels", torch.tensor(levels, dtype=torch.long), persistent=False)
        configs = [target.count(i) if self.form == "bdeu" else 1 for i in target]  # q_i, or 1
        self.register_buffer("_configs", torch.tensor(configs, dtype=torch.long), persistent=False)

    @property
    def smooths(self) -> bool:
        """Whether :meth:`log_prior` has a term."""
        return bool(self.strength) and len(self._target) > 0

    def log_prior(self, model) -> Tensor:
        r""":math:`\sum_i \sum_c \sum_k \frac{s}{q_i K_i} \log p(x_i = k \mid c)` over the smoothed nodes
        :math:`i`, their :math:`q_i` parent configurations :math:`c` and levels :math:`k` (``s`` the
        strength; :math:`q_i = 1` in the ``configuration`` form).
        """
        like = model.loc
        if not self.smooths:
            return like.new_zeros(())
        u = self._rows.to(like)
        z = like.new_zeros(u.shape[0], len(model.latent))
        d = model.decoder(model.nodes(z, u))
        rows = torch.arange(u.shape[0], device=u.device)
        mask = torch.zeros_like(u, dtype=torch.bool)
        mask[rows, self._target] = True
        levels = self._levels.to(u.device)
        at = u.expand(int(levels.max()), *u.shape).clone()  # every level of the target at once
        at[:, rows, self._target] = torch.arange(at.shape[0], device=u.device, dtype=u.dtype)[:, None]
        term = d.log_prob(at, mask)  # (levels, rows)
        k = torch.arange(at.shape[0], device=u.device)[:, None]
        weight = 1.0 / (levels * self._configs.to(u.device)).to(like)
        total = torch.where(k < levels, term * weight, 0.0).sum()
        return self.strength * total

    def __len__(self) -> int:
        return len(self.names)

    def widen(self, x: Tensor, width: int) -> Tensor:
        """Rows ``x`` without the summed nodes' columns as rows of ``width`` columns, theirs NaN."""
        out = x.new_full((*x.shape[:-1], width), math.nan)
        out[..., [i for i in range(width) if i not in set(self.where.tolist())]] = x
        return out

    def only_holes(self, x: Tensor) -> bool:
        """Whether the summed nodes' columns are the only missing cells of ``x``."""
        return only_holes_at(x, self.where)

    def rows(self, x: Tensor) -> Tensor:
        """``x`` ``(*, N, Dx)`` repeated at every joint state ``(E, *, N, Dx)``, the states filled in."""
        E = self.states.shape[0]
        xe = x.unsqueeze(0).repeat(E, *(1,) * x.dim())
        xe[..., self.where] = self.states.view(E, *(1,) * (x.dim() - 1), -1).to(x.dtype)
        return xe


def only_holes_at(x: Tensor, where) -> bool:
    """Whether the columns ``where`` hold the only missing cells (NaN) of ``x``."""
    present = ~x.isnan()
    present[..., where] = True
    return bool(present.all())


def exact_rows(model, x: Tensor) -> bool:
    """Whether ``model`` scores the rows ``x`` exactly: no continuous latent, and no hole but the
    summed nodes' columns (then nothing is drawn: a sum over their joint states).
    """
    return not model.latent and model.summed_nodes.only_holes(x)


def summed_parts(model, x: Tensor, z: Tensor, draw: bool = False, terms: bool = False):
    r"""``model``'s :meth:`~sirenvae.models.SIReNVAE.log_joint_parts` with its summed nodes summed
    out, and with ``draw`` the filled values (standardised, ``(S, N, Dx)``) with one joint state per
    proposal drawn from its share :math:`p(x, h, z) / \sum_h p(x, h, z)` (else ``None``); with
    ``terms`` also each joint state's term :math:`\log p(x, h, z)` ``(E, S, N)``.

    Each row is scored at every joint state (other holes drawn per state, so each term is an
    importance weight of its own); :math:`\log p(z \mid \cdot)` is that of the first state where
    the prior reads a summed node or a hole (only the sum of the two parts is then meaningful).
    """
    nodes = model.summed_nodes
    xe = nodes.rows(x).unsqueeze(1)  # (E, 1, *x): against z's (S, ...)
    ze = z.unsqueeze(0)
    if model.prior_context:  # the prior reads the states (or the holes drawn at them)
        ze = ze.expand(xe.shape[0], *z.shape)
    mask = ~xe.isnan()
    mask = None if bool(mask.all()) else mask
    u = model.standardize(xe)
    log_ratio = None
    if mask is not None:
        u, log_ratio = model.propose_holes(u, mask, ze)
    log_pz = model.prior_given(u).log_prob(ze)
    n = model.nodes(ze, u)
    # without other holes the states differ only in the summed columns, which no tabled node reads
    log_pu = model.decoder(n, n[:1] if mask is None else None).log_prob(u, mask)
    if log_ratio is not None:
        log_pu = log_pu + log_ratio
    total = log_pu + model.observation.log_det(xe, model.scale, mask) + log_pz + nodes.renorm  # (E, S, N)
    joint = torch.logsumexp(total, 0)
    first = log_pz[0].expand_as(joint)
    filled = None
    if draw:
        gumbel = -torch.empty_like(total).exponential_().log()
        pick = (total.detach() + gumbel).argmax(0)  # (S, N)
        u = u.expand(total.shape[0], *joint.shape, u.shape[-1])
        filled = u.gather(0, pick[None, ..., None].expand(1, *u.shape[1:]))[0]
    return (joint - first, first, filled, total) if terms else (joint - first, first, filled)
