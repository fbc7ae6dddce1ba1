r"""The storage layout of masked layers, and the one rule that picks it.

- ``"dense"``: a layer stores its ``(out, in)`` weight and mask whole; the fastest on small graphs.
- ``"block-sparse"``: one small dense block per pair of unit groups the graph connects, so memory
  and time grow with the edges, not with :math:`D^2`.
- ``"auto"``: block-sparse for large sparse graphs (:func:`choose_layout`), dense otherwise.

Both layouts compute the same function from the same parameters, and a checkpoint of either loads
into either (:class:`~sirenvae.layers.MaskedLinear`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

__all__ = ["LAYOUTS", "MAX_DENSITY", "SPARSE_MIN_UNITS", "Layout", "choose_layout"]

Layout = Literal["auto", "dense", "block-sparse"]
#: Every layout, ``auto`` first.
LAYOUTS: tuple[str, ...] = ("auto", "dense", "block-sparse")

#: Layers with at least this many hidden units go block-sparse under ``auto`` (measured: on par at
#: ecoli70, 184 units; 1.3x faster at arth150, 428 units, training included) ...
SPARSE_MIN_UNITS = 400
#: ... if the graph holds at most this fraction of its possible connections.
MAX_DENSITY = 0.1


def choose_layout(layout: str, *, connections: int, cells: int, units: int | Callable[[], int]) -> str:
    """``layout`` itself, or for ``"auto"`` the one rule: ``"block-sparse"`` iff the graph holds at most
    :data:`MAX_DENSITY` of its possible connections (``connections`` of ``cells``: the edges of an
    adjacency, the members of a decoder's parent sets) and the hidden layers have at least
    :data:`SPARSE_MIN_UNITS` units.

    ``units`` may be a function, called only when the density allows block-sparse layers (counting
    them can cost more than the test).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if layout != "auto":
        return layout
    if connections > MAX_DENSITY * cells:
        return "dense"
    count = units() if callable(units) else units
    return "block-sparse" if count >= SPARSE_MIN_UNITS else "dense"
