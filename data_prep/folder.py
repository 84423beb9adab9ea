"""One writer per output folder, and only folders we made.

A command that writes a folder first *claims* it: it takes an exclusive lock (``.lock``, released by
the kernel when the process ends, so a lock whose holder died is simply taken over) and checks the
owner marker (``.owner.json``): the folder must be new, empty, or marked by the same command earlier.
A folder that holds anything else is refused, so a mistyped ``--out`` never changes a user's files.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from data_prep import atomic
from data_prep.errors import DataPrepError

LOCK = ".lock"
MARKER = ".owner.json"


def _holder(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 4096).decode("utf-8", "replace").strip() or "another process"


@contextlib.contextmanager
def claim(folder: str | Path, command: str, flag: str = "--out",
          legacy: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Hold ``folder`` for ``command`` (e.g. ``"reckd distill"``) while the block runs.

    Errors (all DataPrepError, naming the folder): a file where a folder is expected, a folder that cannot
    be written, another live writer (named by its pid, host and command), or a folder holding files that
    ``command`` did not write. ``legacy(folder)`` may recognise an unmarked folder as this command's output
    from before markers existed (by its exact contents, never by one common file name); it is then marked.
    If the block fails before writing anything, what this call made goes again: the marker and lock file,
    the folder and the parents it created; a refused folder is left exactly as it was."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DataPrepError(f"{flag} {folder}: expected a folder, found a file")
    created = [p for p in (folder, *folder.parents) if not p.exists()]  # innermost first
    made = set() if (folder / LOCK).exists() else {LOCK}  # what this call adds, to take away on failure
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise DataPrepError(f"{flag} {folder}: expected a folder this user can write, found: {err.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataPrepError(f"{flag} {folder}: in use by {_holder(fd)}; wait for it to finish or choose "
                                f"another {flag}") from None
        marker = folder / MARKER
        if marker.exists():
            record = atomic.read_json(marker, "an owner marker")
            owner = record.get("command") if isinstance(record, dict) else None
            if owner != command:
                raise DataPrepError(f"{flag} {folder}: written by `{owner}`, not `{command}`; choose another {flag}")
        else:
            foreign = sorted(p.name for p in folder.iterdir() if p.name != LOCK)
            if foreign and not (legacy is not None and legacy(folder)):
                shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
                raise DataPrepError(f"{flag} {folder}: expected a new or empty folder, or one written by "
                                    f"`{command}` before, found {shown}; choose another {flag}")
            atomic.write_json(marker, {"command": command})
            made.add(MARKER)
        os.ftruncate(fd, 0)  # the holder, for the message a second writer gets
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} ({command}, since "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')})\n".encode(), 0)
        yield folder
    except BaseException:
        left = {p.name for p in folder.iterdir()}
        if MARKER not in left or left <= {LOCK, MARKER}:  # refused, or nothing written yet
            for name in made:
                (folder / name).unlink(missing_ok=True)
            for path in created:  # the folder and the parents this call made, while still empty
                with contextlib.suppress(OSError):
                    path.rmdir()
        raise
    finally:
        os.close(fd)  # releases the lock


def legacy_output(files: set[str], record: str, keys: set[str]) -> Callable[[Path], bool]:
    """A recogniser for ``claim(legacy=…)``: a folder holding nothing but ``files``, among them ``record``, a
    JSON object with at least ``keys``, is a data_prep output from before owner markers existed."""

    def recognise(folder: Path) -> bool:
        names = {p.name for p in folder.iterdir()} - {LOCK}
        if record not in names or not names <= files:
            return False
        try:
            value = json.loads((folder / record).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(value, dict) and keys <= value.keys()

    return recognise
