"""Ranking metrics of a rater on one genre: NDCG@k, Recall@k and HR@k by full ranking.

For each user with test ratings in the genre, every movie of the genre that the user did not rate in
training is a candidate (validation movies included, as unrated to the model); the user's test movies
of the genre are the relevant ones (binary relevance). Users without test ratings in the genre are
not ranked. Ties in the score are broken by movie index (lower first), so the metrics are defined
and deterministic; the metrics themselves are torchmetrics' retrieval metrics, averaged over users.
Full ranking costs users × movies of the genre, so a genre with more than ``max_users`` such users
(1000; none of ML-100K's, whose 943 users are all ranked) is ranked on a fixed random sample of them
(``ranked_users`` says how many).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from torchmetrics.functional.retrieval import retrieval_hit_rate, retrieval_normalized_dcg, retrieval_recall

from reckd.data.split import SplitData
from reckd.errors import ReckdError

Scorer = Callable[[Tensor, Tensor], Tensor]  # (users, items) -> predicted rating, one per pair
METRICS = {"ndcg": retrieval_normalized_dcg, "recall": retrieval_recall, "hr": retrieval_hit_rate}


def metric_names(k: int = 10) -> list[str]:
    return [f"{name}@{k}" for name in METRICS]


def check_metric(name: str) -> tuple[str, int]:
    """``ndcg@10`` -> ("ndcg", 10); ``rmse`` -> ("rmse", 0); anything else is an error naming it."""
    if name == "rmse":
        return name, 0
    base, at, k = name.partition("@")
    if base not in METRICS or not at:
        raise ReckdError(f"--metric: expected rmse or one of {', '.join(m + '@K' for m in METRICS)}, found {name!r}")
    try:
        value = int(k)
    except ValueError:
        raise ReckdError(f"--metric {name}: expected an integer K after @, found {k!r}") from None
    if value <= 0:
        raise ReckdError(f"--metric {name}: expected K ≥ 1, found {value}")
    return base, value


def _member(keys: Tensor, sorted_set: Tensor) -> Tensor:
    """``torch.isin(keys, sorted_set)`` for a sorted set, by binary search (no sort per call)."""
    if sorted_set.numel() == 0:
        return torch.zeros_like(keys, dtype=torch.bool)
    at = torch.searchsorted(sorted_set, keys).clamp(max=sorted_set.numel() - 1)
    return sorted_set[at] == keys


@torch.no_grad()
def ranking_metrics(score: Scorer, data: SplitData, genre: str, k: int = 10, users_per_chunk: int = 256,
                    max_users: int = 1000, seen: Tensor | None = None) -> dict:
    """``{"ndcg@k": …, "recall@k": …, "hr@k": …, "ranked_users": n}`` for ``genre``; above
    ``max_users`` users, a sample of them drawn with a generator seeded by the genre's index. ``seen``:
    every training pair (:meth:`SplitData.train_pairs` of the whole split; by default ``data``'s own,
    which a split holding a share of the training ratings lacks)."""
    if k <= 0:
        raise ReckdError(f"ranking metrics: expected k ≥ 1, found {k}")
    if seen is None:
        if data.partial:
            raise ValueError("ranking_metrics: data holds a share of the training ratings; pass seen, the "
                             "training pairs of the whole split")
        seen = data.train_pairs()
    device = data.rating.device
    test = data.rows("test", genre)
    items = data.item_genre[:, data.genre_index(genre)].nonzero().squeeze(1)
    users = torch.unique(data.user[test])
    if users.numel() > max_users:
        generator = torch.Generator().manual_seed(data.genre_index(genre))
        users = users[torch.randperm(users.numel(), generator=generator)[:max_users].to(device)].sort().values
    relevant = torch.sort(data.user[test] * data.num_items + data.item[test]).values
    sums = {name: 0.0 for name in METRICS}
    for start in range(0, users.numel(), users_per_chunk):
        chunk = users[start:start + users_per_chunk]
        pair_user = chunk.repeat_interleave(items.numel())
        pair_item = items.repeat(chunk.numel())
        keys = pair_user * data.num_items + pair_item
        keep = ~_member(keys, seen)
        pair_user, pair_item, keys = pair_user[keep], pair_item[keep], keys[keep]
        target = _member(keys, relevant)
        scores = score(pair_user, pair_item).float()
        # rank within each user: by score (high first), ties by movie index; pairs are in (user, item) order
        order = torch.argsort(-scores, stable=True)
        order = order[torch.argsort(pair_user[order], stable=True)]
        counts = torch.bincount(torch.searchsorted(chunk, pair_user), minlength=chunk.numel())
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.empty_like(order)
        rank[order] = torch.arange(order.numel(), device=device) - starts.repeat_interleave(counts)
        # only the top k and the relevant movies matter to these metrics: keep just those, per user
        top = (rank < k) | target
        group = torch.searchsorted(chunk, pair_user[top])
        # the per-user metric calls run on the CPU: on a GPU each would wait for the device
        preds, tgt = (-rank[top]).float().cpu(), target[top].cpu()
        bounds = torch.bincount(group, minlength=chunk.numel()).tolist()
        for p, t in zip(torch.split(preds, bounds), torch.split(tgt, bounds)):
            for name, metric in METRICS.items():
                sums[name] += float(metric(p, t, top_k=k))
    n = users.numel()
    if n == 0:
        return {**{f"{name}@{k}": None for name in METRICS}, "ranked_users": 0}
    return {**{f"{name}@{k}": sums[name] / n for name in METRICS}, "ranked_users": int(n)}
