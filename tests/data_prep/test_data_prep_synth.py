"""The generator: canonical schema, exact sizes, byte-identical reruns, MovieLens-like shape, ratings that a
bias/factor model can learn, and genre-dependent ratings."""
from __future__ import annotations

import json

import numpy as np
import polars as pl
from conftest import SMALL

from data_prep.api import synth
from data_prep.canonical import ITEMS_SCHEMA, RATINGS_SCHEMA
from data_prep.synth import generate


def test_schema_sizes_and_source(small_synth):
    canonical = small_synth / "synth" / "canonical"
    ratings = pl.read_parquet(canonical / "ratings.parquet")
    items = pl.read_parquet(canonical / "items.parquet")
    users = pl.read_parquet(canonical / "users.parquet")
    assert dict(ratings.schema) == RATINGS_SCHEMA and dict(items.schema) == ITEMS_SCHEMA
    assert users.columns == ["user_id", "gender", "age", "occupation", "zip"]
    assert ratings.height == 20_000 and items.height == 200 and users.height == 300
    assert ratings.select("user_id", "item_id").is_unique().all()  # one rating per (user, item)
    assert set(ratings["rating"].unique()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert ratings.equals(ratings.sort("user_id", "timestamp", "item_id"))
    assert items["genres"].list.len().min() >= 1 and items["genres"].list.len().max() <= 3
    assert set(items["genres"].explode()) == {"Drama", "Comedy", "Action", "Thriller", "Romance", "Adventure", "Children's", "Crime"}
    source = json.loads((canonical / "source.json").read_text())
    assert source["source"] == "synth" and source["synth"]["ratings"] == 20_000 and source["checksum"].startswith("sha256:")


def test_rerun_is_byte_identical_and_seed_changes_it(small_synth, tmp_path):
    synth(20_000, 300, 200, 8, 0, name="synth", data_dir=tmp_path)
    for name in ("ratings.parquet", "items.parquet", "users.parquet", "source.json"):
        assert (tmp_path / "synth/canonical" / name).read_bytes() == (small_synth / "synth/canonical" / name).read_bytes()
    other = generate(SMALL.__class__(20_000, 300, 200, 8, seed=1))[0]
    assert not other.equals(pl.read_parquet(small_synth / "synth/canonical/ratings.parquet"))


def test_movielens_like_shape():
    ratings, items, _ = generate(SMALL.__class__(ratings=200_000, genres=18, seed=2))
    per_item = ratings.group_by("item_id").len()["len"]
    assert per_item.max() > 10 * per_item.median()  # power-law popularity: a long head
    per_user = ratings.group_by("user_id").len()["len"]
    assert per_user.max() > 4 * per_user.median()
    assert 3.2 < ratings["rating"].mean() < 3.9 and 0.8 < ratings["rating"].std() < 1.3  # ML-100K: 3.53, 1.13
    assert 1.4 < items["genres"].list.len().mean() < 2.0  # ML-100K: 1.7 genres per movie


def fit_biases(users: np.ndarray, items: np.ndarray, r: np.ndarray, rounds: int = 10, reg: float = 5.0):
    """Global mean + regularised user and item biases by alternating averages."""
    mu = r.mean()
    bu, bi = np.zeros(users.max() + 1), np.zeros(items.max() + 1)
    for _ in range(rounds):
        bi = np.bincount(items, r - mu - bu[users], len(bi)) / (np.bincount(items, minlength=len(bi)) + reg)
        bu = np.bincount(users, r - mu - bi[items], len(bu)) / (np.bincount(users, minlength=len(bu)) + reg)
    return mu, bu, bi


def test_learnable_and_genre_dependent():
    """On a random 80/20 split of the small set: biases beat the global mean clearly, and adding each user's
    mean residual per genre (a user×genre effect) improves on biases: ratings depend on genre per user."""
    ratings, items, _ = generate(SMALL)
    rng = np.random.default_rng(0)
    test = rng.random(ratings.height) < 0.2
    u, i, r = (ratings[c].to_numpy() for c in ("user_id", "item_id", "rating"))
    r = r.astype(np.float64)
    mu, bu, bi = fit_biases(u[~test], i[~test], r[~test])
    rmse = lambda pred: float(np.sqrt(np.mean((r[test] - pred) ** 2)))  # noqa: E731
    global_mean = rmse(np.full(test.sum(), mu))
    biases = rmse(mu + bu[u[test]] + bi[i[test]])

    genre_names = sorted(set(items["genres"].explode()))
    member = np.zeros((items["item_id"].max() + 1, len(genre_names)))
    for item, genres in zip(items["item_id"].to_list(), items["genres"].to_list()):  # 200 items
        member[item, [genre_names.index(g) for g in genres]] = 1 / len(genres)
    residual = r[~test] - (mu + bu[u[~test]] + bi[i[~test]])
    weight = member[i[~test]]
    sums = np.zeros((u.max() + 1, len(genre_names)))
    counts = np.zeros_like(sums)
    np.add.at(sums, u[~test], weight * residual[:, None])
    np.add.at(counts, u[~test], weight)
    affinity = sums / (counts + 3.0)
    with_genre = rmse(mu + bu[u[test]] + bi[i[test]] + (member[i[test]] * affinity[u[test]]).sum(1))

    assert global_mean > 0.95
    assert biases < global_mean - 0.12
    assert with_genre < biases - 0.02
