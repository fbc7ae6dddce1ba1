"""GRF against zuko's structured MAF and normflows' residual flow, on the ecoli70 and arth150 DAGs.

Same depth, batch 1024, float32, 2 threads. zuko is matched two ways (``--match``): ``weights``, the
same effective weights (unmasked entries, not numel()), and ``default``, zuko's default hidden sizes.
Prints one table; ratios are measured in the same run (interleaved medians). ``--json`` writes a list
of rows, one per network and matching, with the keys of the table and ``network``, ``match``,
``ratio_logdet_overhead``, ``ratio_log_prob_vs_zuko``, ``ratio_sample_vs_zuko``,
``speedup_vs_normflows``. Run: `make bench` or
`python benchmarks/flows.py [--repeats N] [--match weights,default] [--json out.json]`.
"""

from __future__ import annotations

import argparse
import json
import warnings

import torch

from _timing import interleaved, timeit
from sirenvae.flows import GRF
from sirenvae.networks import load_network

warnings.filterwarnings("ignore")


def zuko_effective(flow) -> int:
    import zuko

    return sum(int(m.mask.sum()) for m in flow.modules() if isinstance(m, zuko.nn.MaskedLinear))


def make_zuko(A: torch.Tensor, blocks: int, target: int | None):
    """zuko's MAF on the same DAG with ``target`` effective weights, or its default hidden sizes."""
    import zuko

    D = A.shape[0]
    Ad = A | torch.eye(D, dtype=torch.bool)
    if target is None:
        flow = zuko.flows.MAF(D, 0, transforms=blocks, adjacency=Ad)
        return flow, zuko_effective(flow), "default"
    best = None
    for h in range(8, 20 * D, 4):
        flow = zuko.flows.MAF(D, 0, transforms=blocks, adjacency=Ad, hidden_features=(h, h))
        eff = zuko_effective(flow)
        if best is None or abs(eff - target) < abs(best[1] - target):
            best = (flow, eff, h)
        if eff > target:
            break
    return best


def make_normflows(D: int, blocks: int, target: int):
    import normflows as nf

    # per block: D*h + h*h + h*D weights
    h = int((-2 * D + (4 * D * D + 4 * target / blocks) ** 0.5) / 2)
    flows = [
        nf.flows.Residual(nf.nets.LipschitzMLP([D, h, h, D], init_zeros=False), reduce_memory=True)
        for _ in range(blocks)
    ]
    model = nf.NormalizingFlow(nf.distributions.DiagGaussian(D, trainable=False), flows)
    return model, blocks * (2 * D * h + h * h), h


def bench_network(
    name: str, blocks: int, hidden_per_set: int, batch: int, repeats: int, matches: list[str]
) -> list[dict]:
    """One row per way of matching zuko; GRF and every zuko variant are timed interleaved."""
    net = load_network(name)
    A = net.graph.adjacency()
    D = A.shape[0]
    torch.manual_seed(0)
    grf = GRF(A, blocks=blocks, hidden_per_set=hidden_per_set, hidden_layers=2, atol=1e-5).eval()
    eff = grf.transform.effective_weights
    x = net.sample(batch, seed=0).float()
    x = (x - x.mean(0)) / x.std(0)
    row: dict = {"network": name, "D": D, "blocks": blocks, "grf_effective": eff}
    zuko_flows: dict = {}
    try:
        for m in matches:
            zflow, zeff, zh = make_zuko(A, blocks, eff if m == "weights" else None)
            zuko_flows[m] = zflow.eval()
            row.update({f"zuko_effective_{m}": zeff, f"zuko_hidden_{m}": zh})
    except ImportError:
        pass
    with torch.no_grad():
        dist = grf()  # prepared once, as zuko's zflow() below
        t = dist.transform
        fns = {
            "grf_forward_only_ms": lambda: t(x),
            "grf_forward_ladj_ms": lambda: t.call_and_ladj(x),
            "grf_log_prob_ms": lambda: dist.log_prob(x),
        }
        sfns = {"grf_sample_ms": lambda: dist.sample((batch,))}
        for m, zflow in zuko_flows.items():
            zd = zflow()
            fns[f"zuko_log_prob_ms_{m}"] = lambda zd=zd: zd.log_prob(x)
            sfns[f"zuko_sample_ms_{m}"] = lambda zd=zd: zd.sample((batch,))
        row.update(interleaved(fns, repeats))
        row.update(interleaved(sfns, max(5, repeats // 2)))  # sampling varies more than log_prob
        eps = torch.randn(batch, D)
        res = t.solve(eps, atol=1e-5)
        row["grf_inverse_iterations"] = list(res.iterations)
        row["grf_inverse_residual"] = res.residual

    grf.train()

    def grf_step():
        grf.zero_grad()
        (-grf().log_prob(x).mean()).backward()

    steps = {"grf_train_step_ms": grf_step}
    for m, zflow in zuko_flows.items():
        zflow.train()

        def zuko_step(zflow=zflow):
            zflow.zero_grad()
            (-zflow().log_prob(x).mean()).backward()

        steps[f"zuko_train_step_ms_{m}"] = zuko_step
    row.update(interleaved(steps, max(3, repeats // 2)))

    try:
        model, neff, nh = make_normflows(D, blocks, eff)
        model.eval()
        row.update(normflows_effective=neff, normflows_hidden=nh)
        row["normflows_log_prob_ms"] = timeit(lambda: model.log_prob(x).detach(), max(3, repeats // 4))
        with torch.no_grad():
            row["normflows_sample_ms"] = timeit(lambda: model.sample(batch), 3, warmup=1)
    except ImportError:
        row["normflows_log_prob_ms"] = None
    rows = []
    for m in matches:
        r = {k: v for k, v in row.items() if not k.endswith(tuple(f"_{n}" for n in matches))}
        r["match"] = m
        for key in (
            "zuko_effective",
            "zuko_hidden",
            "zuko_log_prob_ms",
            "zuko_sample_ms",
            "zuko_train_step_ms",
        ):
            r[key] = row.get(f"{key}_{m}")
        rows.append(r)
    return rows


def ratio(a, b):
    return None if a is None or b is None else a / b


def fmt(v, digits=2):
    return "-" if v is None else f"{v:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--networks", default="ecoli70,arth150")
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--hidden-per-set", type=int, default=4)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--match", default="weights", help="weights (same effective weights), default")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    matches = args.match.split(",")
    if not set(matches) <= {"weights", "default"}:
        raise SystemExit(f"--match takes weights and/or default, got {args.match!r}")
    rows = [
        r
        for n in args.networks.split(",")
        for r in bench_network(n, args.blocks, args.hidden_per_set, args.batch, args.repeats, matches)
    ]
    print(
        f"\nbatch {args.batch}, float32, {args.threads} threads, {args.blocks} blocks/transforms, "
        f"torch {torch.__version__}; times in ms (median)\n"
    )
    head = (
        "| network | zuko | D | eff. weights GRF / zuko / normflows | GRF fwd-only | GRF fwd+logdet"
        " | GRF log_prob"
        " | zuko log_prob"
        " | normflows log_prob | GRF sample | zuko sample | normflows sample | GRF train step"
        " | zuko train step |"
    )
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in rows:
        print(
            f"| {r['network']} | {r['match']} | {r['D']} | "
            f"{r['grf_effective']} / {r.get('zuko_effective', '-')} / "
            f"{r.get('normflows_effective', '-')} | {fmt(r['grf_forward_only_ms'])} | "
            f"{fmt(r['grf_forward_ladj_ms'])} | "
            f"{fmt(r['grf_log_prob_ms'])} | {fmt(r.get('zuko_log_prob_ms'))} | "
            f"{fmt(r.get('normflows_log_prob_ms'))} | {fmt(r['grf_sample_ms'])} | "
            f"{fmt(r.get('zuko_sample_ms'))} | {fmt(r.get('normflows_sample_ms'))} | "
            f"{fmt(r['grf_train_step_ms'])} | {fmt(r.get('zuko_train_step_ms'))} |"
        )
    print("\nratios (target in brackets)\n")
    print(
        "| network | zuko | GRF fwd+logdet / fwd-only [<= 1.25] | GRF / zuko log_prob [<= 0.8] | "
        "GRF / zuko sample [<= 0.4] | normflows / GRF log_prob [>= 20] | GRF inverse iterations |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        r["ratio_logdet_overhead"] = ratio(r["grf_forward_ladj_ms"], r["grf_forward_only_ms"])
        r["ratio_log_prob_vs_zuko"] = ratio(r["grf_log_prob_ms"], r.get("zuko_log_prob_ms"))
        r["ratio_sample_vs_zuko"] = ratio(r["grf_sample_ms"], r.get("zuko_sample_ms"))
        r["speedup_vs_normflows"] = ratio(r.get("normflows_log_prob_ms"), r["grf_log_prob_ms"])
        print(
            f"| {r['network']} | {r['match']} | {fmt(r['ratio_logdet_overhead'])} | "
            f"{fmt(r['ratio_log_prob_vs_zuko'])} | "
            f"{fmt(r['ratio_sample_vs_zuko'])} | {fmt(r['speedup_vs_normflows'], 1)} | "
            f"{r['grf_inverse_iterations']} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
