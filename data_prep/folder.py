"""One writer per output folder, and only folders we made.

A command that writes a folder first *claims* it: it takes an exclusive lock (``.lock``, released by
the kernel when the process ends, so a lock whose holder died is simply taken over) and checks the
owner marker (``.owner.json``): the folder must be new, empty, or marked by the same command earlier.
A folder that holds anything else is refused, so a mistyped ``--out`` never changes a user's files.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from data_prep import atomic
from data_prep.errors import DataPrepError

LOCK = ".lock"
MARKER = ".owner.json"


def _holder(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 4096).decode("utf-8", "replace").strip() or "another process"


@contextlib.contextmanager
def claim(folder: str | Path, command: str, flag: str = "--out") -> Iterator[Path]:
    """Hold ``folder`` for ``command`` (e.g. ``"reckd distill"``) while the block runs.

    Errors (all DataPrepError, naming the folder): a file where a folder is expected, a folder that cannot
    be written, another live writer (named by its pid, host and command), or a folder holding files that
    ``command`` did not write. A folder this call created is removed again if the block fails before
    writing anything into it."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DataPrepError(f"{flag} {folder}: expected a folder, found a file")
    created = not folder.exists()
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
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} ({command}, since "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')})\n".encode(), 0)
        marker = folder / MARKER
        if marker.exists():
            owner = atomic.read_json(marker, "an owner marker").get("command")
            if owner != command:
                raise DataPrepError(f"{flag} {folder}: written by `{owner}`, not `{command}`; choose another {flag}")
        else:
            foreign = sorted(p.name for p in folder.iterdir() if p.name != LOCK)
            if foreign:
                shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
                raise DataPrepError(f"{flag} {folder}: expected a new or empty folder, or one written by "
                                    f"`{command}` before, found {shown}; choose another {flag}")
            atomic.write_json(marker, {"command": command})
        yield folder
    except BaseException:
        if created and {p.name for p in folder.iterdir()} <= {LOCK, MARKER}:
            for name in (MARKER, LOCK):
                (folder / name).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    finally:
        os.close(fd)  # releases the lock
