"""``sirenvae graph``: draw a Bayesian network (latent nodes shaded) beside its faithful inverse."""

from __future__ import annotations

from pathlib import Path

import typer

from sirenvae.cli.common import UsageError, app, check_output, console, user_errors

__all__ = ["graph"]


@app.command("graph")
def graph(
    network: str = typer.Option(None, "--network", help="A shipped network (see `sirenvae networks`)."),
    graph_file: Path = typer.Option(
        None, "--graph", help="Your graph: .json, .csv (parent,child), .dot, .bif."
    ),
    latent: str = typer.Option(
        None,
        "--latent",
        help="Latent nodes: a,b,c or a rule (leaves-observed, roots-and-leaves-observed). Default for "
        "--network: its rule; for --graph: none, and the graph is drawn alone.",
    ),
    output: Path = typer.Option(..., "-o", "--output", help="Picture to write: .png, .svg or .pdf."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing picture."),
) -> None:
    """Draw a network (latents shaded) beside its faithful inverse, into a .png, .svg or .pdf.

    The faithful inverse (NaMI) is the graph that structures the encoder q(z | x).
    """
    from sirenvae.data import default_latent_rule, latent_split
    from sirenvae.graph_io import read_graph
    from sirenvae.networks import load_network
    from sirenvae.plots import FORMATS, graph_figure, save

    with user_errors():
        if (network is None) == (graph_file is None):
            raise UsageError("give exactly one of --network NAME or --graph FILE")
        if output.is_dir():
            raise UsageError(f"-o {output} is a directory; give a file name such as {output / 'graph.png'}")
        if output.suffix.lower() not in FORMATS:
            raise UsageError(f"-o {output}: the picture's name must end in {', '.join(FORMATS)}")
        check_output(output, force=force)
        bn = load_network(network).graph if network is not None else read_graph(graph_file)
        rule = latent if latent is not None else default_latent_rule(network) if network else None
        split = latent_split(bn, rule) if rule is not None else None
        save(graph_figure(split if split is not None else bn), output)
    if split is None:
        console.print(
            f"drew {len(bn)} nodes to {output} (name the latent nodes with --latent to see the inverse)"
        )
    else:
        console.print(
            f"drew {len(bn)} nodes ({len(split.latent)} latent: {', '.join(split.latent)}) and the faithful "
            f"inverse to {output}"
        )
