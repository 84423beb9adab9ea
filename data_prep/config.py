"""The settings of a split: `SplitConfig` (scheme, seed, validation and test fractions, holdout genres and
the genre-class thresholds, checked once with errors that name the flag), their defaults, and the parser of
`--holdout-genres`. (The generator's settings, `SynthConfig`, live with it in `data_prep.synth`.)"""
from __future__ import annotations

from dataclasses import dataclass

from data_prep.errors import DataPrepError

SCHEMES = ("random", "temporal")
DEFAULT_MIN_TEST_RATINGS = 20
DEFAULT_SPARSE_BELOW = 0.05


@dataclass(frozen=True)
class SplitConfig:
    """How ratings are assigned to train/val/test and how genres are classed.

    random: exactly round(test·n) ratings, drawn uniformly with `seed`, go to test and round(val·n) to val.
    temporal: per user, the latest round(test·n_u) ratings (by timestamp, then item id) go to test and the
    round(val·n_u) before them to val, so every split is the future of that user's training ratings.
    """

    scheme: str = "random"
    seed: int = 0
    val: float = 0.1
    test: float = 0.1
    holdout_genres: tuple[str, ...] = ()
    sparse_below: float = DEFAULT_SPARSE_BELOW
    min_test_ratings: int = DEFAULT_MIN_TEST_RATINGS

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise DataPrepError(f"--scheme: expected one of {', '.join(SCHEMES)}, found {self.scheme!r}")
        if not (0 < self.val < 1):  # reckd needs validation ratings for early stopping
            raise DataPrepError(f"--val: expected a fraction in (0, 1) (validation ratings pick the best epoch), "
                                f"found {self.val}")
        if not (0 < self.test < 1):
            raise DataPrepError(f"--test: expected a fraction in (0, 1), found {self.test}")
        if self.val + self.test >= 1:
            raise DataPrepError(
                f"--val/--test: expected fractions that sum below 1 (train keeps the rest), "
                f"found {self.val} + {self.test} = {self.val + self.test:g}"
            )
        if not (0 < self.sparse_below < 1):
            raise DataPrepError(f"--sparse-below: expected a share in (0, 1), found {self.sparse_below}")
        if self.min_test_ratings < 0:
            raise DataPrepError(f"--min-test-ratings: expected a count ≥ 0, found {self.min_test_ratings}")
        for position, genre in enumerate(self.holdout_genres, start=1):
            if not genre.strip():
                raise DataPrepError(
                    f"--holdout-genres: expected genre names separated by commas, found an empty name at "
                    f"position {position} in {','.join(self.holdout_genres)!r}"
                )

    def rule_text(self) -> str:
        return (
            f"A genre is 'excluded' when it has fewer than {self.min_test_ratings} test ratings, else 'sparse' "
            f"when its training ratings are fewer than {self.sparse_below:.4g} of all training ratings, else "
            f"'dense'; a rating counts toward every genre of its movie."
        )


def parse_genre_list(text: str | None) -> tuple[str, ...]:
    """`Action,Film-Noir` → ("Action", "Film-Noir"); names keep inner spaces, lose outer ones."""
    if text is None or text == "":
        return ()
    return tuple(name.strip() for name in text.split(","))
