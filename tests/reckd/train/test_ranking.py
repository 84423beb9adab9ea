"""Ranking metrics (NDCG@k, Recall@k, HR@k by full ranking) against an example worked by hand."""

from __future__ import annotations

import json
import math

import polars as pl
import pytest
import torch

from reckd.data.split import load_split
from reckd.errors import ReckdError
from reckd.train.ranking import check_metric, ranking_metrics


@pytest.fixture
def tiny(tmp_path):
    """Users 1-3, movies 10-14; movies 10-13 are genre A, 14 is genre B.
    user 1: trains on 10, tests on 11 and 13;  user 2: trains on 11, tests on 14 (genre B only);
    user 3: trains on 10 and 11, validates on 13, tests on 12."""
    rows = [(1, 10, 0), (1, 11, 2), (1, 13, 2), (2, 11, 0), (2, 14, 2), (3, 10, 0), (3, 11, 0), (3, 13, 1),
            (3, 12, 2)]
    pl.DataFrame({"user_id": [r[0] for r in rows], "item_id": [r[1] for r in rows],
                  "rating": [4.0] * len(rows), "timestamp": list(range(len(rows))),
                  "split": pl.Series([r[2] for r in rows], dtype=pl.Int8),
                  "teacher": [r[2] == 0 for r in rows]}).write_parquet(tmp_path / "ratings.parquet")
    pl.DataFrame({"item_id": [10, 11, 12, 13, 14], "title": ["a", "b", "c", "d", "e"],
                  "year": pl.Series([1990] * 5, dtype=pl.Int32),
                  "genres": [["A"], ["A"], ["A"], ["A"], ["B"]]}).write_parquet(tmp_path / "items.parquet")
    pl.DataFrame({"user_id": [1, 2, 3]}).write_parquet(tmp_path / "users.parquet")
    (tmp_path / "manifest.json").write_text(json.dumps({"genres": {"A": {"class": "dense"}, "B": {"class": "sparse"}},
                                                        "fingerprint": "sha256:tiny"}))
    return load_split(tmp_path)


def _scorer(table: dict[tuple[int, int], float], data):
    """Scores by (user id, movie id), looked up for index pairs."""
    user_ids, item_ids = [1, 2, 3], [10, 11, 12, 13, 14]

    def score(users, items):
        return torch.tensor([table[user_ids[u], item_ids[i]] for u, i in zip(users.tolist(), items.tolist())])
    return score


def test_full_ranking_by_hand(tiny):
    # user 1 ranks 11, 12, 13 (10 was trained on): 12 (4.0), then the tie 11 = 13 (3.0) broken by movie
    # index -> 12, 11, 13. At k=2: one of two relevant in the top 2, at rank 2.
    # user 2 has no test movie of genre A: not ranked. user 3 ranks 12, 13 (13 is validation, so unrated
    # to the model): the tie 12 = 13 (5.0) puts 12, the relevant one, first.
    table = {(1, 11): 3.0, (1, 12): 4.0, (1, 13): 3.0, (3, 12): 5.0, (3, 13): 5.0}
    got = ranking_metrics(_scorer(table, tiny), tiny, "A", k=2)
    ndcg_user1 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert got["ranked_users"] == 2
    assert got["ndcg@2"] == pytest.approx((ndcg_user1 + 1.0) / 2, abs=1e-6)
    assert got["recall@2"] == pytest.approx((0.5 + 1.0) / 2)
    assert got["hr@2"] == pytest.approx(1.0)
    # k=1: user 1's top movie (12) is not relevant
    got = ranking_metrics(_scorer(table, tiny), tiny, "A", k=1)
    assert got["ndcg@1"] == pytest.approx(0.5) and got["recall@1"] == pytest.approx(0.5)
    assert got["hr@1"] == pytest.approx(0.5)


def test_genre_with_one_user_and_bad_metric_names(tiny):
    got = ranking_metrics(_scorer({(2, 14): 1.0}, tiny), tiny, "B", k=10)
    assert got == {"ndcg@10": 1.0, "recall@10": 1.0, "hr@10": 1.0, "ranked_users": 1}
    assert check_metric("ndcg@10") == ("ndcg", 10) and check_metric("rmse") == ("rmse", 0)
    for bad, message in (("map@10", "expected rmse or one of"), ("ndcg@0", "K ≥ 1"), ("ndcg@x", "integer K")):
        with pytest.raises(ReckdError, match=message):
            check_metric(bad)


def test_user_sample_above_max_users(tiny):
    # max_users=1: one of the two ranked users (user 1: 0.5 recall@2 / user 3: 1.0), the same one every time
    table = {(1, 11): 3.0, (1, 12): 4.0, (1, 13): 3.0, (3, 12): 5.0, (3, 13): 5.0}
    first = ranking_metrics(_scorer(table, tiny), tiny, "A", k=2, max_users=1)
    assert first["ranked_users"] == 1 and first["recall@2"] in (0.5, 1.0)
    assert ranking_metrics(_scorer(table, tiny), tiny, "A", k=2, max_users=1) == first
    assert ranking_metrics(_scorer(table, tiny), tiny, "A", k=2, max_users=2)["ranked_users"] == 2


def test_membership_by_binary_search_equals_isin():
    from reckd.train.ranking import _member

    generator = torch.Generator().manual_seed(0)
    keys, pool = torch.randint(0, 50, (200,), generator=generator), torch.randint(0, 50, (30,), generator=generator)
    assert torch.equal(_member(keys, torch.sort(pool).values), torch.isin(keys, pool))
    assert not _member(keys, torch.empty(0, dtype=torch.long)).any()
