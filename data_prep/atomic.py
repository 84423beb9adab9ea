"""Atomic writes: everything goes to a temporary sibling first and is renamed into place, so a failed
command leaves either the old output or nothing, never a half-written one."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from collections.abc import Iterable
from typing import Any, Callable


def write_with(path: Path, write: Callable[[Path], None]) -> None:
    """The one atomic writer: `write(tmp)` fills a temp file in `path`'s folder, which then replaces `path`
    (`os.replace`), so a reader sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes(path: Path, data: bytes) -> None:
    write_with(path, lambda tmp: tmp.write_bytes(data))


def write_together(folder: Path, writers: dict[str, Callable[[Path], None]]) -> None:
    """Write several files of `folder` as one step: each is written to a temp sibling first, and only when
    all succeeded are they renamed into place (in the given order: put the file readers look for last)."""
    folder = Path(folder)
    staged: list[tuple[str, str]] = []
    try:
        for name, write in writers.items():
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
            os.close(fd)
            staged.append((tmp, name))
            write(Path(tmp))
            os.chmod(tmp, 0o644)
    except BaseException:
        for tmp, _ in staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise
    for tmp, name in staged:
        os.replace(tmp, folder / name)


def json_text(obj: Any) -> str:
    """The one JSON spelling used for every file we write: sorted keys, indent 2, trailing newline."""
    return json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def write_json(path: Path, obj: Any) -> None:
    write_bytes(path, json_text(obj).encode("utf-8"))


def read_json(path: Path, expected: str = "JSON", keys: Iterable[str] = ()) -> Any:
    """Parse a JSON file; a missing or malformed file, or (with `keys`) one that is not an object holding
    those keys, is a DataPrepError naming it and what was expected."""
    from data_prep.errors import DataPrepError

    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataPrepError(f"{path}: expected {expected}, found no file") from None
    except json.JSONDecodeError as err:
        raise DataPrepError(f"{path} line {err.lineno}: expected {expected}, found bad JSON ({err.msg})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataPrepError(f"{path}: expected {expected}, could not read it ({err})") from None
    keys = list(keys)
    if keys and not isinstance(value, dict):
        raise DataPrepError(f"{path}: expected {expected} (a JSON object), found a {type(value).__name__}")
    missing = [key for key in keys if key not in value]
    if missing:
        raise DataPrepError(f"{path}: expected {expected} with {', '.join(keys)}, found no {', '.join(missing)}")
    return value
