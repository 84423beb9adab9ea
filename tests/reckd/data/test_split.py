"""The split loader and batcher against tables read independently with polars."""

from __future__ import annotations

import polars as pl
import pytest
import torch

from reckd.data.split import SplitError, load_split


def test_batch_reproduces_hand_built_kjt(synth_split, synth_data):
    ratings = pl.read_parquet(synth_split / "ratings.parquet")
    items = pl.read_parquet(synth_split / "items.parquet")
    users = pl.read_parquet(synth_split / "users.parquet")
    user_ids = sorted(set(users["user_id"]) | set(ratings["user_id"]))
    item_ids = sorted(set(items["item_id"]) | set(ratings["item_id"]))
    genres = synth_data.genres
    item_genres = dict(zip(items["item_id"], items["genres"]))
    picks = [0, 7, 123, 4567]
    batch = synth_data.batch_rows(torch.tensor(picks))
    got = batch.sparse_features.to_dict()

    expected_users = [user_ids.index(ratings["user_id"][r]) for r in picks]
    expected_items = [item_ids.index(ratings["item_id"][r]) for r in picks]
    assert got["user"].values().tolist() == expected_users
    assert got["item"].values().tolist() == expected_items
    assert got["user"].lengths().tolist() == [1, 1, 1, 1]
    bags = [sorted(genres.index(g) for g in item_genres[ratings["item_id"][r]]) for r in picks]
    assert got["genre"].lengths().tolist() == [len(b) for b in bags]
    assert got["genre"].values().tolist() == [g for b in bags for g in b]
    assert batch.labels.tolist() == [ratings["rating"][r] for r in picks]
    # side features: the same user always gets the same gender code, distinct genders distinct codes
    genders = dict(zip(users["user_id"], users["gender"]))
    codes = synth_data.user_features["gender"]
    by_gender = {}
    for uid, index in zip(user_ids, range(len(user_ids))):
        by_gender.setdefault(genders[uid], set()).add(int(codes[index]))
    assert all(len(c) == 1 for c in by_gender.values()) and len(by_gender) == len(
        set.union(*by_gender.values()))
    assert batch.sparse_features.keys() == [f.name for f in synth_data.features]


def test_genre_view_selects_the_genres_ratings(synth_split, synth_data):
    ratings = pl.read_parquet(synth_split / "ratings.parquet").with_row_index("row")
    items = pl.read_parquet(synth_split / "items.parquet")
    genre = synth_data.genres[1]
    in_genre = items.filter(pl.col("genres").list.contains(genre))["item_id"]
    for name, code in (("train", 0), ("val", 1), ("test", 2)):
        expected = ratings.filter(pl.col("item_id").is_in(in_genre.implode()) & (pl.col("split") == code))["row"]
        assert synth_data.rows(name, genre).tolist() == expected.to_list()
    assert synth_data.rows("train", teacher_only=True).numel() == synth_data.manifest["counts"]["teacher_train"]


def test_levels_and_missing_files(synth_data, tmp_path):
    assert synth_data.levels == (1.0, 2.0, 3.0, 4.0, 5.0)
    with pytest.raises(SplitError, match="manifest.json: missing"):
        load_split(tmp_path)
    with pytest.raises(SplitError, match="unknown genre 'Nope'"):
        synth_data.rows("train", "Nope")


def test_parts_share_the_training_ratings_and_hold_the_rest_whole(synth_split, synth_data):
    """What each rank of ``torchrun`` reads: its share of the training ratings, every other rating, and
    the user and item tables of the whole split (the same ids and feature codes on every rank)."""
    whole = synth_data
    parts = [load_split(synth_split, part=(k, 3)) for k in range(3)]
    train = whole.rows("train")
    keys = lambda d, rows: set(zip(d.user[rows].tolist(), d.item[rows].tolist(), d.rating[rows].tolist()))
    shares = [keys(p, p.rows("train")) for p in parts]
    assert set.union(*shares) == keys(whole, train) and sum(map(len, shares)) == train.numel()
    assert max(map(len, shares)) - min(map(len, shares)) <= 1  # every n-th training rating
    # the k-th share is the k-th, (k+3)-th, … training rating of the file
    assert torch.equal(parts[1].user[parts[1].rows("train")], whole.user[train[1::3]])
    for p in parts:
        assert p.partial and p.features == whole.features
        assert all(torch.equal(p.user_features[f], whole.user_features[f]) for f in whole.user_features)
        assert torch.equal(p.genre_offsets, whole.genre_offsets) and p.fingerprint == whole.fingerprint
        for split in ("val", "test"):
            assert torch.equal(p.user[p.rows(split)], whole.user[whole.rows(split)])
            assert torch.equal(p.rating[p.rows(split)], whole.rating[whole.rows(split)])
    everything = torch.sort(torch.cat([p.train_pairs() for p in parts])).values
    assert torch.equal(everything, whole.train_pairs())
    assert not load_split(synth_split, part=(0, 1)).partial
