"""Decoder passes that settle the holes: as many as the longest chain of holes in the batch (today)
against the longest chain of observed nodes in the graph (before), on the same model, rows and noise.

    python benchmarks/hole_sweeps.py [--network alarm] [--rows 300] [--missing 0.1] [--k 100]

A fitted-shape model of the network (``true``, the ``linear`` candidate's stack; untrained weights
cost the same) scores held-out rows with a share of cells missing completely at random by the IWAE
bound (``log_weights`` with K proposals per row, the path of ``evaluate`` and of every training step
on holey rows). Both arms draw the same values (tested in ``tests/test_missing_model.py``); the
ratio of their interleaved medians is what we report, with the number of passes of each. One thread.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from _timing import interleaved  # noqa: E402
from sirenvae.data import default_latent_rule, latent_split, sample_splits  # noqa: E402
from sirenvae.models import ModelConfig, build_model  # noqa: E402
from sirenvae.models import vae as vae_module  # noqa: E402
from sirenvae.networks import DiscreteNetwork, load_network  # noqa: E402
from sirenvae.objectives import log_weights  # noqa: E402
from sirenvae.variables import model_types  # noqa: E402


def _types(net, split) -> dict[str, str]:
    """A discrete network's observed families (its hidden nodes stay continuous latents here)."""
    if not isinstance(net, DiscreteNetwork):
        return {}
    variables = net.variables(net.graph.nodes)
    return model_types({v: variables[v] for v in split.observed})


#: The command line: each option with its default (and so its type).
OPTIONS = {"--network": "alarm", "--rows": 300, "--missing": 0.1, "--k": 100, "--repeats": 9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for flag, default in OPTIONS.items():
        parser.add_argument(flag, type=type(default), default=default)
    args = parser.parse_args()
    torch.set_num_threads(1)
    net = load_network(args.network)
    split = latent_split(net.graph, default_latent_rule(args.network))
    x = sample_splits(net, split, train_size=args.rows, test_size=0, seed=0).train
    holes = torch.rand(x.shape, generator=torch.Generator().manual_seed(1)) < args.missing
    holes[holes.all(1), 0] = False  # every row keeps a cell
    holey = x.masked_fill(holes, float("nan"))
    config = ModelConfig(
        conditioning="parents",
        affine=True,
        prior_blocks=0,
        encoder_blocks=0,
        decoder_mean="linear",
        mask_inputs=True,
        types=_types(net, split),
    )
    torch.manual_seed(0)
    model = build_model(split, config)
    model.set_standardization(x)
    model.eval()
    links = model._hole_links
    today = vae_module._hole_sweeps
    graph_passes = today(torch.ones(1, len(model.observed), dtype=torch.bool), links)
    batch_passes = today(holes, links)

    def run(fixed: int | None):
        def f():
            if fixed is not None:
                vae_module._hole_sweeps = lambda h, l: fixed  # noqa: E741 - the graph's count, as before
            try:
                torch.manual_seed(2)
                with torch.no_grad():
                    log_weights(model, holey, args.k)
            finally:
                vae_module._hole_sweeps = today

        return f

    times = interleaved({"batch": run(None), "graph": run(graph_passes)}, args.repeats)
    print(
        json.dumps(
            {
                "network": args.network,
                "rows": args.rows,
                "missing": args.missing,
                "k": args.k,
                "passes_batch": batch_passes,
                "passes_graph": graph_passes,
                "ms_batch": round(times["batch"], 1),
                "ms_graph": round(times["graph"], 1),
                "speedup": round(times["graph"] / times["batch"], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
