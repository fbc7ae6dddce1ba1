"""Converts pgmpy's bundled discrete networks (bnlearn's BIF files) to the package's JSON (run by hand).

    python benchmarks/convert_bif.py alarm child

Each node keeps its states in the BIF's order and its CPT as rows, one per configuration of its
parents in row-major order of the ``parents`` list (the last parent varies fastest), each row
``P(node = state | parents)``. Needs the ``pgmpy`` extra.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import numpy as np

CITATIONS = {
    "alarm": "I. A. Beinlich, H. J. Suermondt, R. M. Chavez and G. F. Cooper (1989). The ALARM Monitoring "
    "System: A Case Study with Two Probabilistic Inference Techniques for Belief Networks. Proceedings of "
    "the 2nd European Conference on Artificial Intelligence in Medicine, 247-256. (Discrete BN as "
    "distributed in the bnlearn Bayesian network repository, M. Scutari.)",
    "child": "D. J. Spiegelhalter, R. G. Cowell (1992). Learning in probabilistic expert systems. In "
    "Bayesian Statistics 4, 447-466. Oxford University Press. (Discrete BN as distributed in the bnlearn "
    "Bayesian network repository, M. Scutari.)",
}
OUT = Path(__file__).resolve().parents[1] / "src" / "sirenvae" / "networks"


def convert(name: str) -> dict:
    import pgmpy
    from pgmpy.utils import get_example_model

    model = get_example_model(name)
    order = list(__import__("networkx").topological_sort(model))
    nodes = []
    for v in order:
        cpd = model.get_cpds(v)
        parents = list(cpd.variables[1:])
        states = [str(s) for s in cpd.state_names[v]]
        values = np.asarray(cpd.values)  # (card_v, card_p1, card_p2, ...)
        cards = [len(cpd.state_names[p]) for p in parents]
        rows = []
        for config in itertools.product(*(range(c) for c in cards)):
            col = values[(slice(None), *config)]
            rows.append([round(float(p), 6) for p in col / col.sum()])
        nodes.append({"name": v, "parents": parents, "states": states, "cpt": rows})
    return {
        "name": name,
        "kind": "discrete",
        "source": "bnlearn Bayesian network repository (Scutari), via PyPI package "
        f"pgmpy=={pgmpy.__version__} (pgmpy.utils.get_example_model({name!r}), its bundled BIF file); CPT "
        "entries rounded to 6 decimals (the loader renormalises each row).",
        "citation": CITATIONS[name],
        "nodes": nodes,
    }


if __name__ == "__main__":
    for name in sys.argv[1:] or ["alarm", "child"]:
        doc = convert(name)
        (OUT / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {OUT / f'{name}.json'}: {len(doc['nodes'])} nodes")
