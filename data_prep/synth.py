"""A MovieLens-like generator writing the canonical schema, so tests and scale benchmarks need no download.

Shape: item popularity follows a power law (weight ∝ rank^-1), user activity is log-normal, both capped
at half of the other side so popular items do not need more users than exist. Each item has 1-3 genres
drawn with power-law genre popularity ∝ rank^-α, α = ln 100 / ln G: the last genre is 100 times rarer
than the first whatever G is, so even 8 genres give 2-3 sparse ones (< 5% of training ratings). A rating is

    r*  = μ + b_u + b_i + mean_{g∈G(i)} (b_g + a_ug) + p_u·q_i + ε,    q_i = mean_{g∈G(i)} c_g + e_i
    r   = clip(round(r*), 1, 5)

with user/item/genre biases, user-genre affinities a_ug (shifted by gender), latent factors whose item
side is centred on genre centroids, and Gaussian noise ε. All draws come from one seeded generator."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl

from data_prep import paths
from data_prep.canonical import COMMAND, LEGACY, RATINGS_ORDER, write_canonical
from data_prep.datasets import ML100K_GENRES, WHOLE_STARS
from data_prep.errors import DataPrepError
from data_prep.folder import claim

# ML genres from most to least common (ML-100K), so `--genres 8` gives Drama … Children's.
GENRE_NAMES = ("Drama", "Comedy", "Action", "Thriller", "Romance", "Adventure", "Children's", "Crime",
               "Sci-Fi", "Horror", "War", "Mystery", "Musical", "Documentary", "Animation", "Western",
               "Film-Noir", "Fantasy")
assert set(GENRE_NAMES) == set(ML100K_GENRES) - {"unknown"}
OCCUPATIONS = ("student", "other", "educator", "engineer", "programmer", "administrator", "writer",
               "librarian", "technician", "executive", "healthcare", "artist", "retired", "none")
T0, T1 = 946_684_800, 1_577_836_800  # 2000-01-01 … 2020-01-01 (unix seconds)
DENSE_CELLS = 20_000_000  # below this many user×item cells, sample exactly without replacement
CHUNK = 2_000_000


@dataclass(frozen=True)
class SynthConfig:
    """Sizes and seed. Users default to ratings/106 and items to 5.3·√ratings, which reproduces ML-100K
    (943 users, 1682 items) and keeps larger sets about as sparse as ML-1M…25M."""

    ratings: int
    users: int | None = None
    items: int | None = None
    genres: int = 18
    seed: int = 0
    factors: int = 8
    noise: float = 0.6

    def __post_init__(self) -> None:
        if self.ratings < 1:
            raise DataPrepError(f"--ratings: expected a count ≥ 1, found {self.ratings}")
        for flag, value in (("--users", self.users), ("--items", self.items)):
            if value is not None and value < 1:
                raise DataPrepError(f"{flag}: expected a count ≥ 1, found {value}")
        if not (1 <= self.genres <= 100):
            raise DataPrepError(f"--genres: expected 1..100, found {self.genres}")
        if self.n_users * self.n_items < self.ratings:
            raise DataPrepError(
                f"--ratings: expected at most users×items = {self.n_users}×{self.n_items} = "
                f"{self.n_users * self.n_items} (one rating per pair), found {self.ratings}"
            )

    @property
    def n_users(self) -> int:
        return self.users if self.users is not None else max(10, round(self.ratings / 106))

    @property
    def n_items(self) -> int:
        return self.items if self.items is not None else max(10, round(5.3 * math.sqrt(self.ratings)))


def genre_names(n: int) -> list[str]:
    return [GENRE_NAMES[g] if g < len(GENRE_NAMES) else f"Genre {g + 1}" for g in range(n)]


def capped(weights: np.ndarray, total: int, cap: float) -> np.ndarray:
    """Probabilities ∝ weights, with no element expected more than `cap` times in `total` draws."""
    p = weights / weights.sum()
    for _ in range(50):
        over = p * total > cap
        if not over.any():
            break
        free = ~over
        p[over] = cap / total
        p[free] *= (1 - p[over].sum()) / p[free].sum()
    return p


def item_genre_matrix(rng: np.random.Generator, items: int, genres: int) -> np.ndarray:
    """[items, genres] bool: 1 + Binomial(2, 0.35) genres per item, drawn without replacement with
    popularity ∝ rank^-α, α = ln 100 / ln G (Gumbel top-k)."""
    alpha = math.log(100) / math.log(genres) if genres > 1 else 0.0
    log_q = -alpha * np.log(np.arange(1, genres + 1))
    scores = log_q + rng.gumbel(size=(items, genres))
    ranked = np.argsort(-scores, axis=1)
    k = np.minimum(1 + rng.binomial(2, 0.35, size=items), genres)
    member = np.zeros((items, genres), dtype=bool)
    take = np.arange(genres)[None, :] < k[:, None]
    member[np.repeat(np.arange(items), genres)[take.ravel()], ranked[take]] = True
    return member


def distinct(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (sort + neighbour test: numpy 2.4's np.unique is ~50× slower here)."""
    ordered = np.sort(values)
    keep = np.ones(len(ordered), dtype=bool)
    keep[1:] = ordered[1:] != ordered[:-1]
    return ordered[keep]


def sample_pairs(rng: np.random.Generator, p_user: np.ndarray, p_item: np.ndarray, n: int) -> np.ndarray:
    """`n` distinct cells u·I + i with probability ∝ p_user[u]·p_item[i], sorted."""
    users, items = len(p_user), len(p_item)
    if users * items <= DENSE_CELLS:  # exact weighted sampling without replacement (Gumbel top-n)
        scores = (np.log(p_user)[:, None] + np.log(p_item)[None, :]).ravel().astype(np.float32)
        scores += rng.gumbel(size=scores.size).astype(np.float32)
        return np.sort(np.argpartition(-scores, n - 1)[:n]).astype(np.int64)
    cells = np.empty(0, dtype=np.int64)
    for _ in range(100):  # redraw the duplicates until n distinct cells exist
        missing = n - len(cells)
        if missing <= 0:
            break
        draw = math.ceil(missing * 1.05) + 16
        fresh = rng.choice(users, size=draw, p=p_user) * items + rng.choice(items, size=draw, p=p_item)
        cells = distinct(np.concatenate([cells, fresh]))
    if len(cells) < n:
        raise DataPrepError(f"--ratings: could not place {n} distinct ratings; lower --ratings or raise --users/--items")
    return np.sort(rng.choice(cells, size=n, replace=False)) if len(cells) > n else cells


def generate(config: SynthConfig) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(ratings, items, users) in the canonical schema and order."""
    rng = np.random.default_rng(config.seed)
    n, users, items, genres, d = config.ratings, config.n_users, config.n_items, config.genres, config.factors
    names = genre_names(genres)

    member = item_genre_matrix(rng, items, genres)
    share = member / member.sum(1, keepdims=True)  # mean over an item's genres
    item_weight = rng.permutation(np.arange(1, items + 1, dtype=np.float64) ** -1.0)
    user_weight = rng.lognormal(0.0, 1.0, size=users)
    p_item = capped(item_weight, n, 0.5 * users)
    p_user = capped(user_weight, n, 0.5 * items)
    cells = sample_pairs(rng, p_user, p_item, n)
    u, i = cells // items, cells % items

    female = rng.random(users) < 0.29
    genre_bias = rng.normal(0, 0.25, genres)
    affinity = rng.normal(0, 0.45, (users, genres)) + np.outer(female, rng.normal(0, 0.2, genres))
    centroids = rng.normal(0, 0.42, (genres, d))
    user_side = np.hstack([rng.normal(0, 0.42, (users, d)), affinity]).astype(np.float32)
    item_side = np.hstack([share @ centroids + rng.normal(0, 0.2, (items, d)), share]).astype(np.float32)
    popularity = np.log(item_weight)
    user_bias = rng.normal(0, 0.4, users)
    item_bias = rng.normal(0, 0.45, items) + 0.15 * (popularity - popularity.mean()) / popularity.std() + share @ genre_bias

    rating = np.empty(n, dtype=np.float32)
    for start in range(0, n, CHUNK):
        uu, ii = u[start:start + CHUNK], i[start:start + CHUNK]
        raw = (3.55 + user_bias[uu] + item_bias[ii] + np.einsum("ij,ij->i", user_side[uu], item_side[ii])
               + rng.normal(0, config.noise, len(uu)))
        rating[start:start + CHUNK] = np.clip(np.rint(raw), WHOLE_STARS.min, WHOLE_STARS.max)

    span = np.minimum(rng.exponential(2 * 365 * 86_400, users), T1 - T0 - 1)
    start_time = T0 + rng.random(users) * (T1 - T0 - span)
    timestamp = (start_time[u] + rng.random(n) * span[u]).astype(np.int64)

    ratings = pl.DataFrame({"user_id": u + 1, "item_id": i + 1, "rating": rating, "timestamp": timestamp}).sort(RATINGS_ORDER)
    genre_lists = [[names[g] for g in np.flatnonzero(row)] for row in member]  # one list per item, not per rating
    item_table = pl.DataFrame({
        "item_id": np.arange(1, items + 1, dtype=np.int64),
        "title": [f"Synthetic Movie {k}" for k in range(1, items + 1)],
        "year": (2019 - np.minimum(rng.exponential(15, items), 89)).astype(np.int32),
        "genres": pl.Series(genre_lists, dtype=pl.List(pl.String)),
    })
    user_table = pl.DataFrame({
        "user_id": np.arange(1, users + 1, dtype=np.int64),
        "gender": np.where(female, "F", "M"),
        "age": rng.integers(7, 74, users).astype(np.int32),
        "occupation": np.array(OCCUPATIONS)[rng.integers(0, len(OCCUPATIONS), users)],
        "zip": [f"{z:05d}" for z in rng.integers(0, 100_000, users)],
    })
    return ratings, item_table, user_table


def synth(config: SynthConfig, name: str = "synth", data_dir: str | Path | None = None) -> Path:
    """Generate and write `DATA_DIR/NAME/canonical/`; returns that folder."""
    from data_prep.datasets import DATASETS

    if name in DATASETS or not name or "/" in name or name.startswith("."):
        raise DataPrepError(f"--name: expected a plain folder name that is not an official dataset, found {name!r}")
    with claim(paths.canonical_dir(name, paths.data_dir(data_dir)), COMMAND, "--name", LEGACY) as canonical:
        ratings, items, users = generate(config)
        source = {"dataset": name, "source": "synth", "checksum": None, "layout": "synth",
                  "rating_scale": WHOLE_STARS.as_dict(), "synth": asdict(config)}
        return write_canonical(canonical, ratings, items, users, source)
