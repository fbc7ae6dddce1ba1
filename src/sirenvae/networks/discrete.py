r"""A discrete Bayesian network with known conditional probability tables (ALARM, CHILD).

Values are state codes (``0..K-1`` in each node's declared order, as floats like every other value).
The joint is :math:`\log p(x) = \sum_i \log P(x_i \mid x_{pa(i)})`; the marginal of the observed
nodes sums the joint over every joint state of the others (their cardinalities multiplied: 36 for
ALARM with HR, VENTLUNG and ARTCO2 hidden), which gives the exact oracle NLL.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
from torch import Tensor

from sirenvae.graph import BayesianNetwork, GraphError
from sirenvae.variables import Variable

__all__ = ["MAX_HIDDEN_STATES", "DiscreteNetwork"]

#: The most joint hidden states the exact marginal enumerates.
MAX_HIDDEN_STATES = 100_000


@dataclass(frozen=True, eq=False)
class DiscreteNetwork:
    """A discrete BN: per node its states and a CPT of one row per parent configuration (row-major
    in the order of its parents, the last varying fastest).
    """

    graph: BayesianNetwork
    states: Mapping[str, tuple[str, ...]]
    cpts: Mapping[str, Tensor]  # (configurations, states), rows summing to 1
    citation: str = ""

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> DiscreteNetwork:
        parents, states, cpts = {}, {}, {}
        for entry in doc["nodes"]:
            v = entry["name"]
            parents[v] = list(entry.get("parents", []))
            states[v] = tuple(str(s) for s in entry["states"])
            table = torch.tensor(entry["cpt"], dtype=torch.float64)
            cpts[v] = table / table.sum(-1, keepdim=True)
        graph = BayesianNetwork(parents, name=str(doc.get("name", "")))
        for v in graph.nodes:
            rows = math.prod(len(states[p]) for p in graph.parents(v))
            if cpts[v].shape != (rows, len(states[v])):
                raise GraphError(
                    f"node {v!r}: CPT of shape {tuple(cpts[v].shape)}, expected ({rows}, {len(states[v])})"
                )
        return cls(graph, states, cpts, str(doc.get("citation", "")))

    @property
    def nodes(self) -> tuple[str, ...]:
        return self.graph.nodes

    @cached_property
    def _strides(self) -> dict[str, list[tuple[int, int]]]:
        """Per node, ``(parent position, stride)`` of its CPT row index."""
        out = {}
        for v in self.graph.nodes:
            pa = list(self.graph.parents(v))
            strides, s = [], 1
            for p in reversed(pa):
                strides.append((self.graph.index(p), s))
                s *= len(self.states[p])
            out[v] = strides
        return out

    def _row(self, v: str, x: Tensor) -> Tensor:
        row = torch.zeros(x.shape[:-1], dtype=torch.long, device=x.device)
        for j, stride in self._strides[v]:
            row = row + x[..., j].long() * stride
        return row

    def sample(self, n: int, seed: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        """``n`` ancestral samples of every node's code, ``(n, |G|)`` in graph order."""
        g = generator if generator is not None else torch.Generator()
        if generator is None:
            g.manual_seed(int(seed)) if seed is not None else g.seed()
        x = torch.zeros(n, len(self.graph), dtype=torch.float64)
        for v in self.graph.nodes:
            probs = self.cpts[v][self._row(v, x)]
            u = torch.rand(n, 1, generator=g, dtype=torch.float64)
            code = (probs.cumsum(-1) < u).sum(-1).clamp(max=probs.shape[-1] - 1)
            x[:, self.graph.index(v)] = code.double()
        return x

    def log_joint(self, x: Tensor) -> Tensor:
        r""":math:`\log p(x)` of full rows ``(..., |G|)`` of codes."""
        total = torch.zeros(x.shape[:-1], dtype=torch.float64, device=x.device)
        for v in self.graph.nodes:
            j = self.graph.index(v)
            table = self.cpts[v].to(x.device)
            total = total + table[self._row(v, x), x[..., j].long()].log()
        return total

    def variables(self, observed: Sequence[str]) -> dict[str, Variable]:
        """The observed nodes as binary (2 states) or categorical variables with their declared states."""
        return {
            v: Variable("binary" if len(self.states[v]) == 2 else "categorical", self.states[v])
            for v in observed
        }

    def declared(self) -> tuple[dict[str, str], dict[str, list[str]]]:
        """Every node's type and states, as a graph file declares them (``--types`` words, levels)."""
        types = {v: "binary" if len(s) == 2 else "categorical" for v, s in self.states.items()}
        return types, {v: list(s) for v, s in self.states.items()}

    def log_prob(self, x: Tensor, variables: Sequence[str] | None = None) -> Tensor:
        """The exact log-probability of rows ``x`` of ``variables`` (default: every node), summing the
        joint over every joint state of the other nodes (at most :data:`MAX_HIDDEN_STATES`).
        """
        variables = list(variables or self.graph.nodes)
        hidden = [v for v in self.graph.nodes if v not in set(variables)]
        sizes = [len(self.states[v]) for v in hidden]
        count = math.prod(sizes)
        if count > MAX_HIDDEN_STATES:
            raise ValueError(
                f"{count} joint hidden states: too many to enumerate (at most {MAX_HIDDEN_STATES})"
            )
        full = torch.zeros(x.shape[0], len(self.graph), dtype=torch.float64)
        full[:, [self.graph.index(v) for v in variables]] = x.double()
        grids = (
            torch.cartesian_prod(*(torch.arange(k, dtype=torch.float64) for k in sizes)) if hidden else None
        )
        if grids is not None and grids.ndim == 1:
            grids = grids[:, None]
        if grids is None:
            return self.log_joint(full)
        rows = full.expand(count, *full.shape).clone()  # (states, N, |G|)
        rows[..., [self.graph.index(v) for v in hidden]] = grids[:, None, :]
        return torch.logsumexp(self.log_joint(rows), 0)
