"""``sirenvae graph``: draw a Bayesian network (latent nodes shaded) beside its faithful inverse.

Its result is the picture; the line saying what it drew goes to standard error.
"""

from __future__ import annotations

from pathlib import Path

import typer

from sirenvae.cli.common import UsageError, app, check_output, note, notice_line, user_errors

__all__ = ["graph"]


@app.command("graph")
def graph(
    network: str = typer.Option(None, "--network", help="A shipped network (see `sirenvae networks`)."),
    graph_file: Path = typer.Option(
        None, "--graph", help="Your graph: .json, .csv (parent,child), .dot, .bif."
    ),
    run: Path = typer.Option(None, "--run", help="A run directory: its graph and latent nodes."),
    latent: str = typer.Option(
        None,
        "--latent",
        help="Latent nodes: a,b,c or a rule (leaves-observed, roots-and-leaves-observed). Default for "
        "--network: its rule; for --graph: the nodes without a column in --data, else none, and the "
        "graph is drawn alone.",
    ),
    data: Path = typer.Option(None, "--data", help="A CSV whose header names the observed nodes."),
    output: Path = typer.Option(..., "-o", "--output", help="Picture to write: .png, .svg or .pdf."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing picture."),
) -> None:
    """Draw a network (latents shaded) beside its faithful inverse, into a .png, .svg or .pdf.

    The faithful inverse (NaMI) is the graph that structures the encoder q(z | x).
    """
    from sirenvae.data import default_latent_rule, latent_split
    from sirenvae.graph_io import declared_latent, read_graph
    from sirenvae.networks import load_network
    from sirenvae.plots import FORMATS, graph_figure, save

    with user_errors():
        if sum(x is not None for x in (network, graph_file, run)) != 1:
            raise UsageError("give exactly one of --network NAME, --graph FILE or --run RUN")
        if data is not None and (graph_file is None or latent is not None):
            raise UsageError("--data names the observed nodes of --graph FILE; it replaces --latent")
        if run is not None and latent is not None:
            raise UsageError("--run draws the run's own latent nodes; --latent is for --network or --graph")
        if output.is_dir():
            raise UsageError(f"-o {output} is a directory; give a file name such as {output / 'graph.png'}")
        if output.suffix.lower() not in FORMATS:
            raise UsageError(f"-o {output}: the picture's name must end in {', '.join(FORMATS)}")
        check_output(output, force=force)
        summed: tuple[str, ...] = ()
        if run is not None:
            from sirenvae.pipeline import load_model

            fitted = load_model(run)[0]
            split, summed = fitted.columns, fitted.summed  # every hidden node, the summed ones apart
            bn = split.graph
        else:
            bn = load_network(network).graph if network is not None else read_graph(graph_file)
            rule = latent if latent is not None else default_latent_rule(network) if network else None
            if rule is None and graph_file is not None:
                rule = declared_latent(graph_file)  # the file's "latent" act as --latent, as in fit
            if data is not None:
                rule = _without_a_column(bn, data)
            split = latent_split(bn, rule) if rule is not None else None
        save(graph_figure(split if split is not None else bn, summed), output)
    if split is not None and run is None:
        from sirenvae.data import unseen_latent_notice

        for notice in unseen_latent_notice(split):
            note(notice_line(notice))
    if split is None:
        note(f"drew {len(bn)} nodes to {output} (name the latent nodes with --latent to see the inverse)")
    else:
        shown = ", ".join(split.latent[:LATENT_SHOWN]) + (", ..." if len(split.latent) > LATENT_SHOWN else "")
        apart = f"; {', '.join(summed)} summed out exactly, no encoder" if summed else ""
        inverse = " and the faithful inverse" if set(split.latent) - set(summed) else ""
        note(f"drew {len(bn)} nodes ({len(split.latent)} latent: {shown}{apart}){inverse} to {output}")


#: At most this many latent nodes are named in the summary line.
LATENT_SHOWN = 30


def _without_a_column(bn, data: Path) -> list[str]:
    """The graph's nodes that the CSV's header does not name (as ``fit`` infers the latent ones)."""
    import csv

    if not data.is_file():
        raise UsageError(f"--data {data}: no such file")
    with open(data, newline="", encoding="utf-8-sig") as f:
        header = [c.strip() for c in next(csv.reader(f), [])]
    named = set(header) & set(bn.nodes)
    if not named:
        raise UsageError(f"--data {data}: no column of its header names a node of the graph")
    return [v for v in bn.nodes if v not in named]
