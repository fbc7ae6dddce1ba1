r"""The observation model of every observed node: one family per node (a mixed table), as one object.

A model whose observed nodes share one family (every continuous model) uses it as it is; with
several, the decoder's head rows, the input units and the standardisation are laid out per node and
the distribution is a :class:`Mixed` over the nodes, whose log-density is the sum of its parts'.
The decoder's rows go head by head: row ``(node, h)`` for every node with an ``h``-th head, so
that one family for all nodes gives the plain layout ``[head 0 of every node, head 1, ...]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Size, Tensor
from torch.distributions import Distribution

from sirenvae.models.likelihoods import Family, family

__all__ = ["Mixed", "Observation", "families", "graph_units", "unit_ranges"]


def families(
    observed: Sequence[str], types: Mapping[str, str], likelihood: str, min_scale: float
) -> list[Family]:
    """One family per observed node: ``types[node]`` where given (``binary``, ``categorical:3``,
    ``poisson``, ...), else ``likelihood`` (the continuous family of ``ModelConfig``).
    """
    unknown = sorted(set(types) - set(observed))
    if unknown:
        raise ValueError(f"types given for {', '.join(map(repr, unknown))}, which are not observed nodes")
    return [family(types.get(v, likelihood), min_scale) for v in observed]


def unit_ranges(units: Tensor) -> list[Tensor]:
    """The positions of each group's consecutive units, for ``units[g]`` units per group ``g``."""
    start = torch.cumsum(units, 0) - units
    return [torch.arange(int(s), int(s + n)) for s, n in zip(start, units, strict=True)]


def graph_units(split, obs: Observation) -> Tensor:
    """Input units per node of ``split``'s graph (1 for a latent, its family's for an observed node)."""
    units = torch.ones(len(split.graph), dtype=torch.long)
    units[list(split.observed_index())] = obs.input_units
    return units


class Observation:
    """The families of ``D`` observed nodes (in the model's order) and the layout they imply."""

    def __init__(self, members: Sequence[Family]) -> None:
        self.members = tuple(members)
        D = len(self.members)
        keys = [f.key for f in self.members]
        self.uniform = len(set(keys)) <= 1 and all(
            f.input_units == 1 and f.linear_heads == 1 for f in self.members
        )
        self.groups: dict[str, list[int]] = {}
        for i, k in enumerate(keys):
            self.groups.setdefault(k, []).append(i)
        self._first = {k: self.members[idx[0]] for k, idx in self.groups.items()}
        heads = [len(f.heads) for f in self.members]
        self.rows = [(i, h) for h in range(max(heads, default=0)) for i in range(D) if h < heads[i]]
        where = {r: n for n, r in enumerate(self.rows)}
        # per group, the row of each of its heads for each of its nodes: (heads, nodes)
        self._row_index = {
            k: torch.tensor([[where[i, h] for i in idx] for h in range(len(self._first[k].heads))])
            for k, idx in self.groups.items()
        }
        self._node_index = {k: torch.tensor(idx) for k, idx in self.groups.items()}
        self.input_units = torch.tensor([f.input_units for f in self.members], dtype=torch.long)
        spans = unit_ranges(self.input_units)
        # the input units of each group's nodes, node-major
        self._unit_index = {k: torch.cat([spans[i] for i in idx]) for k, idx in self.groups.items()}
        self.linear_units = torch.tensor([f.linear_heads for f in self.members], dtype=torch.long)
        # the row of each output of the linear term (node-major, linear_heads per node)
        self.linear_rows = torch.tensor(
            [where[i, h] for i in range(D) for h in range(self.members[i].linear_heads)], dtype=torch.long
        )
        self.discrete = torch.tensor([f.discrete for f in self.members], dtype=torch.bool)
        # the groups whose family transforms its values (log-normal) before standardisation
        self._transforming = [k for k, f in self._first.items() if type(f).transform is not Family.transform]
        self.transformed = bool(self._transforming)

    def __len__(self) -> int:
        return len(self.members)

    @property
    def single(self) -> Family | None:
        """The one family of every node, when they share it."""
        return self.members[0] if self.uniform and self.members else None

    @property
    def name(self) -> str:
        if self.single is not None:
            return self.single.name
        return "mixed (" + ", ".join(f"{k} x{len(idx)}" for k, idx in self.groups.items()) + ")"

    @property
    def abduction(self) -> bool:
        """Whether every node has location-scale noise."""
        return all(f.abduction for f in self.members)

    def head_rows(self) -> list[tuple[int, int]]:
        """The decoder's output rows, ``(node, head)`` head by head."""
        return self.rows

    # ------------------------------------------------------------------ scales and encodings
    def standardization(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Per node ``(loc, scale)`` from training values ``(N, D)`` (NaN missing), by each family's rule."""
        if self.single is not None:
            return self.single.standardization(x)
        loc, scale = torch.zeros_like(x[0]), torch.ones_like(x[0])
        for k, idx in self._node_index.items():
            loc[idx], scale[idx] = self._first[k].standardization(x[:, idx])
        return loc, scale

    def offsets(self, x: Tensor) -> Tensor:
        """The start of every decoder row from training values (see :meth:`Family.offsets`), ``(R,)``."""
        out = x.new_zeros(len(self.rows))
        for k, idx in self._node_index.items():
            out[self._row_index[k]] = self._first[k].offsets(x[:, idx]).to(out)
        return out

    def _transformed_groups(self, base: Tensor, x: Tensor, fn) -> Tensor:
        """``base`` with ``fn(family, x[..., nodes])`` at the nodes of each transforming group."""
        out = base.clone()
        for k in self._transforming:
            idx = self._node_index[k]
            out[..., idx] = fn(self._first[k], x[..., idx])
        return out

    def standardize(self, x: Tensor, loc: Tensor, scale: Tensor) -> Tensor:
        r""":math:`u = (t(x) - \mathrm{loc}) / \mathrm{scale}`, ``t`` the family's transform."""
        if self.transformed:
            x = self._transformed_groups(x, x, lambda f, v: f.transform(v))
        return (x - loc) / scale

    def unstandardize(self, u: Tensor, loc: Tensor, scale: Tensor) -> Tensor:
        """The inverse of :meth:`standardize`."""
        x = u * scale + loc
        return self._transformed_groups(x, x, lambda f, v: f.untransform(v)) if self.transformed else x

    def log_det(self, x: Tensor, scale: Tensor, mask: Tensor | None) -> Tensor:
        r""":math:`\log |du/dx|` summed over the present cells: :math:`-\sum_i \log s_i` plus the
        transforms' terms (the raw-scale Jacobian of the standardisation).
        """
        log_s = scale.log()
        cells = -log_s if mask is None else torch.where(mask, -log_s, 0.0)
        if self.transformed:
            extra = self._transformed_groups(torch.zeros_like(x), x, lambda f, v: f.log_det(v))
            cells = cells + (extra if mask is None else torch.where(mask, extra, 0.0))
            return cells.sum(-1)
        return cells.sum(-1) if mask is not None else cells.sum()

    def encode(self, u: Tensor) -> Tensor:
        """The input units of standardised values ``(*, D)``: ``input_units[i]`` per node, in order."""
        if self.single is not None:
            return self.single.encode(u)
        out = u.new_empty(*u.shape[:-1], int(self.input_units.sum()))
        for k, idx in self._node_index.items():  # a family encodes its nodes node-major
            out[..., self._unit_index[k].to(u.device)] = self._first[k].encode(u[..., idx.to(u.device)])
        return out

    def unit_mask(self, mask: Tensor) -> Tensor:
        """A per-node ``mask`` ``(*, D)`` repeated over each node's input units."""
        if self.single is not None:
            return mask
        return mask.repeat_interleave(self.input_units.to(mask.device), -1)

    # ------------------------------------------------------------------ the distribution
    def distribution(self, rows: Tensor, constants: Mapping[str, Tensor]) -> Distribution:
        """The distribution from the decoder's rows ``(*, R)`` and its per-node constants ``(D,)``."""
        parts = []
        for k, idx in self._node_index.items():
            f = self._first[k]
            index = self._row_index[k].to(rows.device)
            heads = [rows[..., index[h]] for h in range(index.shape[0])]
            const = {c: v[idx.to(v.device)] for c, v in constants.items() if c in f.constants}
            parts.append((idx, f, f.distribution(*heads, **const)))
        return Mixed(parts, len(self.members))

    def point(self, d: Distribution) -> Tensor:
        """Each node's point prediction in model units (a mean; a category's mode)."""
        if isinstance(d, Mixed):
            return d.gather(lambda f, p: f.point(p))
        return self.members[0].point(d)

    def raw_point(self, d: Distribution, loc: Tensor, scale: Tensor) -> Tensor:
        """Each node's point prediction on the raw scale."""
        if not isinstance(d, Mixed):
            return self.members[0].raw_point(d, loc, scale)
        return d.gather(lambda f, p, idx: f.raw_point(p, loc[idx], scale[idx]), with_index=True)

    def reconstruction_error(self, x: Tensor, xhat: Tensor) -> Tensor:
        """Per cell, each family's error of the raw point prediction ``xhat`` of ``x``."""
        if self.single is not None:
            return self.single.reconstruction_error(x, xhat)
        out = xhat.new_empty(torch.broadcast_shapes(x.shape, xhat.shape))
        for k, idx in self._node_index.items():
            out[..., idx] = self._first[k].reconstruction_error(x[..., idx], xhat[..., idx])
        return out

    def __repr__(self) -> str:
        return f"Observation({self.name})"


class Mixed(Distribution):
    """Independent groups of nodes, each in its own family: ``parts`` of ``(index, family, distribution)``."""

    has_rsample = False

    def __init__(self, parts: list[tuple[Tensor, Family, Distribution]], nodes: int) -> None:
        self.parts, self.nodes = parts, nodes
        batch = torch.broadcast_shapes(*(d.batch_shape for _, _, d in parts))
        super().__init__(batch, Size([nodes]), validate_args=False)

    def _scatter(self, values: list[Tensor]) -> Tensor:
        shape = torch.broadcast_shapes(*(v.shape[:-1] for v in values))
        out = values[0].new_empty(*shape, self.nodes)
        for (idx, _, _), v in zip(self.parts, values, strict=True):
            out[..., idx.to(out.device)] = v.expand(*shape, v.shape[-1]).to(out.dtype)
        return out

    def gather(self, fn, with_index: bool = False) -> Tensor:
        """``fn(family, distribution[, index])`` of every part, placed at its nodes."""
        if with_index:
            return self._scatter([fn(f, d, idx) for idx, f, d in self.parts])
        return self._scatter([fn(f, d) for _, f, d in self.parts])

    @property
    def mean(self) -> Tensor:
        return self.gather(lambda f, d: d.mean)

    def log_prob(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        total = 0
        for idx, _, d in self.parts:
            i = idx.to(x.device)
            total = total + d.log_prob(x[..., i], None if mask is None else mask[..., i])
        return total

    def noise(self, sample_shape: Size | Sequence[int] = ()) -> Tensor:
        return self._scatter([d.noise(sample_shape) for _, _, d in self.parts])

    def reparameterize(self, eta: Tensor, need: Tensor | None = None) -> Tensor:
        """Each part's draws of noise ``eta``; ``need``: the cells whose draw is used, where a
        family may spend more (a count's exact inverse CDF), else every cell.
        """
        if need is not None:
            need = need.expand(torch.broadcast_shapes(need.shape, eta.shape))
        draws = []
        for i, _, d in self.parts:
            i = i.to(eta.device)
            draws.append(d.reparameterize(eta[..., i], None if need is None else need[..., i]))
        return self._scatter(draws)

    def residual(self, x: Tensor, discrete: bool = False) -> Tensor:
        """The location-scale residuals; NaN at the nodes whose family has none (discrete ones), or
        with ``discrete`` a binary or categorical node's noise drawn given its value (``abduct``).
        """

        def one(f: Family, d: Distribution, idx: Tensor) -> Tensor:
            v = x[..., idx.to(x.device)]
            if f.abduction:
                return d.residual(v)
            if discrete and hasattr(d, "abduct"):
                return d.abduct(v)
            return torch.full_like(v, float("nan"))

        return self.gather(one, with_index=True)

    def sample(self, sample_shape: Size | Sequence[int] = ()) -> Tensor:
        with torch.no_grad():
            return self.reparameterize(self.noise(sample_shape))
