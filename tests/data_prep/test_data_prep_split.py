"""Split invariants on synthetic data: disjoint and complete, the teacher never sees val/test or holdout
genres, the manifest's counts equal an independent recount, schemes do what they say, reruns are
byte-identical."""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import polars as pl
import pytest

from data_prep.api import split
from data_prep.config import SplitConfig
from data_prep.genres import genre_table
from data_prep.manifest import info

HOLDOUT = ("Crime", "Adventure")


@pytest.fixture(scope="module")
def holdout_split(small_synth, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("split") / "holdout"
    split("synth", out, small_synth, seed=7, holdout_genres=HOLDOUT)
    return out


def load(out: Path) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    return (pl.read_parquet(out / "ratings.parquet"), pl.read_parquet(out / "items.parquet"),
            json.loads((out / "manifest.json").read_text()))


def test_schema_and_contract_fields(holdout_split):
    ratings, items, m = load(holdout_split)
    assert dict(ratings.schema) == {"user_id": pl.Int64, "item_id": pl.Int64, "rating": pl.Float32,
                                    "timestamp": pl.Int64, "split": pl.Int8, "teacher": pl.Boolean}
    assert sorted(p.name for p in holdout_split.iterdir()) == [
        ".lock", ".owner.json", "items.parquet", "manifest.json", "ratings.parquet", "users.parquet"]
    assert {k: m[k] for k in ("format", "dataset", "source", "scheme", "seed", "val", "test", "holdout_genres")} == {
        "format": 2, "dataset": "synth", "source": "synth", "scheme": "random", "seed": 7, "val": 0.1, "test": 0.1,
        "holdout_genres": ["Adventure", "Crime"]}
    assert m["source_checksum"].startswith("sha256:") and m["rating_scale"] == {"min": 1.0, "max": 5.0, "step": 1.0}
    assert m["rule"]["sparse_below_share"] == 0.05 and m["rule"]["min_test_ratings"] == 20
    text = (holdout_split / "manifest.json").read_text()
    assert text == json.dumps(m, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def test_disjoint_complete_and_exact_fractions(small_synth, holdout_split):
    ratings, _, m = load(holdout_split)
    canonical = pl.read_parquet(small_synth / "synth/canonical/ratings.parquet")
    assert ratings.drop("split", "teacher").equals(canonical)  # every rating once, canonical order
    assert set(ratings["split"].unique()) == {0, 1, 2}
    assert Counter(ratings["split"].to_list()) == {0: 16_000, 1: 2_000, 2: 2_000}
    assert m["counts"] | {} == {"ratings": 20_000, "train": 16_000, "val": 2_000, "test": 2_000,
                                "teacher_train": int(ratings["teacher"].sum()),
                                "users": ratings["user_id"].n_unique(), "items": ratings["item_id"].n_unique()}


def test_teacher_never_sees_val_test_or_holdout_genres(holdout_split):
    ratings, items, _ = load(holdout_split)
    genres_of = dict(zip(items["item_id"].to_list(), items["genres"].to_list()))
    teacher = ratings.filter(pl.col("teacher"))
    assert set(teacher["split"].unique()) == {0}
    assert not any(set(genres_of[i]) & set(HOLDOUT) for i in teacher["item_id"].to_list())
    pairs = lambda frame: set(zip(frame["user_id"].to_list(), frame["item_id"].to_list()))  # noqa: E731
    assert not pairs(teacher) & pairs(ratings.filter(pl.col("split") > 0))
    # and every training rating without a holdout genre is the teacher's
    train = ratings.filter(pl.col("split") == 0)
    expected = [not (set(genres_of[i]) & set(HOLDOUT)) for i in train["item_id"].to_list()]
    assert train["teacher"].to_list() == expected


def test_manifest_counts_equal_an_independent_recount(holdout_split):
    ratings, items, m = load(holdout_split)
    genres_of = dict(zip(items["item_id"].to_list(), items["genres"].to_list()))
    counts: dict[str, Counter] = defaultdict(Counter)
    users, rated = defaultdict(set), defaultdict(set)
    names = {0: "train", 1: "val", 2: "test"}
    for user, item, code, teacher in ratings.select("user_id", "item_id", "split", "teacher").iter_rows():
        for genre in genres_of[item]:  # a rating belongs to every genre of its movie
            counts[genre][names[code]] += 1
            counts[genre]["teacher_train"] += teacher
            users[genre].add(user)
            rated[genre].add(item)
    total_train = sum(1 for c in ratings["split"].to_list() if c == 0)
    assert set(m["genres"]) == set(g for gs in genres_of.values() for g in gs)
    for genre, row in m["genres"].items():
        c = counts[genre]
        assert (row["train"], row["val"], row["test"], row["teacher_train"]) == (c["train"], c["val"], c["test"], c["teacher_train"])
        assert (row["users"], row["items"]) == (len(users[genre]), len(rated[genre]))
        assert row["train_share"] == round(c["train"] / total_train, 6)
        assert row["holdout"] == (genre in HOLDOUT)
        assert (row["teacher_train"] == 0) == (genre in HOLDOUT) or row["train"] == 0


def test_assignment_happens_before_genre_filtering(small_synth, holdout_split, tmp_path):
    """Same seed, with and without holdout genres: identical split codes, so teacher and students share
    the held-out ratings."""
    split("synth", tmp_path / "plain", small_synth, seed=7)
    plain, _, m_plain = load(tmp_path / "plain")
    held, _, m_held = load(holdout_split)
    assert plain["split"].equals(held["split"])
    assert m_plain["counts"]["teacher_train"] == 16_000 > m_held["counts"]["teacher_train"]
    for genre, row in m_held["genres"].items():
        assert {k: row[k] for k in ("train", "val", "test", "class")} == {k: m_plain["genres"][genre][k] for k in ("train", "val", "test", "class")}


def test_rerun_is_byte_identical_and_seed_matters(small_synth, holdout_split, tmp_path):
    split("synth", tmp_path / "again", small_synth, seed=7, holdout_genres=("Adventure", "Crime"))
    for name in ("ratings.parquet", "items.parquet", "users.parquet", "manifest.json"):
        assert (tmp_path / "again" / name).read_bytes() == (holdout_split / name).read_bytes(), name
    split("synth", tmp_path / "other", small_synth, seed=8, holdout_genres=HOLDOUT)
    assert not load(tmp_path / "other")[0]["split"].equals(load(holdout_split)[0]["split"])


def test_temporal_scheme_is_per_user_future(small_synth, tmp_path):
    split("synth", tmp_path / "t", small_synth, scheme="temporal", val=0.1, test=0.2)
    ratings, _, m = load(tmp_path / "t")
    assert m["scheme"] == "temporal"
    for user, group in ratings.group_by("user_id"):
        group = group.sort("timestamp", "item_id")
        n = group.height
        codes = group["split"].to_list()
        n_test, n_val = int(0.2 * n + 0.5), int(0.1 * n + 0.5)
        assert codes == [0] * (n - n_test - n_val) + [1] * n_val + [2] * n_test, user


def test_dense_sparse_excluded_rule_and_its_flags(small_synth, tmp_path):
    m = split("synth", tmp_path / "a", small_synth)
    for genre, row in m["genres"].items():
        expected = ("excluded" if row["test"] < 20 else "sparse" if row["train_share"] < 0.05 else "dense")
        assert row["class"] == expected, genre
    classes = Counter(row["class"] for row in m["genres"].values())
    assert classes["dense"] >= 4 and classes["sparse"] >= 2  # the small synthetic set has sparse genres
    assert "fewer than 20 test ratings" in m["rule"]["text"] and "0.05 of all training ratings" in m["rule"]["text"]

    smallest = min(m["genres"].values(), key=lambda r: r["test"])["test"]
    strict = split("synth", tmp_path / "b", small_synth, sparse_below=0.5, min_test_ratings=smallest + 1)
    assert strict["rule"] == {"sparse_below_share": 0.5, "min_test_ratings": smallest + 1, "text": strict["rule"]["text"]}
    for genre, row in strict["genres"].items():
        assert row["class"] == ("excluded" if row["test"] <= smallest else "sparse" if row["train_share"] < 0.5 else "dense")
    assert Counter(r["class"] for r in strict["genres"].values())["excluded"] >= 1


def test_handmade_rule_boundaries():
    """Classes on a dataset whose counts are known by construction: genre A has 95% of the training
    ratings, B exactly 5% (not sparse: the rule is strictly below), C 4% and 1 test rating."""
    ratings = pl.DataFrame({
        "user_id": list(range(1, 201)), "item_id": [1] * 180 + [2] * 10 + [3] * 10,
        "rating": [3.0] * 200, "timestamp": list(range(200))},
        schema={"user_id": pl.Int64, "item_id": pl.Int64, "rating": pl.Float32, "timestamp": pl.Int64})
    items = pl.DataFrame({"item_id": [1, 2, 3], "title": ["a", "b", "c"], "year": [None, None, None],
                          "genres": [["A"], ["B"], ["C"]]},
                         schema={"item_id": pl.Int64, "title": pl.String, "year": pl.Int32, "genres": pl.List(pl.String)})
    # put exactly 1 test rating on item 3 and 9 train; item 2: 10 train; item 1: 171 train, 9 test
    codes = [0] * 171 + [2] * 9 + [0] * 10 + [0] * 9 + [2]
    frame = ratings.with_columns(pl.Series("split", codes, dtype=pl.Int8), pl.lit(True).alias("teacher"))
    table = genre_table(frame, items, SplitConfig(min_test_ratings=1))
    assert table["A"]["train"] == 171 and table["B"]["train_share"] == round(10 / 190, 6)
    assert table["A"]["class"] == "dense" and table["C"]["class"] == "sparse"  # C: 9/190 < 5%, 1 test rating
    assert table["B"]["class"] == "excluded"  # 0 test ratings
    assert genre_table(frame, items, SplitConfig(min_test_ratings=2))["C"]["class"] == "excluded"
    table = genre_table(frame, items, SplitConfig(min_test_ratings=0, sparse_below=10 / 190))
    assert table["B"]["class"] == "dense" and table["C"]["class"] == "sparse"


def test_info_prints_the_genre_table(holdout_split):
    text = info(holdout_split)
    _, _, m = load(holdout_split)
    lines = text.splitlines()
    assert lines[0].startswith("synth  source synth (sha256:")
    assert "holdout Adventure, Crime" in lines[1]
    table = {line.split()[0].rstrip("*"): line.split() for line in lines[7:] if line and not line.startswith("*")}
    assert set(table) == set(m["genres"])
    for genre, row in m["genres"].items():
        cells = table[genre]
        assert cells[1] == row["class"] and [int(x) for x in cells[2:8]] == [
            row["train"], row["val"], row["test"], row["teacher_train"], row["users"], row["items"]]
        assert cells[0].endswith("*") == row["holdout"]
