"""A split's manifest carries a content fingerprint of its rating assignment and rule, computed from column
values (not parquet bytes): the same inputs give the same value, any change of assignment or rule another;
the manifest spells out the split codes, which are defined once in data_prep.assign."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from data_prep.api import split
from data_prep.assign import SPLIT_CODES, TEST, TRAIN, VAL
from data_prep.config import SplitConfig
from data_prep.fingerprint import split_fingerprint

CONFIG = SplitConfig(seed=5, holdout_genres=("Crime",))
SCALE = {"min": 1.0, "max": 5.0, "step": 1.0}


@pytest.fixture(scope="module")
def written(small_synth, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fp") / "split"
    split("synth", out, small_synth, seed=5, holdout_genres=("Crime",))
    return out


def by_hand(ratings: pl.DataFrame, rule: dict) -> str:
    """The documented byte layout, written out independently of data_prep.fingerprint."""
    h = hashlib.sha256(b"data_prep split fingerprint 1\n")
    h.update(json.dumps(rule, sort_keys=True, separators=(",", ":")).encode() + b"\n")
    for name, dtype in (("user_id", "<i8"), ("item_id", "<i8"), ("rating", "<f4"), ("split", "i1"), ("teacher", "u1")):
        values = np.array(ratings[name].to_list()).astype(dtype)
        h.update(f"{name} {dtype} {len(values)}\n".encode() + values.tobytes())
    return "sha256:" + h.hexdigest()


def test_manifest_fingerprint_follows_the_documented_layout(written):
    manifest = json.loads((written / "manifest.json").read_text())
    ratings = pl.read_parquet(written / "ratings.parquet")
    rule = {"scheme": "random", "seed": 5, "val": 0.1, "test": 0.1, "holdout_genres": ["Crime"],
            "sparse_below": 0.05, "min_test_ratings": 20, "rating_scale": SCALE}
    assert manifest["fingerprint"] == by_hand(ratings, rule)
    assert manifest["fingerprint"] == split_fingerprint(ratings, CONFIG, manifest["rating_scale"])


def test_same_inputs_same_fingerprint_whatever_the_parquet_bytes(written, small_synth, tmp_path):
    again = split("synth", tmp_path / "again", small_synth, seed=5, holdout_genres=("Crime",))
    manifest = json.loads((written / "manifest.json").read_text())
    assert again["fingerprint"] == manifest["fingerprint"]
    ratings = pl.read_parquet(written / "ratings.parquet")
    other_bytes = tmp_path / "other.parquet"
    ratings.write_parquet(other_bytes, compression="gzip", row_group_size=777)  # another file, the same values
    assert other_bytes.read_bytes() != (written / "ratings.parquet").read_bytes()
    pieces = pl.concat([pl.read_parquet(other_bytes)[:9_000], pl.read_parquet(other_bytes)[9_000:]], rechunk=False)
    assert split_fingerprint(pieces.drop("timestamp"), CONFIG, SCALE) == manifest["fingerprint"]


def test_any_change_of_assignment_or_rule_changes_it(written):
    ratings = pl.read_parquet(written / "ratings.parquet")
    base = split_fingerprint(ratings, CONFIG, SCALE)
    row = int((ratings["split"] == TRAIN).arg_true()[0])

    def with_value(name: str, value) -> pl.DataFrame:
        return ratings.with_columns(ratings[name].scatter(row, value))

    changed = {
        "one rating moved to test": with_value("split", TEST),
        "one teacher flag": with_value("teacher", not ratings["teacher"][row]),
        "one rating value": with_value("rating", 6 - ratings["rating"][row] if ratings["rating"][row] != 3 else 4.0),
        "one item id": with_value("item_id", ratings["item_id"][row] + 1),
        "two rows swapped": pl.concat([ratings[1:2], ratings[0:1], ratings[2:]]),
    }
    fingerprints = {what: split_fingerprint(frame, CONFIG, SCALE) for what, frame in changed.items()}
    for rule_change in ({"seed": 6}, {"val": 0.15}, {"test": 0.2}, {"scheme": "temporal"},
                        {"holdout_genres": ("Crime", "Drama")}, {"sparse_below": 0.1}, {"min_test_ratings": 21}):
        fingerprints[str(rule_change)] = split_fingerprint(ratings, dataclasses.replace(CONFIG, **rule_change), SCALE)
    fingerprints["half-star scale"] = split_fingerprint(ratings, CONFIG, {"min": 0.5, "max": 5.0, "step": 0.5})
    assert base not in fingerprints.values()
    assert len(set(fingerprints.values())) == len(fingerprints)
    assert split_fingerprint(ratings, dataclasses.replace(CONFIG, holdout_genres=("Crime",)), SCALE) == base


def test_other_seed_other_fingerprint(written, small_synth, tmp_path):
    manifest = json.loads((written / "manifest.json").read_text())
    assert split("synth", tmp_path / "s6", small_synth, seed=6, holdout_genres=("Crime",))["fingerprint"] != manifest["fingerprint"]


def test_manifest_spells_out_the_split_codes(written):
    manifest = json.loads((written / "manifest.json").read_text())
    assert manifest["split_codes"] == {"0": "train", "1": "val", "2": "test"}
    assert "teacher's pre-training set" in manifest["teacher_flag"] and "holdout genre" in manifest["teacher_flag"]
    assert SPLIT_CODES == {"train": TRAIN, "val": VAL, "test": TEST} == {"train": 0, "val": 1, "test": 2}
    codes = set(pl.read_parquet(written / "ratings.parquet")["split"].unique())
    assert codes == {int(k) for k in manifest["split_codes"]}
