"""The raw folder `DATA_DIR/DATASET/raw/`: `fetch` fills it with a dataset's files, verified, and
`fetch.json` saying which source was used and its checksum; `RawFiles` reads them back for `prepare`,
whatever container (an official zip archive `ARCHIVE.zip`, or a folder of files `files/`) holds them.

Sources: `grouplens` (official archive, GroupLens' published MD5), `pypi-mirror` (ML-100K from the
`recbole==1.2.1` wheel, SHA-256), `auto` (GroupLens, then the mirror where one exists), or a local PATH: an
official archive (checked against `--md5`, else GroupLens' MD5, else an `ARCHIVE.md5` file beside it; with
none of these it is refused), the RecBole wheel, or a folder of official or RecBole files (no published
checksum exists for a folder; its SHA-256 is recorded)."""
from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_prep import atomic, paths
from data_prep.datasets import LAYOUT_FILES, DatasetSpec, spec_for
from data_prep.errors import DataPrepError
from data_prep.folder import claim, legacy_output
from data_prep.sources.archive import check_zip, member_index, open_zip
from data_prep.sources.checksum import tree_digest
from data_prep.sources.grouplens import fetch_grouplens, parse_md5, verify_md5
from data_prep.sources.mirror import MIRRORS, Unreachable, fetch_mirror, mirror_for

RECORD = "fetch.json"
FOLDER = "files"
log = logging.getLogger("data_prep")

NAMED_SOURCES = ("auto", "grouplens", "pypi-mirror")
COMMAND = "data_prep fetch"  # the owner marker of a raw folder


def record(spec: DatasetSpec, source: str, origin: str, checksum: str, container: str, layout: str) -> dict[str, Any]:
    path = spec.archive if container == "zip" else FOLDER
    return {"dataset": spec.name, "source": source, "origin": origin, "checksum": checksum,
            "container": container, "path": path, "layout": layout}


def from_grouplens(spec: DatasetSpec, staging: Path, md5: str | None) -> dict[str, Any]:
    checksum = fetch_grouplens(spec, staging, md5)
    check_zip(staging / spec.archive, LAYOUT_FILES[spec.layout], spec.url)
    return record(spec, "grouplens", spec.url, checksum, "zip", spec.layout)


def from_mirror(spec: DatasetSpec, staging: Path, wheel: Path | None = None) -> dict[str, Any]:
    mirror = mirror_for(spec.name)
    checksum = fetch_mirror(mirror, staging / FOLDER, wheel)
    return record(spec, "pypi-mirror", f"pypi:{mirror.requirement}", checksum, "folder", "recbole")


def expected_md5(spec: DatasetSpec, archive: Path, md5: str | None) -> str:
    """`--md5`, else GroupLens' published value, else an `ARCHIVE.md5` file next to the archive."""
    if md5:
        return md5
    if spec.md5:
        return spec.md5
    sidecar = archive.with_name(archive.name + ".md5")
    if sidecar.exists():
        return parse_md5(sidecar.read_text(encoding="ascii", errors="replace"), str(sidecar))
    raise DataPrepError(
        f"{archive}: expected GroupLens' MD5 for {spec.archive} to verify it, found none (the {spec.name} archive "
        f"changes with each refresh, so none is pinned); pass --md5 with the value from {spec.url}.md5"
    )


def folder_files(spec: DatasetSpec, folder: Path) -> tuple[str, dict[str, Path]]:
    """(layout, base name → path) of the files a folder offers: RecBole atomic files or the official ones,
    at its top level or one folder down."""
    found = {Path(name).name: folder / name for name in member_index(
        [str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and len(p.relative_to(folder).parts) <= 2]
    ).values()}
    inter = f"{spec.name}.inter"
    if inter in found:
        wanted = [inter, f"{spec.name}.item"] + ([f"{spec.name}.user"] if f"{spec.name}.user" in found else [])
        layout = "recbole"
    else:
        wanted, layout = list(LAYOUT_FILES[spec.layout]), spec.layout
    missing = [name for name in wanted if name not in found]
    if missing:
        raise DataPrepError(
            f"{folder}: expected {', '.join(wanted)} (or RecBole files {spec.name}.inter/.item), "
            f"found no {', '.join(missing)}"
        )
    return layout, {name: found[name] for name in wanted}


def from_path(spec: DatasetSpec, path: Path, staging: Path, md5: str | None) -> dict[str, Any]:
    if path.is_dir():
        layout, files = folder_files(spec, path)
        (staging / FOLDER).mkdir()
        for name, source in files.items():
            shutil.copyfile(source, staging / FOLDER / name)
        checksum = "sha256:" + tree_digest((staging / FOLDER).iterdir())
        return record(spec, "local", str(path.resolve()), checksum, "folder", layout)
    if path.suffix == ".whl" and spec.name in MIRRORS:
        return from_mirror(spec, staging, wheel=path) | {"source": "local", "origin": str(path.resolve())}
    expected = expected_md5(spec, path, md5)
    checksum = verify_md5(path, expected, str(path), hint=" (pass --md5 to accept a modified archive)")
    check_zip(path, LAYOUT_FILES[spec.layout])
    shutil.copyfile(path, staging / spec.archive)
    return record(spec, "local", str(path.resolve()), checksum, "zip", spec.layout)


def cached(raw: Path, source: str) -> dict[str, Any] | None:
    """The earlier fetch, if it satisfies this request (`auto` takes any; a named source only itself)."""
    if not (raw / RECORD).exists():
        return None
    earlier = RawFiles.load(raw, "").record
    return earlier if source in ("auto", earlier["source"]) else None


def fetch(dataset: str, data_dir: str | Path | None = None, source: str = "auto", md5: str | None = None) -> Path:
    """Fetch `dataset` into `DATA_DIR/DATASET/raw/` and return that folder.

    A finished earlier fetch is reused when it satisfies `source`; a local PATH is always copied afresh.
    The folder is claimed (locked and marked, see data_prep.folder) while the download is staged in a temp
    folder inside it and moved into place, fetch.json last.
    """
    spec = spec_for(dataset)
    raw = paths.raw_dir(dataset, paths.data_dir(data_dir))
    if source not in NAMED_SOURCES and not Path(source).exists():
        raise DataPrepError(
            f"--source: expected {', '.join(NAMED_SOURCES)} or an existing archive or folder, found {source!r}"
        )
    if md5 is not None and not re.fullmatch(r"[0-9a-fA-F]{32}", md5):
        raise DataPrepError(f"--md5: expected 32 hex digits, found {md5!r}")
    if source == "pypi-mirror":
        mirror_for(dataset)
    if source in NAMED_SOURCES and (earlier := cached(raw, source)) is not None:
        log.info("%s: already fetched from %s (%s) in %s", dataset, earlier["source"], earlier["checksum"], raw)
        return raw
    legacy = legacy_output({RECORD, FOLDER, spec.archive}, RECORD, {"dataset", "source", "checksum", "container", "path"})
    with claim(raw, COMMAND, "--data-dir", legacy):
        staging = Path(tempfile.mkdtemp(prefix=".fetch.", suffix=".tmp", dir=raw))
        try:
            try:
                if source == "grouplens":
                    done = from_grouplens(spec, staging, md5)
                elif source == "pypi-mirror":
                    done = from_mirror(spec, staging)
                elif source == "auto":
                    done = fetch_auto(spec, staging, md5)
                else:
                    done = from_path(spec, Path(source), staging, md5)
            except Unreachable as err:
                raise DataPrepError(f"--source {source}: {err}") from None
            publish(raw, staging, done)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    log.info("%s: fetched from %s (%s, %s) into %s", dataset, done["source"], done["origin"], done["checksum"], raw)
    return raw


def publish(raw: Path, staging: Path, done: dict[str, Any]) -> None:
    """Move a finished fetch from `staging` into the claimed `raw` folder. fetch.json goes first out and last
    in, so a crash in between leaves no record and the next fetch starts over; the other container an
    earlier fetch left (its archive or `files/`) is removed, nothing else."""
    earlier = RawFiles.load(raw, "").record if (raw / RECORD).exists() else None
    (raw / RECORD).unlink(missing_ok=True)
    for entry in staging.iterdir():
        remove(raw / entry.name)
        os.replace(entry, raw / entry.name)
    if earlier is not None and earlier["path"] != done["path"] and earlier["path"] in (FOLDER, f"{done['dataset']}.zip"):
        remove(raw / earlier["path"])
    atomic.write_json(raw / RECORD, done)


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def fetch_auto(spec: DatasetSpec, staging: Path, md5: str | None) -> dict[str, Any]:
    """GroupLens first; if it cannot be reached, the PyPI mirror where the dataset has one."""
    try:
        return from_grouplens(spec, staging, md5)
    except Unreachable as err:
        if spec.name not in MIRRORS:
            raise DataPrepError(
                f"--source auto: {err}; no mirror holds {spec.name}; download {spec.archive} yourself and "
                f"pass --source PATH/{spec.archive}"
            ) from None
        log.info("%s: GroupLens unreachable (%s); trying the PyPI mirror", spec.name, err)
        for leftover in staging.iterdir():
            leftover.unlink()
        return from_mirror(spec, staging)


@dataclass(frozen=True)
class TextFile:
    """The bytes of one file and the name errors should use for it (e.g. `ml-100k.zip:ml-100k/u.data`)."""

    name: str
    data: bytes
    encoding: str  # "utf-8", "latin-1", or "utf-8|latin-1" (UTF-8 where valid, else latin-1)

    def utf8(self) -> bytes:
        """The file as UTF-8 with `\\n` line ends, which is what polars reads (no copy for plain ASCII)."""
        data = self.data
        if self.encoding == "latin-1":
            if not data.isascii():
                data = data.decode("latin-1").encode("utf-8")
        elif not data.isascii():
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as err:
                if self.encoding != "utf-8|latin-1":
                    line = data[: err.start].count(b"\n") + 1
                    raise DataPrepError(
                        f"{self.name} line {line}: expected UTF-8 text, found byte {data[err.start]:#04x}"
                    ) from None
                data = data.decode("latin-1").encode("utf-8")
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
        return data


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
        return cls(root, atomic.read_json(path, "a fetch record", ("dataset", "source", "checksum", "container", "path", "layout")))

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
