"""Atomic writes: everything goes to a temporary sibling first and is renamed into place, so a failed
command leaves either the old output or nothing, never a half-written one."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
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


def check_replaceable(target: Path, marker: str) -> None:
    """Only an empty folder, or one we wrote earlier (it holds `marker`), may be replaced: a mistyped
    `--out ~/Documents` must fail, not delete the folder."""
    from data_prep.errors import DataPrepError

    if target.exists() and not target.is_dir():
        raise DataPrepError(f"{target}: expected a folder to write, found a file")
    if target.is_dir() and any(target.iterdir()) and not (target / marker).exists():
        raise DataPrepError(
            f"{target}: expected a new folder or one written by data_prep (with {marker}), found other files; "
            f"choose another path"
        )


@contextlib.contextmanager
def replace_dir(target: Path, marker: str) -> Iterator[Path]:
    """Yield an empty temp folder beside `target`; on success it replaces `target`, on error it is removed.

    The swap is two renames (old folder aside, new one in), so a reader sees the old folder or the new one.
    An existing `target` must be empty or hold `marker` (see check_replaceable).
    """
    target = Path(target)
    check_replaceable(target, marker)
    created = [p for p in (target.parent, *target.parent.parents) if not p.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield staging
        aside = None
        if target.exists():
            aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, aside / target.name)
        staging.chmod(0o755)  # mkdtemp makes it 0700; a published folder is readable like any other
        os.replace(staging, target)
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in created:  # parents this call made, innermost first; only while still empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def read_json(path: Path, expected: str = "JSON") -> Any:
    """Parse a JSON file; a missing or malformed file is a DataPrepError naming it and what was expected."""
    from data_prep.errors import DataPrepError

    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataPrepError(f"{path}: expected {expected}, found no file") from None
    except json.JSONDecodeError as err:
        raise DataPrepError(f"{path} line {err.lineno}: expected {expected}, found bad JSON ({err.msg})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataPrepError(f"{path}: expected {expected}, could not read it ({err})") from None
