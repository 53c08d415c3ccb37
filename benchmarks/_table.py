"""Markdown tables for benchmark output (no extra dependency)."""

from __future__ import annotations

from collections.abc import Sequence


def markdown_table(rows: Sequence[dict[str, object]], digits: int = 1) -> str:
    """Rows of equal keys as a markdown table; floats rounded to `digits` decimals."""
    if not rows:
        return "(no rows)"
    header = list(rows[0])

    def cell(v: object) -> str:
        return f"{v:.{digits}f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(r[k]) for k in header) + " |" for r in rows]
    return "\n".join(lines)
