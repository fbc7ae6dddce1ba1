"""How often NaMI's inverse is not minimal, and how many edges `prune=True` saves.

Random DAGs as in the tests (2-9 nodes, edge probability 1/2, random latent sets) plus the shipped
networks under their default latent rules. Run: `python benchmarks/inversion.py [--graphs 1000]`.
"""

from __future__ import annotations

import argparse
import random
import time

from sirenvae.graph import BayesianNetwork
from sirenvae.inversion import faithful_inverse, is_faithful, redundant_edges
from sirenvae.networks import load_network


def random_case(rng: random.Random, max_nodes: int):
    n = rng.randint(2, max_nodes)
    names = [f"v{i}" for i in range(n)]
    parents = {names[i]: [names[j] for j in range(i) if rng.random() < 0.5] for i in range(n)}
    latent = rng.sample(names, rng.randint(1, n - 1))
    return BayesianNetwork(parents), latent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--graphs", type=int, default=1000)
    p.add_argument("--max-nodes", type=int, default=9)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rng = random.Random(args.seed)
    non_minimal = saved = total = 0
    t = time.perf_counter()
    for _ in range(args.graphs):
        bn, latent = random_case(rng, args.max_nodes)
        H = faithful_inverse(bn, latent)
        P = faithful_inverse(bn, latent, prune=True)
        assert is_faithful(bn, P, latent) and not redundant_edges(bn, P, latent)
        non_minimal += bool(redundant_edges(bn, H, latent))
        saved += len(H.edges) - len(P.edges)
        total += len(H.edges)
    print(
        f"random DAGs: {args.graphs}, NaMI inverse not minimal in {non_minimal} "
        f"({100 * non_minimal / args.graphs:.1f}%), prune saved {saved} of {total} edges "
        f"({100 * saved / max(total, 1):.2f}%), {time.perf_counter() - t:.1f} s"
    )
    rules = {
        "ecoli70": lambda g: [v for v in g.nodes if g.children(v)],
        "arth150": lambda g: [v for v in g.nodes if g.children(v)],
        "magic-irri": lambda g: [v for v in g.nodes if g.children(v)],
        "magic-niab": lambda g: [v for v in g.nodes if g.children(v) and g.parents(v)],
        "arithmetic-circuit": lambda g: [v for v in g.nodes if v.startswith("z")],
    }
    for name, rule in rules.items():
        g = load_network(name).graph
        latent = rule(g)
        H = faithful_inverse(g, latent)
        P = faithful_inverse(g, latent, prune=True)
        print(
            f"{name}: {len(latent)} latents, inverse {len(H.edges)} edges, pruned {len(P.edges)}, "
            f"faithful {is_faithful(g, H, latent)}"
        )


if __name__ == "__main__":
    main()
