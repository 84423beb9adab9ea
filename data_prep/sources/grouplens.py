"""Downloads from files.grouplens.org, checked against the MD5 GroupLens publishes next to each archive."""
from __future__ import annotations

import http.client
import re
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from data_prep.sources.checksum import file_digest
from data_prep.datasets import DatasetSpec
from data_prep.errors import DataPrepError
from data_prep.sources.mirror import Unreachable

TIMEOUT_S = 60
MD5_PATTERN = re.compile(r"\b([0-9a-fA-F]{32})\b")


def download(url: str, target: Path) -> None:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(target, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, OSError) as err:
        raise Unreachable(f"could not download {url}: {getattr(err, 'reason', err)}") from None


def parse_md5(text: str, where: str) -> str:
    """The hex digest in a GroupLens `.md5` file (`MD5 (ml-1m.zip) = …` or `…  ml-32m.zip`)."""
    found = MD5_PATTERN.search(text)
    if found is None:
        raise DataPrepError(f"{where}: expected an MD5 hex digest, found {text.strip()[:80]!r}")
    return found.group(1).lower()


def published_md5(spec: DatasetSpec, scratch: Path) -> str:
    """GroupLens' MD5 for the archive: the pinned value, else the `.md5` sidecar read now."""
    if spec.md5 is not None:
        return spec.md5
    sidecar = scratch / (spec.archive + ".md5")
    download(spec.url + ".md5", sidecar)
    return parse_md5(sidecar.read_text(encoding="ascii", errors="replace"), spec.url + ".md5")


def verify_md5(path: Path, expected: str, shown: str, hint: str = "") -> str:
    """Compare the file's MD5 with `expected`; returns "md5:…" or raises naming both values."""
    found = file_digest(path, "md5")
    if found != expected.lower():
        raise DataPrepError(f"{shown}: checksum mismatch: expected md5 {expected.lower()}, found {found}{hint}")
    return f"md5:{found}"


def fetch_grouplens(spec: DatasetSpec, into: Path, md5: str | None) -> str:
    """Download the official archive into `into` and verify it; returns "md5:…"."""
    expected = md5 or published_md5(spec, into)
    target = into / spec.archive
    download(spec.url, target)
    (into / (spec.archive + ".md5")).unlink(missing_ok=True)
    return verify_md5(target, expected, spec.url)
