"""Load a ``data_prep split`` directory once into index tensors, and build torchrec batches from them.

Every rating becomes one row of a few flat tensors (user index, item index, rating, split code,
teacher flag). Side features live in per-user and per-item tables, and an item's genres in a CSR
(offsets + values) table, so a batch is a handful of gathers — no per-row Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch import Tensor
from torchrec.datasets.utils import Batch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from data_prep.assign import SPLIT_CODES
from data_prep.atomic import read_json
from reckd.errors import ReckdError
# ML-100K/1M age groups are coarse already on 1M; bucket ages into decades for both.
_AGE_BUCKET_YEARS = 10
_YEAR_BUCKET_YEARS = 5


class SplitError(ReckdError):
    """A split directory that reckd cannot use; the message names the file and what was wrong."""


@dataclass(frozen=True)
class Feature:
    """One sparse feature of the ranker: its KJT key and how many ids it can take."""

    name: str
    cardinality: int


def _codes(values: pl.Series) -> tuple[Tensor, int]:
    """Dense 1-based ids for a column's distinct values (0 is kept for "missing"), sorted so the
    mapping does not depend on row order."""
    uniques = values.drop_nulls().unique().sort()
    mapping = pl.DataFrame({"value": uniques, "code": pl.arange(1, len(uniques) + 1, eager=True)})
    codes = (
        pl.DataFrame({"value": values})
        .join(mapping, on="value", how="left", maintain_order="left")["code"]
        .fill_null(0)
    )
    return torch.from_numpy(codes.to_numpy().astype(np.int64)), len(uniques) + 1


@dataclass
class SplitData:
    """A whole split held in memory as tensors.

    Rows are ratings; ``user``/``item`` are dense 0-based indices into the user and item tables.
    ``user_features``/``item_features`` hold one column per side feature (0 = missing), and
    ``genre_offsets``/``genre_values`` the items' genres in CSR form.
    """

    path: Path
    manifest: dict
    user: Tensor
    item: Tensor
    rating: Tensor
    split: Tensor
    teacher: Tensor
    genres: list[str]
    genre_offsets: Tensor
    genre_values: Tensor
    item_genre: Tensor  # [items, genres] bool
    user_features: dict[str, Tensor]
    item_features: dict[str, Tensor]
    features: list[Feature]
    rating_min: float
    rating_max: float
    rating_step: float
    part: tuple[int, int] | None = None  # (k, n): only the k-th of n shares of the training ratings

    @property
    def partial(self) -> bool:
        """Whether this holds a share of the training ratings only (:func:`load_split`'s ``part``)."""
        return self.part is not None and self.part[1] > 1

    @property
    def num_users(self) -> int:
        return int(self.user_features["user"].numel())

    @property
    def num_items(self) -> int:
        return int(self.item_features["item"].numel())

    @property
    def fingerprint(self) -> str:
        """The split's content fingerprint (``data_prep split`` writes it into manifest.json): what a
        teacher and every run record, so that none is ever mixed with another split's."""
        try:
            return self.manifest["fingerprint"]
        except KeyError:
            raise SplitError(f"{self.path / 'manifest.json'}: expected a 'fingerprint' (written by data_prep "
                             f"split since reckd 0.2), found none; re-run `data_prep split`") from None

    @property
    def levels(self) -> tuple[float, ...]:
        """The rating values c_k of the dataset's scale (1..5, or 0.5..5 in half-stars)."""
        n = round((self.rating_max - self.rating_min) / self.rating_step) + 1
        return tuple(self.rating_min + k * self.rating_step for k in range(n))

    def to(self, device: torch.device | str) -> "SplitData":
        """The same split with every tensor on ``device`` (batches are then built there)."""
        moved = {k: (v.to(device) if isinstance(v, Tensor) else
                     {n: t.to(device) for n, t in v.items()} if isinstance(v, dict) and k.endswith("features")
                     else v) for k, v in self.__dict__.items()}
        return SplitData(**moved)

    def rows(self, split: str, genre: str | None = None, teacher_only: bool = False) -> Tensor:
        """Row indices of a split (``train``/``val``/``test``), optionally of one genre's movies.
        ``teacher_only`` keeps only the teacher's rows: for ``train`` its pre-training set, for
        ``val``/``test`` the ratings of movies outside the holdout genres."""
        mask = self.split == SPLIT_CODES[split]
        if teacher_only:
            mask &= self.teacher if split == "train" else ~self.holdout_item()[self.item]
        if genre is not None:
            mask &= self.item_genre[self.item, self.genre_index(genre)]
        return mask.nonzero().squeeze(1)

    def holdout_item(self) -> Tensor:
        """[items] bool: the movie has a genre that the teacher must never see."""
        holdout = [self.genre_index(g) for g in self.manifest.get("holdout_genres", [])]
        return self.item_genre[:, holdout].any(1)

    def genre_index(self, genre: str) -> int:
        try:
            return self.genres.index(genre)
        except ValueError:
            raise SplitError(
                f"{self.path / 'manifest.json'}: unknown genre {genre!r}; known: {', '.join(self.genres)}"
            ) from None

    def train_pairs(self) -> Tensor:
        """The sorted keys ``user × items + item`` of the training ratings held (the movies each user has
        rated in training, which ranking never proposes)."""
        train = self.rows("train")
        return torch.sort(self.user[train] * self.num_items + self.item[train]).values

    def batch(self, users: Tensor, items: Tensor, labels: Tensor | None = None) -> Batch:
        """A torchrec ``Batch`` for (user, item) pairs: empty dense features, a KeyedJaggedTensor with
        one id per single-valued feature and the movie's genres as a multi-valued bag, and labels."""
        n = users.numel()
        single = {**{k: v[users] for k, v in self.user_features.items()},
                  **{k: v[items] for k, v in self.item_features.items()}}
        starts = self.genre_offsets[items]
        genre_lengths = self.genre_offsets[items + 1] - starts
        total = int(genre_lengths.sum())
        # position of each genre id inside its bag, then its index into genre_values
        bag_start = torch.cumsum(genre_lengths, 0) - genre_lengths
        within = torch.arange(total, device=users.device) - torch.repeat_interleave(
            bag_start, genre_lengths, output_size=total)
        genre_ids = self.genre_values[torch.repeat_interleave(starts, genre_lengths, output_size=total) + within]
        keys, values, lengths = [], [], []
        for feature in self.features:
            keys.append(feature.name)
            if feature.name == "genre":
                values.append(genre_ids)
                lengths.append(genre_lengths)
            else:
                values.append(single[feature.name])
                lengths.append(torch.ones(n, dtype=torch.int64, device=users.device))
        kjt = KeyedJaggedTensor(keys=keys, values=torch.cat(values), lengths=torch.cat(lengths).int())
        if labels is None:
            labels = torch.zeros(n, device=users.device)
        return Batch(dense_features=torch.zeros(n, 0, device=users.device), sparse_features=kjt, labels=labels)

    def batch_rows(self, rows: Tensor) -> Batch:
        """The batch of rating rows ``rows`` (labels = their ratings)."""
        return self.batch(self.user[rows], self.item[rows], self.rating[rows])


def _read_parquet(path: Path, columns: list[str] | None = None, schema: bool = False):
    """The table (or, with ``schema``, its column names), or an error naming the unreadable file."""
    try:
        return list(pl.read_parquet_schema(path)) if schema else pl.read_parquet(path, columns=columns)
    except Exception as error:  # polars raises several types for a truncated or foreign file
        raise SplitError(f"{path}: expected a parquet table written by `data_prep split`, found an unreadable "
                         f"file ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})") from None


def load_split(path: str | Path, part: tuple[int, int] | None = None) -> SplitData:
    """Read ``manifest.json``, ``ratings.parquet``, ``items.parquet`` and ``users.parquet`` of a split.
    ``part=(k, n)`` (a rank of ``torchrun``): of the training ratings only every n-th from the k-th on,
    in the file's order; validation and test ratings, and the user and item tables, whole."""
    path = Path(path)
    for name in ("manifest.json", "ratings.parquet", "items.parquet", "users.parquet"):
        if not (path / name).is_file():
            raise SplitError(f"{path / name}: missing; expected a directory written by `data_prep split`")
    manifest = read_json(path / "manifest.json", "a split manifest")
    ratings, ids = _read_ratings(path / "ratings.parquet", part)
    items = _read_parquet(path / "items.parquet")
    users = _read_parquet(path / "users.parquet")
    # the tables cover every id that occurs in the ratings (all of them, whatever the part), in a fixed order
    user_ids = pl.concat([users["user_id"], ids["user_id"]]).unique().sort()
    item_ids = pl.concat([items["item_id"], ids["item_id"]]).unique().sort()
    users = pl.DataFrame({"user_id": user_ids}).join(users, on="user_id", how="left", maintain_order="left")
    items = pl.DataFrame({"item_id": item_ids}).join(items, on="item_id", how="left", maintain_order="left")

    def index_of(ids: pl.Series, table_ids: pl.Series) -> Tensor:
        return torch.from_numpy(table_ids.search_sorted(ids).to_numpy().astype(np.int64))

    user_features: dict[str, Tensor] = {"user": torch.arange(len(user_ids))}
    item_features: dict[str, Tensor] = {"item": torch.arange(len(item_ids))}
    cardinality = {"user": len(user_ids), "item": len(item_ids)}
    for column in ("gender", "age", "occupation"):
        if column in users.columns:
            values = users[column]
            if column == "age":
                values = values.cast(pl.Int64, strict=False) // _AGE_BUCKET_YEARS
            user_features[column], cardinality[column] = _codes(values)
    if "year" in items.columns:
        years = items["year"].cast(pl.Int64, strict=False) // _YEAR_BUCKET_YEARS
        item_features["year"], cardinality["year"] = _codes(years)

    genres = sorted(manifest["genres"])
    genre_lists = items["genres"].fill_null(pl.lit([], dtype=pl.List(pl.Utf8)))
    exploded = pl.DataFrame({"row": pl.arange(0, len(items), eager=True), "genre": genre_lists}).explode("genre")
    exploded = exploded.filter(pl.col("genre").is_in(genres))
    genre_code = exploded["genre"].replace_strict(genres, list(range(len(genres))), return_dtype=pl.Int64)
    rows = torch.from_numpy(exploded["row"].to_numpy().astype(np.int64))
    codes = torch.from_numpy(genre_code.to_numpy().astype(np.int64))
    item_genre = torch.zeros(len(items), len(genres), dtype=torch.bool)
    item_genre[rows, codes] = True
    counts = item_genre.sum(1)
    offsets = torch.zeros(len(items) + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(counts, 0)
    values = item_genre.nonzero()[:, 1]  # row-major: grouped by item, in genre order
    cardinality["genre"] = len(genres)

    order = ["user", "item", "genre", *[c for c in ("gender", "age", "occupation") if c in user_features],
             *(["year"] if "year" in item_features else [])]
    scale = manifest.get("rating_scale", {"min": 1, "max": 5, "step": 1})
    return SplitData(
        path=path,
        manifest=manifest,
        user=index_of(ratings["user_id"], user_ids),
        item=index_of(ratings["item_id"], item_ids),
        rating=torch.from_numpy(ratings["rating"].cast(pl.Float32).to_numpy().copy()),
        split=torch.from_numpy(ratings["split"].cast(pl.Int8).to_numpy().copy()),
        teacher=torch.from_numpy(ratings["teacher"].to_numpy().copy()),
        genres=genres,
        genre_offsets=offsets,
        genre_values=values,
        item_genre=item_genre,
        user_features=user_features,
        item_features=item_features,
        features=[Feature(name, cardinality[name]) for name in order],
        rating_min=float(scale["min"]),
        rating_max=float(scale["max"]),
        rating_step=float(scale["step"]),
        part=part,
    )


def _read_ratings(path: Path, part: tuple[int, int] | None) -> tuple[pl.DataFrame, dict[str, pl.Series]]:
    """The ratings table (with ``part``, its training rows of that share only) and the distinct user and
    item ids of the whole table. A part is read a column at a time, so no more than one whole column
    is ever held beside it."""
    need = ("user_id", "item_id", "rating", "split", "teacher")
    columns = _read_parquet(path, schema=True)
    if missing := set(need) - set(columns):
        raise SplitError(f"{path}: missing columns {sorted(missing)}; found {columns}")
    if part is None or part[1] == 1:
        ratings = _read_parquet(path)
        return ratings, {"user_id": ratings["user_id"].unique(), "item_id": ratings["item_id"].unique()}
    k, n = part
    if not 0 <= k < n:
        raise ValueError(f"part: expected (k, n) with 0 <= k < n, found {part}")
    split = _read_parquet(path, ["split"])["split"]
    train = split == SPLIT_CODES["train"]
    keep = ~train | ((train.cast(pl.Int64).cum_sum() - 1) % n == k)  # the k-th, (k+n)-th, … training row
    ids, kept = {}, {}
    for column in need:
        values = _read_parquet(path, [column])[column]
        if column in ("user_id", "item_id"):
            ids[column] = values.unique()
        kept[column] = values.filter(keep)
    return pl.DataFrame(kept), ids
