"""Zip archives as GroupLens ships them: members found by base name, opened and checked with errors that
name the file."""
from __future__ import annotations

import zipfile
import zlib
from pathlib import Path, PurePosixPath

from data_prep.errors import DataPrepError


def member_index(names: list[str]) -> dict[str, str]:
    """Base name → member path, keeping the shallowest member for each base name (archives nest the
    files one folder deep, e.g. `ml-10M100K/ratings.dat`)."""
    index: dict[str, str] = {}
    for name in sorted(names, key=lambda n: (n.count("/"), n)):
        if not name.endswith("/"):
            index.setdefault(PurePosixPath(name).name, name)
    return index


def open_zip(path: Path, shown: str | None = None) -> zipfile.ZipFile:
    """Open an archive, turning "not a zip / truncated" into a DataPrepError that names the file."""
    shown = shown or str(path)
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise DataPrepError(f"{shown}: expected a zip archive, found a truncated or non-zip file ({err})") from None


def check_zip(path: Path, required: tuple[str, ...], shown: str | None = None) -> None:
    """The archive opens, every member's CRC matches (no truncation), and `required` files are inside."""
    shown = shown or str(path)
    with open_zip(path, shown) as archive:
        try:
            broken = archive.testzip()
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as err:
            raise DataPrepError(f"{shown}: expected a complete zip archive, found a damaged one ({err})") from None
        if broken is not None:
            raise DataPrepError(f"{shown}: expected intact members, found a bad CRC in {broken} (truncated?)")
        present = member_index(archive.namelist())
    missing = [name for name in required if name not in present]
    if missing:
        raise DataPrepError(
            f"{shown}: expected {', '.join(required)} in the archive, found no {', '.join(missing)}"
        )
