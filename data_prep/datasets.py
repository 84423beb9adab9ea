"""The MovieLens releases data_prep knows: archive name, GroupLens' published MD5, file layout, rating scale."""
from __future__ import annotations

from dataclasses import dataclass

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/"

# ML-100K's genre flags, in u.genre order (u.item columns 6..24).
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)


@dataclass(frozen=True)
class RatingScale:
    """Ratings lie in [min, max] on a grid of `step` (1 for whole stars, 0.5 for half stars)."""

    min: float
    max: float
    step: float

    def as_dict(self) -> dict[str, float]:
        return {"min": self.min, "max": self.max, "step": self.step}


WHOLE_STARS = RatingScale(1.0, 5.0, 1.0)
HALF_STARS = RatingScale(0.5, 5.0, 0.5)


@dataclass(frozen=True)
class DatasetSpec:
    """One official release. `md5` is the value GroupLens publishes in `ARCHIVE.md5`; None means it is
    read from that sidecar at download time (the `ml-latest-*` archives change with every refresh)."""

    name: str
    layout: str  # "ml-100k" | "ml-1m" | "ml-10m" | "csv"
    scale: RatingScale
    md5: str | None

    @property
    def archive(self) -> str:
        return f"{self.name}.zip"

    @property
    def url(self) -> str:
        return GROUPLENS_URL + self.archive


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec("ml-100k", "ml-100k", WHOLE_STARS, "0e33842e24a9c977be4e0107933c0723"),
        DatasetSpec("ml-1m", "ml-1m", WHOLE_STARS, "c4d9eecfca2ab87c1945afe126590906"),
        DatasetSpec("ml-10m", "ml-10m", HALF_STARS, "ce571fd55effeba0271552578f2648bd"),
        DatasetSpec("ml-20m", "csv", HALF_STARS, "cd245b17a1ae2cc31bb14903e1204af3"),
        DatasetSpec("ml-25m", "csv", HALF_STARS, "6b51fb2759a8657d3bfcbfc42b592ada"),
        DatasetSpec("ml-32m", "csv", HALF_STARS, "d472be332d4daa821edc399621853b57"),
        DatasetSpec("ml-latest-small", "csv", HALF_STARS, None),
    )
}

# Files each layout needs, by base name (archives nest them under a folder such as `ml-10M100K/`).
LAYOUT_FILES: dict[str, tuple[str, ...]] = {
    "ml-100k": ("u.data", "u.item", "u.user"),
    "ml-1m": ("ratings.dat", "movies.dat", "users.dat"),
    "ml-10m": ("ratings.dat", "movies.dat"),
    "csv": ("ratings.csv", "movies.csv"),
}


def spec_for(dataset: str, flag: str = "DATASET") -> DatasetSpec:
    """The spec for an official dataset name, or a DataPrepError that lists the known names."""
    from data_prep.errors import DataPrepError

    if dataset not in DATASETS:
        raise DataPrepError(
            f"{flag}: unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}"
        )
    return DATASETS[dataset]
