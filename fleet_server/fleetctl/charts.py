"""Pictures in the terminal from Unicode blocks: a sparkline per series, a bar per amount.

A few lines instead of a plotting library: the output is text, so it pipes, pastes into a
ticket and needs no terminal support beyond UTF-8. `--chart` asks for them; tables and `--json`
stay as they are for scripts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

_SPARKS = "▁▂▃▄▅▆▇█"
# A bar's last cell shows eighths, so bars of close amounts still differ.
_EIGHTHS = ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")
_FULL = "█"


def sparkline(values: Sequence[float | None], low: float, high: float) -> str:
    """One character per value between `low` and `high`; a space where there is no value."""
    cells = []
    for value in values:
        if value is None or math.isnan(value):
            cells.append(" ")
            continue
        share = 0.0 if high <= low else (value - low) / (high - low)
        cells.append(_SPARKS[min(len(_SPARKS) - 1, max(0, round(share * (len(_SPARKS) - 1))))])
    return "".join(cells)


def bar(value: float, largest: float, width: int) -> str:
    """A bar `width` cells long for `largest`, proportionally shorter for `value` (eighths of a cell)."""
    if largest <= 0 or value <= 0:
        return ""
    eighths = round(value / largest * width * 8)
    full, rest = divmod(max(eighths, 1), 8)
    return _FULL * full + _EIGHTHS[rest]


def fold(values: Sequence[float | None], width: int, *, additive: bool) -> tuple[list[float | None], int]:
    """`values` folded into at most `width` cells of `per` consecutive values each: summed when
    the quantity adds up (energy), averaged otherwise (power); a cell without values is None."""
    per = max(1, math.ceil(len(values) / max(width, 1)))
    cells: list[float | None] = []
    for index in range(0, len(values), per):
        present = [v for v in values[index : index + per] if v is not None]
        if not present:
            cells.append(None)
        else:
            cells.append(sum(present) if additive else sum(present) / len(present))
    return cells, per
