"""Pictures: a Bayesian network beside its faithful inverse, and a run's training curve.

Figures are drawn on :class:`matplotlib.figure.Figure` objects (no pyplot, no global backend
switch) and written atomically; the file format follows the suffix (``.png``, ``.svg``, ``.pdf``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sirenvae.files import atomic_write
from sirenvae.graph import BayesianNetwork, LatentSplit
from sirenvae.inversion import faithful_inverse

__all__ = ["FORMATS", "graph_figure", "layered_layout", "save", "training_figure", "write_history"]

#: The file formats a figure can be written in.
FORMATS = (".png", ".svg", ".pdf")

_LATENT, _OBSERVED, _EDGE = "#b9c4d0", "white", "#444444"
#: Latent dots in an overview, darker: at that size the pale shade is hard to tell from white.
_LATENT_DOT = "#5b7fa8"
_SUMMED, _SUMMED_DOT = "#f0d9a8", "#c8962e"  # hidden, discrete, summed out exactly (no encoder)
#: The fill of each kind of hidden node, in a labelled drawing and in an overview.
_PALETTE = {"latent": _LATENT, "summed out": _SUMMED}
_DOT_PALETTE = {"latent": _LATENT_DOT, "summed out": _SUMMED_DOT}


def save(fig, path: str | Path) -> None:
    """Writes a figure atomically in the format of the path's suffix (one of :data:`FORMATS`)."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"cannot draw into {path.name}: the file must end in {', '.join(FORMATS)}")
    fmt = path.suffix.lower().lstrip(".")
    atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight"))


# ---------------------------------------------------------------------- graphs
def layered_layout(graph: BayesianNetwork, first: Sequence[str] = ()) -> dict[str, tuple[float, float]]:
    """Node positions in layers: a node sits one layer below its lowest parent (``first``: nodes
    forced into the top layer); within a layer, nodes are ordered by the mean position of their
    parents and children (a few barycentre sweeps), which keeps crossings down.
    """
    layer: dict[str, int] = {}
    forced = set(first)
    for v in graph.nodes:  # topological order
        layer[v] = 0 if v in forced else 1 + max((layer[p] for p in graph.parents(v)), default=-1)
    rows: dict[int, list[str]] = {}
    for v in graph.nodes:
        rows.setdefault(layer[v], []).append(v)
    order = {v: float(i) for row in rows.values() for i, v in enumerate(row)}
    neighbours = {v: [*graph.parents(v), *graph.children(v)] for v in graph.nodes}
    for sweep in range(6):
        levels = sorted(rows) if sweep % 2 == 0 else sorted(rows, reverse=True)
        for k in levels:
            row = rows[k]

            def centre(v: str, row=row) -> float:
                nb = [order[u] / max(len(rows[layer[u]]) - 1, 1) for u in neighbours[v]]
                return float(np.mean(nb)) if nb else order[v] / max(len(row) - 1, 1)

            row.sort(key=centre)
            for i, v in enumerate(row):
                order[v] = float(i)
    width = max(len(row) for row in rows.values())
    pos = {}
    for k, row in rows.items():
        offset = (width - len(row)) / 2
        for i, v in enumerate(row):
            pos[v] = (offset + i, -float(k))
    return pos


def _bend(pos: dict, a: str, b: str) -> float:
    """The curvature (matplotlib's ``arc3`` rad) that keeps the edge ``a -> b`` furthest from the
    other nodes: straight when it passes clear of them, else an arc to the freer side.
    """
    p0, p1 = np.asarray(pos[a]), np.asarray(pos[b])
    others = np.asarray([q for v, q in pos.items() if v not in (a, b)] or [(1e9, 1e9)])
    d = p1 - p0
    t = np.linspace(0.1, 0.9, 17)[:, None]
    best, clearance = 0.0, -1.0
    for rad in (0.0, 0.2, -0.2, 0.35, -0.35, 0.5, -0.5):
        control = (p0 + p1) / 2 + rad * np.array([d[1], -d[0]])
        curve = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * control + t**2 * p1
        gap = np.min(np.linalg.norm(curve[:, None, :] - others[None], axis=-1))
        if gap > clearance + 0.05:
            best, clearance = rad, gap
        if clearance > 0.4:
            break
    return best


def _draw(ax, graph: BayesianNetwork, fill: dict[str, str], pos: dict, title: str, style: dict) -> None:
    radius = style["diameter"] / 2  # points, where the arrows end
    alpha = min(1.0, max(0.25, 60 / max(len(graph.edges), 1)))  # a dense graph stays legible
    for parent, child in graph.edges:
        bend = _bend(pos, parent, child)
        ax.annotate(
            "",
            xy=pos[child],
            xytext=pos[parent],
            arrowprops={
                "arrowstyle": "-|>",
                "color": _EDGE,
                "alpha": alpha,
                "lw": 0.8,
                "shrinkA": radius,
                "shrinkB": radius + 1,
                "mutation_scale": 9,
                "connectionstyle": f"arc3,rad={bend}",
            },
            zorder=1,
        )
    for v, (x, y) in pos.items():
        ax.scatter(
            [x],
            [y],
            s=style["diameter"] ** 2,
            facecolor=fill.get(v, _OBSERVED),
            edgecolor="black",
            linewidth=0.9,
            zorder=2,
        )
        ax.text(x, y, v, ha="center", va="center", fontsize=style["fontsize"], zorder=3)
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - 0.6, max(xs) + 0.6)
    ax.set_ylim(min(ys) - 0.6, max(ys) + 0.6)
    ax.set_title(title, fontsize=11)
    ax.axis("off")


def _wrapped(pos: dict[str, tuple[float, float]], width: int) -> dict[str, tuple[float, float]]:
    """The layered positions with every layer wider than ``width`` folded into several rows."""
    layers: dict[float, list[str]] = {}
    for v in sorted(pos, key=lambda v: pos[v][0]):
        layers.setdefault(pos[v][1], []).append(v)
    out, y = {}, 0.0
    for key in sorted(layers, reverse=True):
        row = layers[key]
        for start in range(0, len(row), width):
            chunk = row[start : start + width]
            for i, v in enumerate(chunk):
                out[v] = ((width - len(chunk)) / 2 + i, y)
            y -= 1.0
        y -= 0.5  # a gap between layers
    return out


def _widest(pos: dict[str, tuple[float, float]]) -> int:
    """The most positions in one layer."""
    return max(Counter(y for _, y in pos.values()).values())


def _overview(ax, graph: BayesianNetwork, fill: dict[str, str], pos: dict, title: str) -> None:
    """A large graph without labels: dots (latent shaded) and straight, faint edges."""
    from matplotlib.collections import LineCollection

    segments = [(pos[p], pos[c]) for p, c in graph.edges]
    alpha = min(0.6, max(0.05, 300 / max(len(segments), 1)))
    ax.add_collection(LineCollection(segments, colors=_EDGE, linewidths=0.4, alpha=alpha, zorder=1))
    xy = np.asarray([pos[v] for v in graph.nodes])
    colours = [fill.get(v, _OBSERVED) for v in graph.nodes]
    ax.scatter(xy[:, 0], xy[:, 1], s=14, facecolor=colours, edgecolor="black", linewidth=0.4, zorder=2)
    ax.set_xlim(xy[:, 0].min() - 1, xy[:, 0].max() + 1)
    ax.set_ylim(xy[:, 1].min() - 1, xy[:, 1].max() + 1)
    ax.set_title(f"{title}; labels omitted above {LABELLED_NODES} nodes", fontsize=11)
    ax.axis("off")


#: Graphs with more nodes are drawn as an overview: no labels, layers folded into rows.
LABELLED_NODES = 150


def graph_figure(graph: BayesianNetwork | LatentSplit, summed: Sequence[str] = ()):
    r"""The network (latent nodes shaded, observed plain) beside its faithful inverse (NaMI), which
    structures the encoder :math:`q(z \mid x)`; a network without a latent set is drawn alone.
    ``summed``: hidden nodes a model sums out exactly (drawn in their own colour; the encoder
    infers the other latents only, so the inverse is that of the rest, and there is none when
    every hidden node is summed). Above :data:`LABELLED_NODES` nodes, an overview of bounded size.
    """
    from matplotlib.figure import Figure

    split = graph if isinstance(graph, LatentSplit) else None
    bn = split.graph if split is not None else graph
    summed = set(summed)
    latent = set(split.latent) - summed if split is not None else set()
    pos = layered_layout(bn)
    panels = [(bn, pos, f"Bayesian network ({len(bn)} nodes, {len(bn.edges)} edges)")]
    if latent:
        inner = LatentSplit(bn, [v for v in split.latent if v in latent])
        inv = faithful_inverse(inner)
        ipos = layered_layout(inv, first=inner.observed)
        if len(bn) <= LABELLED_NODES and _widest(ipos) > (width := max(8, _widest(pos))):
            ipos = _wrapped(ipos, width)  # the observed layer, folded to the network's width
        panels.append((inv, ipos, f"faithful inverse for q(z | x) ({len(inv.edges)} edges)"))
    kinds = [("latent", latent), ("summed out", summed)] if split is not None else []
    if len(bn) > LABELLED_NODES:
        wrap = max(20, int(2 * np.sqrt(len(bn))))
        folded = [_wrapped(p, wrap) for _, p, _ in panels]
        rows = max(-min(y for _, y in q.values()) for q in folded) + 1
        height = min(max(6.0, 0.3 * rows), 14.0)  # about a third of an inch per row
        fig = Figure(figsize=(8.0 * len(panels), height), layout="constrained")
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        fill = _fill(kinds, _DOT_PALETTE)
        for ax, (g, _, title), q in zip(axes, panels, folded, strict=True):
            _overview(ax, g, fill, q, title)
        _legend(fig, kinds, _DOT_PALETTE)
        return fig
    longest = max(len(v) for v in bn.nodes)
    fontsize = 9.0 if longest <= 8 else max(5.5, 72 / longest)
    diameter = max(22.0, 0.56 * fontsize * longest + 8)  # points: the longest label fits inside
    unit = max(0.7, 1.5 * diameter / 72)  # inches between neighbouring positions
    cells = [
        (max(p[0] for p in q.values()) + 1.2, -min(p[1] for p in q.values()) + 1.2) for _, q, _ in panels
    ]
    widths = [max(3.2, unit * w) for w, _ in cells]
    height = max(2.5, max(unit * h for _, h in cells)) + 0.9
    fig = Figure(figsize=(sum(widths) + 0.4, height), layout="constrained")
    axes = fig.subplots(1, len(panels), width_ratios=widths, squeeze=False)[0]
    style = {"fontsize": fontsize, "diameter": diameter}
    fill = _fill(kinds, _PALETTE)
    for ax, (g, p, title) in zip(axes, panels, strict=True):
        _draw(ax, g, fill, p, title, style)
    _legend(fig, kinds, _PALETTE)
    return fig


def _fill(kinds: list[tuple[str, set]], palette: dict[str, str]) -> dict[str, str]:
    """Each hidden node's colour (the observed ones are drawn plain)."""
    return {v: palette[kind] for kind, members in kinds for v in members}


def _legend(fig, kinds: list[tuple[str, set]], palette: dict[str, str]) -> None:
    """A legend of the kinds of hidden node present and the observed ones (none without a latent set)."""
    from matplotlib.lines import Line2D

    if not kinds:
        return
    shown = [(palette[k], k) for k, members in kinds if members] + [(_OBSERVED, "observed")]
    handles = [
        Line2D([], [], marker="o", ls="", markersize=10, markerfacecolor=c, markeredgecolor="black", label=t)
        for c, t in shown
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)


# ---------------------------------------------------------------------- training
def training_figure(history, *, warmup_epochs: float = 0.0, title: str = "", train_label: str = ""):
    """Training and validation loss per epoch, the KL warm-up shaded and the best epoch marked;
    ``train_label`` names the training loss where it is not the (warmed-up) -ELBO.
    """
    from matplotlib.figure import Figure

    train = np.asarray(history.train_loss, dtype=float)
    valid = np.asarray(history.valid_loss, dtype=float)
    epochs = np.arange(len(train))
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.subplots()
    if warmup_epochs > 0:
        ax.axvspan(-0.5, min(warmup_epochs, len(train)) - 0.5, color="#f3e3b5", label="KL warm-up")
    label = train_label or "training loss (-ELBO, β-weighted in warm-up)"
    ax.plot(epochs, train, color="#1f77b4", lw=1.3, label=label)
    if len(valid):
        ax.plot(np.arange(len(valid)), valid, color="#d62728", lw=1.3, label="validation -ELBO")
    best = history.best_epoch
    if 0 <= best < len(train):
        y = valid[best] if best < len(valid) else train[best]
        ax.axvline(best, color="black", ls="--", lw=0.8)
        ax.plot([best], [y], "o", color="black", ms=5, label=f"best epoch {best}: {y:.3f}")
    values = np.concatenate([train, valid])
    values = values[np.isfinite(values)]
    if values.size > 4:
        lo, hi = values.min(), np.percentile(values, 95)
        if values.max() > hi + 2 * (hi - lo):  # a few huge early losses would flatten the curve
            pad = 0.1 * (hi - lo) or 1.0
            ax.set_ylim(lo - pad, hi + pad)
            ax.text(0.99, 0.98, "y axis clipped", transform=ax.transAxes, ha="right", va="top", fontsize=8)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (nats per row)")
    ax.set_title(title or f"training: {history.stopped or 'unfinished'}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right" if values.size <= 4 else "best")
    return fig


def write_history(
    directory: str | Path, history, *, warmup_epochs: float = 0.0, title: str = "", train_label: str = ""
) -> None:
    """Writes ``history.csv`` (epoch, train_loss, valid_loss) and ``training.png`` into a run directory."""
    import pandas as pd

    directory = Path(directory)
    n = len(history.train_loss)
    valid = list(history.valid_loss) + [float("nan")] * (n - len(history.valid_loss))
    frame = pd.DataFrame({"epoch": range(n), "train_loss": history.train_loss, "valid_loss": valid[:n]})
    atomic_write(directory / "history.csv", lambda tmp: frame.to_csv(tmp, index=False))
    figure = training_figure(history, warmup_epochs=warmup_epochs, title=title, train_label=train_label)
    save(figure, directory / "training.png")
