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
from typing import Any


def write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temp file in the same folder and `os.replace`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


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
