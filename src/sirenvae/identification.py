r"""Is an interventional query answered by the observed variables alone? The ID algorithm's decision.

A Bayesian network with latent nodes induces, over its observed nodes, the *latent projection*
(Verma & Pearl 1990): a directed edge :math:`a \to b` where :math:`a` reaches :math:`b` along a
directed path whose inner nodes are all latent, and a bidirected edge :math:`a \leftrightarrow b`
where some latent node reaches both along such paths. :math:`P(y \mid do(x))` is identified from
:math:`P(v)` over the observed nodes exactly when the ID algorithm of Shpitser & Pearl (2006) does
not fail on the projection; it fails on a *hedge*, two nested c-components (sets of nodes connected
by bidirected edges) :math:`F' \subset F` that witness two models with the same observational and
different interventional distributions. A query that intervenes on a latent node is treated as not
identified (its values have no units the data fix) unless no target descends from it, and so is one
whose targets hold a latent node. This module decides; a fitted model computes the answer.

References:
    | Identification of Joint Interventional Distributions in Recursive Semi-Markovian Causal
    | Models (Shpitser & Pearl, 2006), AAAI. https://cdn.aaai.org/AAAI/2006/AAAI06-191.pdf
    | Equivalence and Synthesis of Causal Models (Verma & Pearl, 1990), UAI.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sirenvae.graph import BayesianNetwork, GraphError

__all__ = ["ADMG", "Identification", "identify", "latent_projection"]


@dataclass(frozen=True)
class ADMG:
    """An acyclic directed mixed graph: directed edges from ``parents``, bidirected ``siblings``.

    Attributes:
        nodes: The nodes, in a topological order of the directed edges.
        parents: Each node's directed parents.
        siblings: Each node's bidirected neighbours (symmetric).
    """

    nodes: tuple[str, ...]
    parents: Mapping[str, frozenset[str]]
    siblings: Mapping[str, frozenset[str]]

    def subgraph(self, keep: Iterable[str]) -> ADMG:
        """The induced subgraph on ``keep``."""
        keep = frozenset(keep)
        return ADMG(
            tuple(v for v in self.nodes if v in keep),
            {v: self.parents[v] & keep for v in self.nodes if v in keep},
            {v: self.siblings[v] & keep for v in self.nodes if v in keep},
        )

    def cut_incoming(self, x: Iterable[str]) -> ADMG:
        r""":math:`G_{\bar X}`: the graph without the edges (directed or bidirected) into ``x``."""
        x = frozenset(x)
        return ADMG(
            self.nodes,
            {v: frozenset() if v in x else self.parents[v] for v in self.nodes},
            {v: frozenset() if v in x else self.siblings[v] - x for v in self.nodes},
        )

    def ancestors(self, y: Iterable[str]) -> frozenset[str]:
        """The ancestors of ``y`` along directed edges, ``y`` included."""
        out, todo = set(y), list(y)
        while todo:
            for p in self.parents[todo.pop()]:
                if p not in out:
                    out.add(p)
                    todo.append(p)
        return frozenset(out)

    def districts(self) -> list[frozenset[str]]:
        """The c-components: the connected components of the bidirected edges, in node order."""
        seen: set[str] = set()
        out = []
        for v in self.nodes:
            if v in seen:
                continue
            comp, todo = {v}, [v]
            while todo:
                for s in self.siblings[todo.pop()]:
                    if s not in comp:
                        comp.add(s)
                        todo.append(s)
            seen |= comp
            out.append(frozenset(comp))
        return out


def latent_projection(graph: BayesianNetwork, latent: Iterable[str]) -> ADMG:
    """The latent projection of ``graph`` onto its nodes outside ``latent``.

    Example:
        >>> bn = BayesianNetwork({"u": [], "x": ["u"], "m": ["x"], "y": ["m", "u"]})
        >>> g = latent_projection(bn, ["u"])
        >>> sorted(g.parents["y"]), sorted(g.siblings["x"])
        (['m'], ['y'])
    """
    hidden = set(latent)
    unknown = sorted(hidden - set(graph.nodes))
    if unknown:
        raise GraphError(f"unknown latent node(s): {', '.join(unknown)}")
    observed = tuple(v for v in graph.nodes if v not in hidden)

    def reach(start: str) -> set[str]:
        """The observed nodes ``start`` reaches along directed paths with latent inner nodes."""
        out, todo, seen = set(), list(graph.children(start)), set()
        while todo:
            v = todo.pop()
            if v in seen:
                continue
            seen.add(v)
            if v in hidden:
                todo.extend(graph.children(v))
            else:
                out.add(v)
        return out

    parents: dict[str, set[str]] = {v: set() for v in observed}
    siblings: dict[str, set[str]] = {v: set() for v in observed}
    for v in observed:
        for c in reach(v):
            parents[c].add(v)
    for h in hidden:
        r = reach(h)
        for a in r:
            siblings[a] |= r - {a}
    return ADMG(
        observed,
        {v: frozenset(p) for v, p in parents.items()},
        {v: frozenset(s) for v, s in siblings.items()},
    )


@dataclass(frozen=True)
class Identification:
    r"""Whether :math:`P(y \mid do(x))` is identified from the observed variables, and why.

    Attributes:
        identified: The decision.
        reason: One line for the user: how it is identified, or what prevents it.
        hedge: The hedge :math:`(F, F')` the ID algorithm failed on, if any.
    """

    identified: bool
    reason: str
    hedge: tuple[frozenset[str], frozenset[str]] | None = None

    @property
    def label(self) -> str:
        """``"identified"`` or ``"model-dependent"``: how an answer to the query must be read."""
        return "identified" if self.identified else "model-dependent"


def identify(
    graph: BayesianNetwork, latent: Iterable[str], do: Iterable[str], target: Iterable[str]
) -> Identification:
    r"""Decides whether :math:`P(\mathrm{target} \mid do(\mathrm{do}))` is identified from the
    distribution of the nodes outside ``latent`` (the ID algorithm on the latent projection).

    Example:
        >>> bn = BayesianNetwork({"u": [], "x": ["u"], "m": ["x"], "y": ["m", "u"]})
        >>> identify(bn, ["u"], ["x"], ["y"]).identified  # the front door
        True
        >>> identify(bn, ["u"], ["m"], ["x"]).reason
        'identified: x is no descendant of m'
        >>> identify(BayesianNetwork({"u": [], "x": ["u"], "y": ["x", "u"]}), ["u"], ["x"], ["y"]).label
        'model-dependent'
    """
    hidden = frozenset(latent)
    x, y = frozenset(do), frozenset(target)
    for v in sorted(x | y):
        if v not in graph:
            raise GraphError(f"unknown node {v!r}")
    if x & y:
        raise GraphError(f"node(s) {', '.join(sorted(x & y))} are both intervened on and targets")
    if not y:
        return Identification(False, "not identified: no observed node is left free, only latent ones")
    if y & hidden:
        names = ", ".join(sorted(y & hidden))
        return Identification(False, f"not identified: the target holds latent node(s) {names}")
    reached = set().union(*(graph.descendants(v) for v in x)) if x else set()
    if not (y & reached):
        verb = "is no descendant" if len(y) == 1 else "are no descendants"
        return Identification(True, f"identified: {', '.join(sorted(y))} {verb} of {', '.join(sorted(x))}")
    if x & hidden:
        names = ", ".join(sorted(x & hidden))
        return Identification(False, f"not identified: the intervention sets latent node(s) {names}")
    g = latent_projection(graph, hidden)
    hedge = _id(y, x, g)
    if hedge is None:
        return Identification(True, "identified (ID algorithm on the latent projection)")
    big, small = hedge
    return Identification(
        False,
        f"not identified: hedge {_show(big)} ⊃ {_show(small)} (nodes confounded by latent variables)",
        hedge,
    )


def _show(nodes: frozenset[str], n: int = 6) -> str:
    names = sorted(nodes)
    more = f", ... ({len(names)} nodes)" if len(names) > n else ""
    return "{" + ", ".join(names[:n]) + more + "}"


def _id(y: frozenset[str], x: frozenset[str], g: ADMG) -> tuple[frozenset[str], frozenset[str]] | None:
    """The ID algorithm (Shpitser & Pearl 2006, Fig. 3) as a decision: ``None`` when identified,
    else the hedge it fails on. Lines 1-7 of the paper are marked.
    """
    v = frozenset(g.nodes)
    if not x:  # line 1: a marginal of P(v)
        return None
    an = g.ancestors(y)
    if an != v:  # line 2: drop what is no ancestor of y
        return _id(y, x & an, g.subgraph(an))
    w = (v - x) - g.cut_incoming(x).ancestors(y)
    if w:  # line 3: intervening on w changes nothing
        return _id(y, x | w, g)
    parts = g.subgraph(v - x).districts()
    if len(parts) > 1:  # line 4: a product of factors, each one identified or not
        for s in parts:
            hedge = _id(s, v - s, g)
            if hedge is not None:
                return hedge
        return None
    s = parts[0]
    whole = g.districts()
    if whole == [v]:  # line 5: fail
        return v, s
    if s in whole:  # line 6: a c-component of G itself
        return None
    bigger = next(c for c in whole if s < c)  # line 7: within the c-component holding s
    return _id(y, x & bigger, g.subgraph(bigger))
