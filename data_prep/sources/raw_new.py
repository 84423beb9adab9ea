"""`fetch`: put a dataset's raw files under `DATA_DIR/DATASET/raw/`, verified, with `fetch.json` saying
which source was used and its checksum.

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
from pathlib import Path
from typing import Any

from data_prep import atomic, paths
from data_prep.checksum import tree_digest
from data_prep.datasets import LAYOUT_FILES, DatasetSpec, spec_for
from data_prep.errors import DataPrepError
from data_prep.folder import claim, legacy_output
from data_prep.grouplens import fetch_grouplens, parse_md5, verify_md5
from data_prep.mirror import MIRRORS, Unreachable, fetch_mirror, mirror_for
from data_prep.raw import FOLDER, RECORD, RawFiles, check_zip, member_index

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
