"""Fields: a delimited text file split into string columns with a `line` number, and their casts, with
errors that name the file, the line, the column, what was expected and what was found. No per-row Python.
(`tables` builds the typed tables from these fields.)"""
from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from data_prep.errors import DataPrepError
from data_prep.sources.raw import TextFile

FIELD_SEP = "\x1f"  # stands in for multi-character separators such as ML-1M's "::"
LINE_SEP = "\x1e"  # a byte no MovieLens file holds: read_csv then yields one whole line per row


def lines(file: TextFile, header: str | None) -> tuple[pl.Series, int]:
    """Every line of the file as a string Series, and the line number of its first element."""
    data = file.utf8()
    first, body = 1, 0
    if header is not None:
        end = data.find(b"\n")
        found = data[: end if end >= 0 else len(data)].decode("utf-8").strip()
        if found != header:
            raise DataPrepError(f"{file.name} line 1: expected header {header!r}, found {found!r}")
        first, body = 2, (end + 1 if end >= 0 else len(data))
    rest = len(data) - body
    if rest == 0 or (rest <= 4096 and not data[body:].strip()):
        raise DataPrepError(f"{file.name}: expected at least one row, found none")
    if data.startswith(b"\n", body):
        blank = first
    else:
        pos = data.find(b"\n\n", body)
        blank = None if pos < 0 else first + data.count(b"\n", body, pos + 1)
    if blank is not None:
        raise DataPrepError(f"{file.name} line {blank}: expected a row, found an empty line")
    frame = pl.read_csv(
        data, has_header=False, separator=LINE_SEP, quote_char=None, skip_lines=first - 1,
        schema={"line": pl.String}, empty_string_is_null=False, truncate_ragged_lines=True,
    )
    return frame["line"], first


def read_fields(file: TextFile, sep: str, columns: Sequence[str], header: str | None = None) -> pl.DataFrame:
    """The file's rows split on `sep` into `columns` (strings) plus `line`; a row with another number of
    fields is an error naming its line."""
    text, first = lines(file, header)
    if len(sep) > 1:
        text = text.str.replace_all(sep, FIELD_SEP, literal=True)
        shown_sep, sep = sep, FIELD_SEP
    else:
        shown_sep = sep
    fields = text.str.count_matches(sep, literal=True) + 1
    bad = (fields != len(columns)).arg_true()
    if len(bad):
        row = int(bad[0])
        found = text[row].replace(FIELD_SEP, shown_sep)
        raise DataPrepError(
            f"{file.name} line {first + row}: expected {len(columns)} fields separated by {shown_sep!r}, "
            f"found {int(fields[row])}: {found[:120]!r}"
        )
    parts = text.str.split_exact(sep, len(columns) - 1).struct.rename_fields(list(columns))
    return parts.struct.unnest().with_columns(
        pl.int_range(first, first + len(text), dtype=pl.Int64).alias("line")
    )


def cast_column(frame: pl.DataFrame, column: str, dtype: pl.DataType, file: str, what: str) -> pl.Series:
    """`frame[column]` cast to `dtype`; the first value that does not parse is an error naming its line.
    Integer columns also take integral floats such as RecBole's `881250949.0`."""
    raw = frame[column].str.strip_chars()
    if dtype.is_float():
        parsed = raw.cast(pl.Float64, strict=False)
        bad = parsed.is_null() | parsed.is_nan() | parsed.is_infinite()
    else:
        parsed = raw.cast(pl.Int64, strict=False)
        if parsed.null_count():
            as_float = raw.cast(pl.Float64, strict=False)
            whole = pl.DataFrame({"value": as_float}).select(
                pl.when(pl.col("value").is_finite() & (pl.col("value") == pl.col("value").floor())
                        & (pl.col("value").abs() < 2.0**53))
                .then(pl.col("value")).cast(pl.Int64)
            ).to_series()
            parsed = parsed.fill_null(whole)
        bad = parsed.is_null()
    if bad.any():
        row = int(bad.arg_true()[0])
        raise DataPrepError(
            f"{file} line {int(frame['line'][row])}, column {column!r}: expected {what}, "
            f"found {frame[column][row]!r}"
        )
    return parsed.cast(dtype).alias(column)
