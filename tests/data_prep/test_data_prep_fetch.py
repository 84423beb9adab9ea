"""Sources: `auto` falls back from GroupLens to the mirror and says which it used, fetches are cached,
outputs are rewritten atomically, and reruns of fetch → prepare → split are byte-identical."""
from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from data_prep.api import fetch, prepare, split
from data_prep.folder import LOCK
from data_prep.sources import grouplens, mirror
from data_prep.sources.checksum import file_digest
from data_prep.sources.mirror import Unreachable


@pytest.fixture
def offline_with_mirror(fake_wheel, monkeypatch):
    """GroupLens unreachable; the mirror serves the fixture wheel (its pinned SHA-256 set to the fixture's)."""
    calls = []

    def no_network(url, target):
        calls.append(url)
        raise Unreachable(f"could not download {url}: [Errno -2] Name or service not known")

    def wheel_download(spec, into):
        calls.append(spec.requirement)
        target = into / spec.wheel
        target.write_bytes(fake_wheel.read_bytes())
        return target

    monkeypatch.setattr(grouplens, "download", no_network)
    monkeypatch.setattr(mirror, "download_wheel", wheel_download)
    monkeypatch.setitem(mirror.MIRRORS, "ml-100k",
                        mirror.MIRRORS["ml-100k"].__class__(**{**mirror.MIRRORS["ml-100k"].__dict__,
                                                               "sha256": file_digest(fake_wheel, "sha256")}))
    return calls


def test_auto_falls_back_to_the_mirror_and_says_so(offline_with_mirror, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="data_prep"):
        raw = fetch("ml-100k", tmp_path)
    record = json.loads((raw / "fetch.json").read_text())
    assert record["source"] == "pypi-mirror" and record["layout"] == "recbole"
    assert record["origin"] == "pypi:recbole==1.2.1" and record["checksum"].startswith("sha256:")
    assert sorted(p.name for p in (raw / "files").iterdir()) == ["ml-100k.inter", "ml-100k.item", "ml-100k.user"]
    assert "GroupLens unreachable" in caplog.text and "fetched from pypi-mirror" in caplog.text
    assert offline_with_mirror == ["https://files.grouplens.org/datasets/movielens/ml-100k.zip", "recbole==1.2.1"]


def test_fetch_is_cached_until_another_source_is_asked_for(offline_with_mirror, official_zip, tmp_path):
    fetch("ml-100k", tmp_path, source="pypi-mirror")
    fetch("ml-100k", tmp_path)  # auto: the cached mirror copy will do
    fetch("ml-100k", tmp_path, source="pypi-mirror")
    assert offline_with_mirror == ["recbole==1.2.1"]
    archive = official_zip("ml-100k")
    from conftest import md5_of
    raw = fetch("ml-100k", tmp_path, source=str(archive), md5=md5_of(archive))
    assert sorted(p.name for p in raw.iterdir()) == [".lock", ".owner.json", "fetch.json", "ml-100k.zip"]  # replaced
    with pytest.raises(Exception, match="could not download"):
        fetch("ml-100k", tmp_path, source="grouplens")
    assert json.loads((raw / "fetch.json").read_text())["source"] == "local"  # the failed fetch changed nothing


def test_auto_without_a_mirror_explains_what_to_do(offline_with_mirror, tmp_path):
    with pytest.raises(Exception, match=r"no mirror holds ml-25m; download ml-25m.zip yourself and pass --source PATH/ml-25m.zip"):
        fetch("ml-25m", tmp_path)
    assert not (tmp_path / "ml-25m").exists()


def test_pipeline_rerun_is_byte_identical(offline_with_mirror, tmp_path):
    outputs = []
    for run in ("a", "b"):
        root = tmp_path / run
        fetch("ml-100k", root)
        canonical = prepare("ml-100k", root)
        split("ml-100k", root / "split", root, seed=3, val=0.25, test=0.25, holdout_genres=["Musical"],
              min_test_ratings=0)  # 4 ratings: 1 val, 1 test
        outputs.append({f"{folder.name}/{p.name}": p.read_bytes() for folder in (canonical, root / "split")
                        for p in folder.iterdir() if p.name != LOCK})  # the lock file holds the writer's pid
    assert outputs[0] == outputs[1] and len(outputs[0]) == 10


def test_cli_end_to_end_on_synthetic_data(tmp_path):
    """`python -m data_prep` synth → split → info, as a user runs it."""
    def run(*argv):
        return subprocess.run([sys.executable, "-m", "data_prep", *argv], capture_output=True, text=True, check=False)

    made = run("synth", "--ratings", "5000", "--users", "100", "--items", "80", "--genres", "5", "--seed", "1",
               "--name", "tiny", "--data-dir", str(tmp_path))
    assert made.returncode == 0, made.stderr
    done = run("split", "tiny", "--data-dir", str(tmp_path), "--scheme", "temporal", "--holdout-genres", "Action",
               "--val", "0.2", "--test", "0.2", "--min-test-ratings", "5")
    assert done.returncode == 0, done.stderr
    out = tmp_path / "tiny" / "splits" / "temporal-seed0-holdout-Action"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["holdout_genres"] == ["Action"] and manifest["rule"]["min_test_ratings"] == 5
    assert manifest["genres"]["Action"]["teacher_train"] == 0 and manifest["genres"]["Action"]["holdout"] is True
    shown = run("info", str(out))
    assert shown.returncode == 0 and shown.stdout == done.stdout.split("\n", 1)[1]
    assert "Action*" in shown.stdout
