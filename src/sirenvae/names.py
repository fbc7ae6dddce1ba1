"""Names that look alike: the hints on a misspelt column or node, and short previews of long lists."""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["near_miss", "near_pairs", "preview", "typo_notices", "unknown_node"]

#: Runs of digits: names that differ in them alone are members of a numbered family.
_DIGITS = re.compile(r"\d+")
#: At most this many "named like a column" notices; the rest are counted.
MAX_TYPO_NOTICES = 5


def preview(names: Sequence, k: int = 8) -> str:
    """The first ``k`` names, then ``...`` if there are more."""
    names = [str(v) for v in names]
    return f"{', '.join(names[:k])}{' ...' if len(names) > k else ''}"


def near_miss(column, node: str, edits: int = 2) -> bool:
    """Equal up to case, whitespace and separators, or within ``edits`` edits (less than half the
    shorter name); the notice on latent nodes named like a column allows one (two flag ``blight``
    and ``height``).
    """
    a, b = _normal(column), _normal(node)
    if a == b or _bare(a) == _bare(b):  # ``y_1`` and ``y1``, ``leaf.area`` and ``leaf-area``
        return True
    return edit_distance(a, b) <= min(edits, (min(len(a), len(b)) - 1) // 2)


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance with adjacent transpositions counted as one edit."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[-1][-1]


def _normal(name) -> str:
    return "".join(str(name).split()).casefold()


def _bare(name: str) -> str:
    """``name`` without separators (``_``, ``-``, ``.``)."""
    return "".join(c for c in name if c not in "_-.")


def _deletions(name: str, k: int) -> set[str]:
    """The name and every string up to ``k`` characters shorter."""
    out, layer = {name}, {name}
    for _ in range(k):
        layer = {w[:i] + w[i + 1 :] for w in layer for i in range(len(w))}
        out |= layer
    return out


def near_pairs(left: Sequence[str], right: Sequence[str], edits: int) -> list[tuple[str, str]]:
    """The pairs ``(l, r)`` that :func:`near_miss` calls alike within ``edits`` edits, in the order of
    ``left`` then ``right``, but for members of a numbered family (names that differ in their numbers
    alone, ``g15`` and ``g615``). Candidates share a variant with up to ``edits`` deletions (every
    pair within ``edits`` edits does), so the cost grows with the names, not with their pairs.
    """
    index: dict[str, list[int]] = {}
    for j, r in enumerate(right):
        for key in _deletions(_normal(r), edits):
            index.setdefault(key, []).append(j)
    pairs = []
    for v in left:
        near = sorted({j for key in _deletions(_normal(v), edits) for j in index.get(key, ())})
        for c in (right[j] for j in near):
            if _normal(c) == _normal(v) or (
                _DIGITS.sub("#", c) != _DIGITS.sub("#", v) and near_miss(c, v, edits=edits)
            ):
                pairs.append((v, c))
    return pairs


#: Names shorter than this are not called typos of one another one edit apart.
SHORT_NAME = 4


def typo_notices(latent: Sequence[str], columns: Sequence[str]) -> list[str]:
    """Notices for latent nodes (nodes without a column) named like a column, one edit apart.

    Members of a family are not typos: names that differ in their last character alone (``x1``,
    ``x2``; ``sucA``, ``sucD``) or in their numbers alone (``n10``, ``n101``), nor short names one
    edit apart (``h10``, ``x10``: below :data:`SHORT_NAME` characters, one edit is another name). At most
    :data:`MAX_TYPO_NOTICES` are listed; the rest are counted.
    """
    pairs = [
        (v, c)
        for v, c in near_pairs(latent, columns, 1)
        if c.casefold() == v.casefold() or (c[:-1] != v[:-1] and min(len(c), len(v)) >= SHORT_NAME)
    ]
    notes = [f"latent node {v!r} is named like column {c!r}: is {v!r} a typo in the graph?" for v, c in pairs]
    if len(notes) > MAX_TYPO_NOTICES:
        rest = len(notes) - MAX_TYPO_NOTICES
        notes = [*notes[:MAX_TYPO_NOTICES], f"{rest} more latent node(s) are named like a column"]
    return notes


def unknown_node(name: str, nodes: Sequence[str], what: str = "node") -> str:
    """``unknown <what> 'name'`` with the :func:`closest_node` as a suggestion, else a preview of the
    nodes.
    """
    close = closest_node(name, nodes)
    if close is not None:
        return f"unknown {what} {name!r} (did you mean {close!r}?)"
    return f"unknown {what} {name!r}; the nodes are {preview(list(nodes))}"


_LOOKALIKE = str.maketrans({"o": "0", "l": "1", "i": "1"})


def closest_node(name, nodes: Sequence[str]) -> str | None:
    """The node an unknown ``name`` most likely stands for: one alike but for case and look-alike
    characters (O and 0, l and 1) first, else the closest by :mod:`difflib`, but no sibling of a
    numbered family (``h33`` is not called ``h3``, nor ``X12`` ``X1``); ``None`` if none is close.
    """
    import difflib

    key = str(name).casefold().translate(_LOOKALIKE)
    same = [str(v) for v in nodes if str(v).casefold().translate(_LOOKALIKE) == key]
    close = difflib.get_close_matches(str(name), [str(v) for v in nodes], n=5, cutoff=0.6)
    close = same + [c for c in close if _DIGITS.sub("#", c) != _DIGITS.sub("#", str(name))]
    return close[0] if close else None
