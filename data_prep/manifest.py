"""The manifest of a split folder (`manifest.json`): built by `split`, read back (checked, naming the file)
and shown as text by `info` — the genre table with counts and classes."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from data_prep.assign import SPLIT_CODES, TEST, TRAIN, VAL
from data_prep.atomic import read_json
from data_prep.config import SplitConfig
from data_prep.fingerprint import split_fingerprint
from data_prep.table import render_table

FORMAT = 2  # 2: adds fingerprint, split_codes, teacher_flag
TEACHER_FLAG = ("true: a training rating (split 0) of a movie with no holdout genre, i.e. the teacher's "
                "pre-training set; false: every other rating")
MANIFEST_KEYS = ("dataset", "source", "source_checksum", "scheme", "seed", "val", "test", "holdout_genres",
                 "counts", "rule", "genres")  # what `info` shows
COLUMNS = ("genre", "class", "train", "val", "test", "teacher", "users", "items", "share")


def split_manifest(dataset: str, source: dict[str, Any], config: SplitConfig, ratings: pl.DataFrame,
                   genres: dict[str, Any]) -> dict[str, Any]:
    """The manifest of a split: what made it (source, rule), its counts and genre table, its fingerprint and
    the meaning of its `split` and `teacher` columns."""
    split = ratings["split"]
    return {
        "format": FORMAT,
        "dataset": dataset,
        "source": source["source"],
        "source_checksum": source["checksum"],
        "scheme": config.scheme,
        "seed": config.seed,
        "val": config.val,
        "test": config.test,
        "holdout_genres": sorted(config.holdout_genres),
        "rating_scale": source["rating_scale"],
        "rule": {"sparse_below_share": config.sparse_below, "min_test_ratings": config.min_test_ratings,
                 "text": config.rule_text()},
        "counts": {
            "ratings": ratings.height, "train": int((split == TRAIN).sum()), "val": int((split == VAL).sum()),
            "test": int((split == TEST).sum()), "teacher_train": int(ratings["teacher"].sum()),
            "users": ratings["user_id"].n_unique(), "items": ratings["item_id"].n_unique(),
        },
        "genres": genres,
        "fingerprint": split_fingerprint(ratings, config, source["rating_scale"]),
        "split_codes": {str(code): name for name, code in SPLIT_CODES.items()},
        "teacher_flag": TEACHER_FLAG,
    }


def read_manifest(split_dir: str | Path) -> dict:
    """A split folder's manifest.json; missing, malformed or lacking what `info` shows: an error naming it."""
    return read_json(Path(split_dir) / "manifest.json", "a split manifest (written by `data_prep split`)", MANIFEST_KEYS)


def info(split_dir: str | Path) -> str:
    """A header (dataset, source, scheme, counts, rule) and one row per genre, most training ratings first;
    holdout genres are marked `*`."""
    m = read_manifest(split_dir)
    c = m["counts"]
    rows = [
        (f"{g}{'*' if v['holdout'] else ''}", v["class"], v["train"], v["val"], v["test"], v["teacher_train"],
         v["users"], v["items"], f"{100 * v['train_share']:.2f}%")
        for g, v in sorted(m["genres"].items(), key=lambda kv: (-kv[1]["train"], kv[0]))
    ]
    lines = [
        f"{m['dataset']}  source {m['source']} ({m['source_checksum']})",
        f"scheme {m['scheme']}  seed {m['seed']}  val {m['val']}  test {m['test']}  "
        f"holdout {', '.join(m['holdout_genres']) or 'none'}",
        f"ratings {c['ratings']}  train {c['train']}  val {c['val']}  test {c['test']}  "
        f"teacher {c['teacher_train']}  users {c['users']}  items {c['items']}",
        f"rule: {m['rule']['text']}",
        "",
        render_table(COLUMNS, [[str(x) for x in row] for row in rows], left=2),
    ]
    if any(v["holdout"] for v in m["genres"].values()):
        lines.append("* holdout genre: absent from the teacher's pre-training set")
    return "\n".join(lines) + "\n"
