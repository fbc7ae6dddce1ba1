r"""Faithful inversion of a Bayesian network for amortized inference (NaMI).

Given a BN :math:`G` over observed :math:`X` and latent :math:`Z`, NaMI builds a graph :math:`H`
whose edges point from observed to latent nodes and among latents, such that the factorisation
:math:`q(z \mid x) = \prod_i q(z_i \mid pa_H(z_i))` encodes no conditional independence that
:math:`p(z \mid x)` lacks (faithfulness). :math:`H` structures the encoder of SIReN-VAE.

References:
    | Faithful Inversion of Generative Models for Effective Amortized Inference (Webb et al., 2018)
    | https://arxiv.org/abs/1712.00287
"""

from __future__ import annotations

from collections.abc import Iterable

import networkx as nx

from sirenvae.graph import BayesianNetwork, LatentSplit

__all__ = ["faithful_inverse", "is_faithful", "redundant_edges"]


def _split(bn: BayesianNetwork | LatentSplit, latent: Iterable[str] | None) -> LatentSplit:
    if isinstance(bn, LatentSplit):
        if latent is not None:
            raise ValueError("give a LatentSplit alone, or a network and its latent nodes")
        return bn
    if latent is None:
        raise ValueError("name the latent nodes, or give a LatentSplit")
    return LatentSplit(bn, latent)


def faithful_inverse(
    bn: BayesianNetwork | LatentSplit, latent: Iterable[str] | None = None, *, prune: bool = False
) -> BayesianNetwork:
    r"""The minimal faithful inverse :math:`H` of ``bn`` for the latent set (NaMI).

    Moralise :math:`G`; repeatedly eliminate, from the frontier of latents whose latent parents are
    all eliminated, the one with the fewest fill-in edges among its remaining neighbours (ties by
    topological order); connect those neighbours pairwise and make each of them a parent of the
    eliminated node in :math:`H`. Sampling :math:`q` runs in reverse elimination order.

    Arguments:
        bn: The generative network :math:`G`, or a :class:`~sirenvae.graph.LatentSplit` of it.
        latent: The latent nodes :math:`Z` (the rest are observed), unless ``bn`` is a split.
        prune: Drop every parent that d-separation in :math:`G` shows unnecessary, until none is
            left, so that no single edge can be removed without losing faithfulness.

    Returns:
        The inverse graph over all nodes of ``bn``: observed nodes first (as roots), then the
        latents in reverse elimination order.
    """
    split = _split(bn, latent)
    bn, Z, X = split.graph, split.latent, split.observed
    latent_set = set(Z)
    moral = bn.moral_graph()
    N = {v: set(moral.adj[v]) for v in bn.nodes}  # the moral graph minus what is eliminated
    rank = {v: i for i, v in enumerate(bn.nodes)}
    waiting = {z: sum(p in latent_set for p in bn.parents(z)) for z in Z}
    children: dict[str, list[str]] = {z: [] for z in Z}
    for z in Z:
        for p in bn.parents(z):
            if p in latent_set:
                children[p].append(z)
    frontier = {z for z in Z if not waiting[z]}
    cost: dict[str, tuple[int, int]] = {}
    inv_parents: dict[str, list[str]] = {}
    order: list[str] = []

    def fill(v: str) -> tuple[int, int]:
        nb = N[v]
        linked = sum(len(N[a] & nb) for a in nb)  # each edge among the neighbours twice
        return (len(nb) * (len(nb) - 1) - linked) // 2, rank[v]

    while frontier:
        for u in frontier:
            if u not in cost:
                cost[u] = fill(u)
        v = min(frontier, key=cost.__getitem__)
        nb = N.pop(v)
        for a in nb:
            N[a].discard(v)
            N[a] |= nb
            N[a].discard(a)
        # a fill count changes where a neighbourhood, or the edges within one, changed
        stale = set(nb).union(*(N[a] for a in nb)) if nb else set()
        for u in stale & frontier:
            cost.pop(u, None)
        inv_parents[v] = sorted(nb, key=rank.__getitem__)
        order.append(v)
        frontier.discard(v)
        for c in children[v]:
            waiting[c] -= 1
            if not waiting[c]:
                frontier.add(c)

    parents: dict[str, list[str]] = {x: [] for x in X}
    parents.update({z: inv_parents[z] for z in reversed(order)})
    H = BayesianNetwork(parents, name=f"{bn.name}-inverse" if bn.name else "inverse")
    if prune:
        H = _prune(bn, H, latent_set)
    return H


def is_faithful(
    bn: BayesianNetwork | LatentSplit, inverse: BayesianNetwork, latent: Iterable[str] | None = None
) -> bool:
    r"""Whether ``inverse`` is a faithful inverse of ``bn``.

    In a topological order of :math:`H` with the observed nodes first, every latent :math:`z` must be
    d-separated in :math:`G` from its other predecessors given :math:`pa_H(z)`. By the ordered Markov
    property this is equivalent to :math:`H` (with :math:`X` given) adding no independence.
    """
    split = _split(bn, latent)
    latent_set = set(split.latent)
    G = split.graph.to_networkx()
    order = _order_observed_first(inverse, latent_set)
    for k, z in enumerate(order):
        if z in latent_set and not _local_ok(G, z, set(inverse.parents(z)), order[:k]):
            return False
    return True


def redundant_edges(
    bn: BayesianNetwork | LatentSplit, inverse: BayesianNetwork, latent: Iterable[str] | None = None
) -> list[tuple[str, str]]:
    """The edges of ``inverse`` whose single removal keeps it faithful (empty iff minimal)."""
    split = _split(bn, latent)
    latent_set = set(split.latent)
    G = split.graph.to_networkx()
    order = _order_observed_first(inverse, latent_set)
    out = []
    for k, z in enumerate(order):
        if z not in latent_set:
            continue
        pa = set(inverse.parents(z))
        for p in inverse.parents(z):
            if _local_ok(G, z, pa - {p}, order[:k]):
                out.append((p, z))
    return out


def _order_observed_first(H: BayesianNetwork, latent: set[str]) -> list[str]:
    return [v for v in H.nodes if v not in latent] + [v for v in H.nodes if v in latent]


def _local_ok(G: nx.DiGraph, z: str, pa: set[str], predecessors: list[str]) -> bool:
    rest = set(predecessors) - pa
    return not rest or nx.is_d_separator(G, {z}, rest, pa)


def _prune(bn: BayesianNetwork, H: BayesianNetwork, latent: set[str]) -> BayesianNetwork:
    G = bn.to_networkx()
    order = _order_observed_first(H, latent)
    parents: dict[str, list[str]] = {}
    for k, v in enumerate(order):
        pa = list(H.parents(v))
        if v in latent:
            changed = True
            while changed:
                changed = False
                # latest-placed parents are tried first: they are the likeliest to be redundant
                for p in sorted(pa, key=order.index, reverse=True):
                    if _local_ok(G, v, set(pa) - {p}, order[:k]):
                        pa.remove(p)
                        changed = True
                        break
        parents[v] = pa
    return BayesianNetwork(parents, name=H.name)
