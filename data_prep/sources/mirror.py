"""The PyPI mirror of ML-100K: RecBole's wheel ships it as atomic files under
`recbole/dataset_example/ml-100k/`. pip fetches the wheel (no dependencies), we check its SHA-256, then
extract only those files."""
from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from data_prep.sources.checksum import file_digest
from data_prep.errors import DataPrepError


class Unreachable(Exception):
    """A source could not be reached (no network, pip failed); `auto` moves on to the next source."""


@dataclass(frozen=True)
class Mirror:
    requirement: str
    wheel: str
    sha256: str
    folder: str
    files: tuple[str, ...]


MIRRORS = {
    "ml-100k": Mirror(
        requirement="recbole==1.2.1",
        wheel="recbole-1.2.1-py3-none-any.whl",
        sha256="9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407",
        folder="recbole/dataset_example/ml-100k/",
        files=("ml-100k.inter", "ml-100k.item", "ml-100k.user"),
    )
}


def mirror_for(dataset: str) -> Mirror:
    if dataset not in MIRRORS:
        raise DataPrepError(
            f"--source pypi-mirror: expected a dataset with a mirror ({', '.join(MIRRORS)}), found {dataset}"
        )
    return MIRRORS[dataset]


def download_wheel(mirror: Mirror, into: Path) -> Path:
    """`pip download` the wheel into `into`; pip runs as a subprocess of this very interpreter."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--quiet", mirror.requirement, "-d", str(into)]
    done = subprocess.run(command, capture_output=True, text=True)
    wheel = into / mirror.wheel
    if done.returncode != 0 or not wheel.exists():
        raise Unreachable(f"pip download {mirror.requirement} failed: {(done.stderr or done.stdout).strip()[-400:]}")
    return wheel


def extract_wheel(mirror: Mirror, wheel: Path, into: Path) -> str:
    """Verify the wheel's SHA-256, copy the dataset files into `into`; returns "sha256:…"."""
    found = file_digest(wheel, "sha256")
    if found != mirror.sha256:
        raise DataPrepError(f"{wheel}: checksum mismatch: expected sha256 {mirror.sha256}, found {found}")
    into.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        for name in mirror.files:
            member = mirror.folder + name
            if member not in archive.namelist():
                raise DataPrepError(f"{wheel}: expected a member {member}, found none")
            (into / name).write_bytes(archive.read(member))
    return f"sha256:{found}"


def fetch_mirror(mirror: Mirror, into: Path, wheel: Path | None = None) -> str:
    """Fetch (or take the given local `wheel`), verify and extract; returns the wheel's checksum."""
    if wheel is not None:
        return extract_wheel(mirror, wheel, into)
    with tempfile.TemporaryDirectory(prefix="reckd-wheel-") as tmp:
        return extract_wheel(mirror, download_wheel(mirror, Path(tmp)), into)
