"""The fetched files of one dataset, as `fetch` left them under `DATA_DIR/DATASET/raw/`: an official zip
archive (`ARCHIVE.zip`) or a folder of files (`files/`), described by `fetch.json`."""
from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from data_prep.atomic import read_json
from data_prep.errors import DataPrepError
from data_prep.parse.table import TextFile

RECORD = "fetch.json"
FOLDER = "files"


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


@dataclass(frozen=True)
class RawFiles:
    """Read access to the fetched files, by base name, whatever container holds them."""

    root: Path
    record: dict[str, Any]

    @classmethod
    def load(cls, root: Path, dataset: str) -> "RawFiles":
        path = root / RECORD
        if not path.exists():
            raise DataPrepError(
                f"{path}: expected fetched data for {dataset}, found none; run `data_prep fetch {dataset}` first"
            )
        return cls(root, read_json(path, "a fetch record", ("dataset", "source", "checksum", "container", "path", "layout")))

    @property
    def layout(self) -> str:
        return self.record["layout"]

    def names(self) -> dict[str, str]:
        if self.record["container"] == "zip":
            with open_zip(self.root / self.record["path"]) as archive:
                return member_index(archive.namelist())
        folder = self.root / FOLDER
        return {p.name: p.name for p in sorted(folder.iterdir()) if p.is_file()}

    def has(self, name: str) -> bool:
        return name in self.names()

    def text(self, name: str, encoding: str) -> TextFile:
        """The file `name` (a base name) as a TextFile whose display name says where it came from."""
        index = self.names()
        if self.record["container"] == "zip":
            archive_path = self.root / self.record["path"]
            if name not in index:
                raise DataPrepError(f"{archive_path}: expected a member named {name}, found none")
            with open_zip(archive_path) as archive:
                return TextFile(f"{archive_path.name}:{index[name]}", archive.read(index[name]), encoding)
        path = self.root / FOLDER / name
        if not path.is_file():
            raise DataPrepError(f"{self.root / FOLDER}: expected a file named {name}, found none")
        return TextFile(str(path), path.read_bytes(), encoding)
