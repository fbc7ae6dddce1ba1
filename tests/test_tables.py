"""Count tables for discrete nodes with observed discrete parents (sirenvae.models.tables)."""

import math
from dataclasses import replace

import torch

from helpers import float64
from sirenvae.graph import BayesianNetwork, LatentSplit
from sirenvae.models import ModelConfig, build_model
from sirenvae.models.likelihoods import UNSEEN
from sirenvae.models.tables import ALPHAS

#: a (binary root) -> c (3 levels) <- b (binary root); z (latent) -> y (binary), z -> w (continuous);
#: d (binary) has the continuous parent w, e (binary) the parents c and a.
GRAPH = BayesianNetwork(
    {"a": [], "b": [], "c": ["a", "b"], "z": ["a"], "y": ["z"], "w": ["z"], "d": ["w"], "e": ["c", "a"]}
)
TYPES = {"a": "binary", "b": "binary", "c": "categorical:3", "y": "binary", "d": "binary", "e": "binary"}
SMALL = ModelConfig(
    prior_blocks=1, encoder_blocks=1, hidden_per_set=2, decoder_hidden_per_set=2, conditioning="parents",
    affine=True, types=TYPES,
)  # fmt: skip


def _rows(n=80, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = (torch.rand(n, generator=g) < 0.3).double()
    b = (torch.rand(n, generator=g) < 0.6).double()
    c = ((a + b + torch.rand(n, generator=g).round()).clamp(max=2)).double()
    z = torch.randn(n, generator=g, dtype=torch.float64) + a
    y = (torch.rand(n, generator=g, dtype=torch.float64) < torch.sigmoid(2 * z)).double()
    w = z + 0.3 * torch.randn(n, generator=g, dtype=torch.float64)
    d = (torch.rand(n, generator=g, dtype=torch.float64) < torch.sigmoid(w)).double()
    e = (torch.rand(n, generator=g) < 0.2 + 0.3 * c / 2 + 0.3 * a).double()
    cols = {"a": a, "b": b, "c": c, "y": y, "w": w, "d": d, "e": e}
    split = LatentSplit(GRAPH, ["z"])
    return split, torch.stack([cols[v] for v in split.observed], -1)


def _model(config=SMALL, n=80):
    split, x = _rows(n)
    torch.manual_seed(0)
    model = float64(build_model(split, config))
    model.set_standardization(x)
    return model, split, x


def _loo(counts: torch.Tensor, alpha: float, m: torch.Tensor) -> float:
    """Leave-one-out log-likelihood by brute force: drop each row, rebuild the table, score the row."""
    total = 0.0
    C, K = counts.shape
    for c in range(C):
        for k in range(K):
            for _ in range(int(counts[c, k])):
                left = counts.clone()
                left[c, k] -= 1
                total += math.log((left[c, k] + alpha * m[k]) / (left[c].sum() + alpha))
    return total


def test_exactly_the_nodes_with_observed_discrete_parents_get_tables():
    model, split, _ = _model()
    tabled = {split.observed[i] for i in model.decoder.tables.nodes}
    # roots a, b; c and e (discrete observed parents); not y (latent parent), d (continuous parent), w
    assert tabled == {"a", "b", "c", "e"}
    before = {k: v for k, v in SMALL.to_dict().items() if k != "discrete_tables"}  # a config from before
    legacy = build_model(split, ModelConfig.from_dict(before))
    assert legacy.decoder.tables is None  # a run directory from before keeps its decoder
    assert build_model(split, replace(SMALL, variant="vae")).decoder.tables is None  # no graph


def test_a_table_is_the_smoothed_count_with_the_leave_one_out_alpha():
    model, split, x = _model()
    tables = model.decoder.tables
    i, t = split.observed.index("e"), model.decoder.tables.nodes.index(split.observed.index("e"))
    ia, ic = split.observed.index("a"), split.observed.index("c")
    # e's parents in graph order (a, c): configuration a + 2 c, codes a in {0, 1}, c in {0, 1, 2, none}
    counts = torch.zeros(8, 2, dtype=torch.float64)
    for row in x:
        counts[int(row[ia]) + 2 * int(row[ic]), int(row[i])] += 1
    m = torch.full((2,), 0.5, dtype=torch.float64)  # even over the levels
    scores = [_loo(counts, a, m) for a in ALPHAS]
    best = ALPHAS[max(range(len(ALPHAS)), key=scores.__getitem__)]
    assert tables.alpha[t].item() == best
    expected = ((counts + best * m) / (counts.sum(1, keepdim=True) + best)).log()
    torch.testing.assert_close(tables.log_probs[t, :8, :2], expected)
    # a configuration never seen (c unseen: the "none" code) gets the even distribution
    assert counts[6:].sum() == 0
    torch.testing.assert_close(tables.log_probs[t, 6, :2], m.log())


def test_the_model_reads_the_tables_and_their_factors_train_nothing():
    model, split, x = _model()
    z, _ = model.posterior(x, 2)
    d = model.decoder(model.nodes(z, model.standardize(x)))
    tables = model.decoder.tables
    for v in ("e", "c"):
        i = split.observed.index(v)
        t = tables.nodes.index(i)
        mask = torch.zeros_like(x, dtype=torch.bool)
        mask[:, i] = True
        got = d.log_prob(x, mask)  # (2, N): this node's factor alone
        parents = [split.observed.index(p) for p in sorted(GRAPH.parents(v), key=GRAPH.index)]
        config = sum(x[:, p].long() * s for p, s in zip(parents, [1, 2], strict=False))
        expected = tables.log_probs[t, config, x[:, i].long()]
        if v == "c":
            expected = expected + math.log1p(-UNSEEN)  # a category keeps its unseen-level share
        torch.testing.assert_close(got, expected.expand(2, -1))
        got.sum().backward(retain_graph=True)
        assert all(p.grad is None or not p.grad.any() for p in model.parameters())


def test_tables_follow_holes_and_interventions():
    split, x = _rows()
    holey = x.clone()
    ie, ic = split.observed.index("e"), split.observed.index("c")
    holey[:10, ic] = math.nan  # e's parent missing: those rows leave e's counts
    torch.manual_seed(0)
    model = float64(build_model(split, SMALL))
    model.set_standardization(holey)
    t = model.decoder.tables.nodes.index(ie)
    full = float64(build_model(split, SMALL))
    full.set_standardization(x[10:])
    assert model.decoder.tables.alpha[t] == full.decoder.tables.alpha[t]
    torch.testing.assert_close(model.decoder.tables.log_probs[t], full.decoder.tables.log_probs[t])
    with torch.no_grad():
        lw = model.importance_samples(holey, 8)[2]
    assert torch.isfinite(lw).all()
