"""The one table renderer of the project: aligned text, markdown or CSV from a header and string cells."""
from __future__ import annotations

import csv
import io
from collections.abc import Sequence

FORMATS = ("table", "markdown", "csv")


def render_table(header: Sequence[str], body: Sequence[Sequence[str]], fmt: str = "table",
                 left: int | None = None) -> str:
    """``table``: columns padded to their widest cell, the first ``left`` columns (default all) aligned
    left and the rest right, a dashed rule under the header; ``markdown``: a pipe table; ``csv``: RFC 4180.
    Cells are strings already (each caller formats its own numbers)."""
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(body)
        return buffer.getvalue()
    if fmt == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in body])
    if fmt != "table":
        raise ValueError(f"table format: expected one of {', '.join(FORMATS)}, found {fmt!r}")
    left = len(header) if left is None else left
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, body)])
