"""Unrated (user, movie) pairs of a genre, for teacher-labelled augmentation."""

from __future__ import annotations

import torch
from torch import Tensor

from reckd.data.split import SplitData
from reckd.errors import ReckdError

# Popularity-weighted draws before the exact fallback. ML-100K at --augment 4 needs at most 23 (Action); at
# the default --augment 16, 10 of its 18 genres have fewer unrated pairs than asked and take all of them,
# which the fallback finishes in one step instead of stalling.
_ROUNDS = 64
_EXACT_LIMIT = 1 << 24  # torch.multinomial's category limit


def sample_unrated(data: SplitData, genre: str, count: int, seed: int) -> tuple[Tensor, Tensor]:
    """Up to ``count`` distinct (user, item) pairs with the item in ``genre`` and no rating in any split
    (so augmentation never touches a validation or test pair). Users and items are drawn in proportion
    to their training ratings (plus one), so the pairs follow the popularity of the rated ones rather
    than the long tail that the teacher knows least.

    When the genre has fewer unrated pairs than ``count``, all of them are returned (the caller reports
    the shortfall). Never stalls: after a few rounds of popularity-weighted draws, the rest is drawn
    exactly, without replacement, from the pairs not chosen yet."""
    generator = torch.Generator().manual_seed(seed)
    train = data.rows("train").cpu()
    in_genre = data.item_genre[:, data.genre_index(genre)].cpu()
    user_weight = torch.bincount(data.user[train].cpu(), minlength=data.num_users).double() + 1
    item_weight = (torch.bincount(data.item[train].cpu(), minlength=data.num_items).double() + 1) * in_genre
    rated = torch.unique(data.user.cpu() * data.num_items + data.item.cpu())
    free = data.num_users * int(in_genre.sum()) - int(in_genre[rated % data.num_items].sum())
    count = min(count, free)
    keys = torch.empty(0, dtype=torch.int64)
    for _ in range(_ROUNDS):
        if keys.numel() >= count:
            break
        n = 2 * (count - keys.numel()) + 16
        users = torch.multinomial(user_weight, n, replacement=True, generator=generator)
        items = torch.multinomial(item_weight, n, replacement=True, generator=generator)
        new = users * data.num_items + items
        keys = _first_unique(torch.cat([keys, new[~torch.isin(new, rated)]]))
    if keys.numel() < count:
        keys = torch.cat([keys, _exact(data, in_genre, user_weight, item_weight, torch.cat([rated, keys]),
                                       count - keys.numel(), generator, genre)])
    keys = keys[:count]
    device = data.rating.device
    return (keys // data.num_items).to(device), (keys % data.num_items).to(device)


def _exact(data: SplitData, in_genre: Tensor, user_weight: Tensor, item_weight: Tensor, taken: Tensor,
           count: int, generator: torch.Generator, genre: str) -> Tensor:
    """``count`` more pairs, weighted without replacement, from every genre pair not in ``taken``."""
    items = in_genre.nonzero().squeeze(1)
    if data.num_users * items.numel() > _EXACT_LIMIT:
        raise ReckdError(f"--augment: genre {genre!r} has too few unrated pairs left to draw {count} more by "
                         f"sampling, and too many ({data.num_users} users × {items.numel()} movies) to list; "
                         f"use a smaller --augment")
    keys = (torch.arange(data.num_users).unsqueeze(1) * data.num_items + items).reshape(-1)
    weight = (user_weight.unsqueeze(1) * item_weight[items]).reshape(-1)
    keep = ~torch.isin(keys, taken)
    keys, weight = keys[keep], weight[keep]
    if count >= keys.numel():
        return keys
    return keys[torch.multinomial(weight, count, replacement=False, generator=generator)]


def _first_unique(keys: Tensor) -> Tensor:
    """``keys`` without repeats, keeping the first occurrence and the order (deterministic)."""
    unique, inverse = torch.unique(keys, return_inverse=True)
    first = torch.full((unique.numel(),), keys.numel(), dtype=torch.int64).scatter_reduce(
        0, inverse, torch.arange(keys.numel()), reduce="amin")
    return keys[torch.sort(first).values]
