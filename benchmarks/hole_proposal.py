"""The proposal on holey rows: each of its two options on and off, on the same holey rows, fitted
with ``true``'s first candidate (``linear``) — ``hole_proposal`` (a missing node with children drawn
by a network over its Markov blanket, not blind from its decoder conditional) and ``mask_scale`` (the
presence bits move the encoder's affine log-scales).

    python benchmarks/hole_proposal.py user-linear 80 100 0.2 [hole_proposal|mask_scale]
    python benchmarks/hole_proposal.py user-nonlinear 96 100 0.2
    python benchmarks/hole_proposal.py magic-niab 88 100 0.2

Arguments: the problem (``user-linear`` / ``user-nonlinear``: the simulated problems of
``benchmarks/user_graphs.py``; or a shipped network with its default hidden nodes), training rows,
seed (tuning draws: 100 and up), the share of cells missing completely at random, in the training
rows and in 1,000 held-out rows (every row keeps a cell), and the option compared (default
``hole_proposal``; the other options keep their defaults). Prints one JSON line per arm:
the held-out NLL of the present cells (IWAE, K = 1,000), the imputation RMSE of the held-out holes
in units of each column's held-out sd, and the importance weights' median effective sample size.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).parent))

from sirenvae.api import fit_rows  # noqa: E402
from sirenvae.data import default_latent_rule, latent_split, sample_splits  # noqa: E402
from sirenvae.graph import BayesianNetwork, LatentSplit  # noqa: E402
from sirenvae.imputation import impute  # noqa: E402
from sirenvae.networks import load_network  # noqa: E402
from user_graphs import linear_problem, nonlinear_problem  # noqa: E402

TEST_ROWS = 1000


def problem(name: str, n: int, seed: int) -> tuple[LatentSplit, np.ndarray, np.ndarray]:
    """The split, training rows and held-out rows (observed columns in the split's order)."""
    if name.startswith("user-"):
        p = (linear_problem if name == "user-linear" else nonlinear_problem)(
            seed, n_train=n, n_test=TEST_ROWS
        )
        split = LatentSplit(BayesianNetwork(p.parents), p.hidden)
        index = {v: i for i, v in enumerate(p.names)}
        cols = [index[v] for v in split.observed]
        return split, p.train[:, cols], p.test[:, cols]
    net = load_network(name)
    split = latent_split(net.graph, default_latent_rule(name))
    s = sample_splits(net, split, train_size=n, test_size=TEST_ROWS, seed=seed, dtype=torch.float64)
    return split, s.train.numpy(), s.test.numpy()


def main() -> None:
    name, n, seed, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    option = sys.argv[5] if len(sys.argv) > 5 else "hole_proposal"
    torch.set_num_threads(1)
    split, train, truth = problem(name, n, seed)
    rng = np.random.default_rng([seed, 7])
    train = np.where(rng.random(train.shape) < rate, np.nan, train)
    miss = rng.random(truth.shape) < rate
    miss[miss.all(1), 0] = False
    test = np.where(miss, np.nan, truth)
    sd = truth.std(0)
    for on in (True, False):
        start = time.perf_counter()
        fitted = fit_rows(
            split,
            torch.tensor(train, dtype=torch.float32),
            model="true",
            options={"seed": seed, "progress": False, option: on},
            search={"workers": 1, "max_candidates": 1},
        )
        seconds = time.perf_counter() - start
        torch.manual_seed(0)
        imp = impute(fitted.model, torch.tensor(test, dtype=torch.float32), samples=1000)
        ll = fitted.log_prob(pd.DataFrame(test, columns=split.observed), importance_samples=1000).to_numpy()
        ess = imp.ess.double().numpy()[miss.any(1)]
        rmse = float(np.sqrt((((imp.mean.double().numpy() - truth) / sd)[miss] ** 2).mean()))
        holes = fitted.model.holes
        row = {"problem": name, "rows": n, "seed": seed, "missing": rate, option: on}
        row |= {
            "proposed_nodes": 0 if holes is None else len(holes.targets),
            "nll": round(float(-ll.mean()), 4),
        }
        row |= {
            "rmse": round(rmse, 4),
            "ess_median": round(float(np.median(ess)), 1),
            "fit_seconds": round(seconds, 1),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
