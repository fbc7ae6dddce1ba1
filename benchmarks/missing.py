"""Missing cells: imputation error, NLL of the present cells and interval coverage, beside the
imputers a statistician would use.

    python benchmarks/missing.py --out docs/results/missing [--networks ecoli70,magic-niab]
        [--factors 2,10] [--arms mcar20] [--models true,vae]
    python benchmarks/missing.py --breast-cancer --out docs/results/missing

For each network, training size ``factor * |G|``, missingness arm and seed, the training rows and
:data:`TEST_ROWS` held-out rows (the same draws as every other benchmark) get holes:

- ``mcar20`` / ``mcar50``: each observed cell missing completely at random with probability 0.2 / 0.5;
- ``mar20``: the first observed column is kept complete and each other cell is missing with
  probability ``sigmoid(a + 1.5 z)``, ``z`` the row's standardised value of that column, ``a`` set so
  that 20 % of those cells are missing (missing at random: it depends on a present value only).

A row that would lose every cell keeps one, at random. Each model is fitted on the holey training
rows and imputes the held-out rows' holes (inductive):

- SIReN-VAE ``true`` (and ``fc``) and the VAE (MIWAE: the VAE trained by the masked IWAE bound)
  with ``--settings auto``, as ``sirenvae fit`` does on a holey table; single imputation by the
  importance-weighted conditional mean (K = :data:`IMPORTANCE`), 90 % intervals from the weighted
  5 % and 95 % quantiles of the same proposals;
- a multivariate normal fitted by EM on the holey rows (:func:`gaussian_em_cv`, the library's ``em``
  baseline: its diagonal shrinkage chosen by 3-fold CV), imputing by its conditional mean, intervals from its
  conditional sd;
- scikit-learn's ``IterativeImputer`` with ``BayesianRidge`` (intervals: the 5 % and 95 % quantiles of
  :data:`DRAWS` runs with ``sample_posterior=True``, one seed each) and with ``ExtraTrees``
  (missForest's imputer);
- the training rows' column means;
- the Bayes floor: the exact conditional mean under the generating network (its observed marginal is
  Gaussian), whose intervals are exact.

Imputation error: the root mean squared error over the held-out holes, each cell in units of its
column's sd under the generating network. NLL: ``-log p(x_obs)`` per held-out row (IWAE for the deep
models, exact for the Gaussians). Each finished cell is written at once, so a killed run resumes.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sirenvae.baselines import fit_classical, gaussian_conditional
from sirenvae.data import default_latent_rule, latent_split, sample_splits
from sirenvae.networks import load_network

TEST_ROWS = 1000
IMPORTANCE = 1000
DRAWS = 20
LEVELS = (0.05, 0.95)
ARMS = {"mcar20": ("mcar", 0.2), "mcar50": ("mcar", 0.5), "mar20": ("mar", 0.2)}


def holes(x: np.ndarray, arm: str, rng: np.random.Generator) -> np.ndarray:
    """The missing cells of ``x`` under ``arm`` (``True`` = missing); every row keeps one cell."""
    kind, rate = ARMS[arm]
    n, d = x.shape
    if kind == "mcar":
        miss = rng.random((n, d)) < rate
    else:
        z = (x[:, 0] - x[:, 0].mean()) / x[:, 0].std()
        lo, hi = -20.0, 20.0
        for _ in range(60):  # a such that mean sigmoid(a + 1.5 z) = rate
            a = (lo + hi) / 2
            lo, hi = (a, hi) if (1 / (1 + np.exp(-(a + 1.5 * z)))).mean() < rate else (lo, a)
        p = 1 / (1 + np.exp(-(a + 1.5 * z)))
        miss = rng.random((n, d)) < p[:, None]
        miss[:, 0] = False
    for i in np.flatnonzero(miss.all(1)):
        miss[i, rng.integers(d)] = False
    return miss


def gaussian_em_cv(x: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """The library's ``em`` baseline (:func:`sirenvae.baselines.gaussian_em`, its ridge chosen from
    ``EM_RIDGES`` by 3-fold CV on the rows' held-out ``log p(x_obs)``): mean, covariance and ridge.
    """
    model = fit_classical("em", torch.as_tensor(x), seed=seed)
    return model.mean.numpy(), model.covariance.numpy(), model.fit["ridge"]


def _errors(truth: np.ndarray, filled: np.ndarray, miss: np.ndarray, sd: np.ndarray) -> float:
    return float(np.sqrt((((filled - truth) / sd)[miss] ** 2).mean()))


def _coverage(truth: np.ndarray, lo: np.ndarray, hi: np.ndarray, miss: np.ndarray) -> float:
    return float(((truth >= lo) & (truth <= hi))[miss].mean())


def _iterative(train: np.ndarray, test: np.ndarray, seed: int, trees: bool, posterior: bool = False):
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer

    if trees:
        from sklearn.ensemble import ExtraTreesRegressor

        est = ExtraTreesRegressor(n_estimators=100, min_samples_leaf=1, n_jobs=1, random_state=seed)
        imp = IterativeImputer(estimator=est, max_iter=10, random_state=seed)
    else:
        imp = IterativeImputer(max_iter=25, sample_posterior=posterior, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "early stopping criterion not reached"
        imp.fit(train)
        return imp.transform(test)


def classical_cell(train, test, truth, miss, sd, mu_true, cov_true, seed: int) -> dict:
    out = {}
    start = time.perf_counter()
    mean = np.where(miss, np.nanmean(train, 0), test)
    out["mean"] = {"rmse": _errors(truth, mean, miss, sd), "seconds": time.perf_counter() - start}
    z = 1.6448536269514722  # the 95 % point of the standard normal
    for name in ("oracle", "em"):
        start = time.perf_counter()
        mu, cov, ridge = (mu_true, cov_true, 0.0) if name == "oracle" else gaussian_em_cv(train, seed)
        filled, var, ll = gaussian_conditional(test, mu, cov)
        sd_c = np.sqrt(var)
        out[name] = {
            "rmse": _errors(truth, filled, miss, sd),
            "nll": float(-ll.mean()),
            "nll_se": float(ll.std() / math.sqrt(len(ll))),
            "coverage": _coverage(truth, filled - z * sd_c, filled + z * sd_c, miss),
            "seconds": time.perf_counter() - start,
        }
    out["em"]["ridge"] = ridge
    start = time.perf_counter()
    filled = _iterative(train, test, seed, trees=False)
    seconds = time.perf_counter() - start
    draws = np.stack(
        [_iterative(train, test, seed + 1 + r, trees=False, posterior=True) for r in range(DRAWS)]
    )
    lo, hi = np.quantile(draws, LEVELS, axis=0)
    out["ii_bayesridge"] = {
        "rmse": _errors(truth, filled, miss, sd),
        "coverage": _coverage(truth, lo, hi, miss),
        "seconds": seconds,
    }
    start = time.perf_counter()
    filled = _iterative(train, test, seed, trees=True)
    out["ii_extratrees"] = {"rmse": _errors(truth, filled, miss, sd), "seconds": time.perf_counter() - start}
    return out


def deep_cell(name: str, split, train: np.ndarray, test: np.ndarray, truth, miss, sd, variant, seed) -> dict:
    from sirenvae.api import fit_rows
    from sirenvae.imputation import impute

    start = time.perf_counter()
    fitted = fit_rows(
        split,
        torch.tensor(train, dtype=torch.float32),
        model=variant,
        options={"seed": seed, "progress": False},
        search={"workers": 1},
        extra_meta={"network": name},
    )
    seconds = time.perf_counter() - start
    torch.manual_seed(0)
    xt = torch.tensor(test, dtype=torch.float32)
    imp = impute(fitted.model, xt, samples=IMPORTANCE, quantiles=LEVELS)
    frame = pd.DataFrame(test, columns=split.observed)
    ll = fitted.log_prob(frame, importance_samples=IMPORTANCE).to_numpy()
    ess = imp.ess.double().numpy()
    holey = miss.any(1)
    lo, hi = imp.quantiles.double().numpy()
    return {
        "rmse": _errors(truth, imp.mean.double().numpy(), miss, sd),
        "nll": float(-ll.mean()),
        "nll_se": float(ll.std() / math.sqrt(len(ll))),
        "coverage": _coverage(truth, lo, hi, miss),
        "ess_median": float(np.median(ess[holey])),
        "ess_below_10": float((ess[holey] < 10).mean()),
        "seconds": seconds,
        "chosen": fitted.settings.get("chosen"),
    }


def run_grid(args) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "cells.json"
    cells = json.loads(path.read_text()) if path.exists() else []
    done = {(c["network"], c["factor"], c["arm"], c["seed"]): c for c in cells}
    models = [m for m in args.models.split(",") if m]
    for name in args.networks.split(","):
        net = load_network(name)
        split = latent_split(net.graph, default_latent_rule(name))
        mu_true, cov_true = (t.numpy() for t in net.mean_and_covariance(split.observed))
        sd = np.sqrt(np.diag(cov_true))
        for factor in map(int, args.factors.split(",")):
            for arm in args.arms.split(","):
                for seed in map(int, args.seeds.split(",")):
                    key = (name, factor, arm, seed)
                    cell = done.get(key)
                    todo = [m for m in models if cell is None or m not in cell]
                    if cell is not None and not todo:
                        continue
                    rows = factor * len(net.graph)
                    s = sample_splits(
                        net, split, train_size=rows, test_size=TEST_ROWS, seed=seed, dtype=torch.float64
                    )
                    rng = np.random.default_rng([seed, list(ARMS).index(arm), 20])
                    train, truth = s.train.numpy().copy(), s.test.numpy()
                    train[holes(train, arm, rng)] = np.nan
                    miss = holes(truth, arm, rng)
                    test = np.where(miss, np.nan, truth)
                    if cell is None:
                        cell = {"network": name, "factor": factor, "arm": arm, "seed": seed, "rows": rows,
                                "test_rows": TEST_ROWS, "train_missing": float(np.isnan(train).mean()),
                                "test_missing": float(miss.mean())}  # fmt: skip
                        cell |= classical_cell(train, test, truth, miss, sd, mu_true, cov_true, seed)
                        cells.append(cell)
                        done[key] = cell
                        print(name, factor, arm, seed, {k: cell[k] for k in ("oracle", "em")}, flush=True)
                    for variant in todo:
                        cell[variant] = deep_cell(name, split, train, test, truth, miss, sd, variant, seed)
                        print(name, factor, arm, seed, variant, cell[variant], flush=True)
                        path.write_text(json.dumps(cells, indent=1) + "\n")
                    path.write_text(json.dumps(cells, indent=1) + "\n")
    report(cells, args.out / "README.md")


def breast_cancer(args) -> None:
    """MIWAE's protocol: breast-cancer data standardised, 50 % MCAR (seed 1234), transductive, the
    ``vae`` variant with Student-t noise over 10 latent roots that are parents of every column.
    """
    from sklearn.datasets import load_breast_cancer

    from sirenvae.api import fit_rows
    from sirenvae.graph import BayesianNetwork, LatentSplit
    from sirenvae.imputation import impute

    x = load_breast_cancer().data
    x = (x - x.mean(0)) / x.std(0)
    rng = np.random.default_rng(1234)
    miss = rng.random(x.shape) < 0.5
    for i in np.flatnonzero(miss.all(1)):
        miss[i, rng.integers(x.shape[1])] = False
    holey = np.where(miss, np.nan, x)
    latent = [f"z{i}" for i in range(10)]
    columns = [f"x{j}" for j in range(x.shape[1])]
    graph = BayesianNetwork({**{z: [] for z in latent}, **{c: latent for c in columns}}, name="breast")
    split = LatentSplit(graph, latent)
    out = {}
    for variant in args.models.split(","):
        start = time.perf_counter()
        fitted = fit_rows(
            split,
            torch.tensor(holey, dtype=torch.float32),
            model=variant,
            options={"seed": 0, "progress": False, "likelihood": "studentt"},
            search={"workers": 1},
        )
        torch.manual_seed(0)
        filled = impute(fitted.model, torch.tensor(holey, dtype=torch.float32), samples=IMPORTANCE).mean
        mse = float(((filled.double().numpy() - x)[miss] ** 2).mean())
        out[variant] = {
            "mse": mse,
            "seconds": time.perf_counter() - start,
            "chosen": fitted.settings.get("chosen"),
        }
        print(variant, out[variant], flush=True)
    start = time.perf_counter()
    filled = _iterative(holey, holey, 0, trees=False)
    out["ii_bayesridge"] = {
        "mse": float(((filled - x)[miss] ** 2).mean()),
        "seconds": time.perf_counter() - start,
    }
    out["mean"] = {"mse": float(((np.nanmean(holey, 0) - x)[miss] ** 2).mean())}
    out["missing"] = float(miss.mean())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "breast_cancer.json").write_text(json.dumps(out, indent=1) + "\n")
    print(out)


METHODS = (
    ("true", "SIReN-VAE true"),
    ("fc", "FC"),
    ("vae", "VAE (MIWAE)"),
    ("em", "Gaussian EM"),
    ("ii_bayesridge", "II BayesRidge"),
    ("ii_extratrees", "II ExtraTrees"),
    ("mean", "mean"),
    ("oracle", "Bayes floor"),
)


def report(cells: list[dict], path: Path) -> None:
    lines = [
        "# Missing cells: imputation error of held-out holes (RMSE in column sds)",
        "",
        "Written by `python benchmarks/missing.py` (its docstring has the protocol). Deep models with",
        f"`--settings auto` on the holey training rows; {TEST_ROWS} held-out rows with the same missingness,",
        f"imputed with K = {IMPORTANCE} importance samples. Mean over seeds; `wins` counts the seeds where",
        "true has the lowest error of every method but the floor.",
        "",
    ]
    present = [(k, label) for k, label in METHODS if any(k in c for c in cells)]
    lines += [
        "| network | rows | arm | seeds | " + " | ".join(label for _, label in present) + " | wins |",
        "|" + "---|" * (len(present) + 5),
    ]
    groups: dict = {}
    for c in cells:
        groups.setdefault((c["network"], c["rows"], c["arm"]), []).append(c)
    for (net, rows, arm), g in groups.items():
        means = []
        for k, _ in present:
            vals = [c[k]["rmse"] for c in g if k in c]
            means.append(f"{np.mean(vals):.3f}" if vals else "-")
        wins = sum(
            1
            for c in g
            if "true" in c
            and all(c["true"]["rmse"] <= c[k]["rmse"] for k, _ in present if k in c and k != "oracle")
        )
        lines.append(f"| {net} | {rows} | {arm} | {len(g)} | " + " | ".join(means) + f" | {wins}/{len(g)} |")
    lines += [
        "",
        "NLL of the present cells of the held-out rows (nats per row; IWAE for the deep models, exact for",
        "the Gaussians), 90 % interval coverage of the held-out holes, and the importance sampler's",
        "effective sample size over the rows with a hole (median; share of rows below 10):",
        "",
        "| network | rows | arm | NLL true | NLL VAE | NLL EM | NLL floor | cover true | cover VAE "
        "| cover EM | cover II | ESS true | ESS<10 true |",
        "|" + "---|" * 13,
    ]

    def mean(g, k, f):
        vals = [c[k][f] for c in g if k in c and f in c[k]]
        return f"{np.mean(vals):.3f}" if vals else "-"

    for (net, rows, arm), g in groups.items():
        cols = [mean(g, k, "nll") for k in ("true", "vae", "em", "oracle")]
        cols += [mean(g, k, "coverage") for k in ("true", "vae", "em", "ii_bayesridge")]
        ess = [c["true"]["ess_median"] for c in g if "true" in c]
        low = [c["true"]["ess_below_10"] for c in g if "true" in c]
        cols += [f"{np.median(ess):.0f}" if ess else "-", f"{np.mean(low):.3f}" if low else "-"]
        lines.append(f"| {net} | {rows} | {arm} | " + " | ".join(cols) + " |")
    lines += ["", "Per seed (RMSE; true's choice):", ""]
    lines += [
        "| network | rows | arm | seed | " + " | ".join(label for _, label in present) + " | true chose |",
        "|" + "---|" * (len(present) + 5),
    ]
    for c in cells:
        vals = " | ".join(f"{c[k]['rmse']:.3f}" if k in c else "-" for k, _ in present)
        chose = c.get("true", {}).get("chosen", "-")
        lines.append(f"| {c['network']} | {c['rows']} | {c['arm']} | {c['seed']} | {vals} | {chose} |")
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/results/missing"))
    parser.add_argument("--networks", default="ecoli70,magic-niab")
    parser.add_argument("--factors", default="2,10")
    parser.add_argument("--arms", default="mcar20")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--models", default="true,vae")
    parser.add_argument("--breast-cancer", action="store_true", help="MIWAE's breast-cancer check instead.")
    args = parser.parse_args()
    torch.set_num_threads(1)
    (breast_cancer if args.breast_cancer else run_grid)(args)


if __name__ == "__main__":
    main()
