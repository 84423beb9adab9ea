"""``reckd baselines``: the classical reference rows (scikit-surprise) on a split."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reckd.cli.flags import csv_list, seeds

MODELS = "baselineonly,svd,svdpp,knnbaseline"


def cmd_baselines(args: argparse.Namespace) -> None:
    from reckd.baselines import fit_baselines
    from reckd.data.split import load_split

    results = fit_baselines(load_split(args.split_dir), Path(args.out), models=args.models, seeds=args.seeds,
                            genres=list(args.genres) if args.genres else None, jobs=args.jobs)
    print(f"{len(results)} baseline results -> {args.out}", file=sys.stderr)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("baselines", help="fit the classical reference models (scikit-surprise) on a split",
                       description="BaselineOnly, SVD, SVD++ and KNNBaseline, all-genre (METHOD@all, on the "
                                   "teacher's training ratings) and genre-only (METHOD), hyper-parameters chosen "
                                   "on validation; results in the run-folder format, for `reckd report --baselines`.")
    p.add_argument("split_dir")
    p.add_argument("--out", required=True, help="baselines folder (new, empty, or an earlier baselines run's)")
    p.add_argument("--models", type=csv_list, default=csv_list(MODELS), help=f"comma list (default {MODELS})")
    p.add_argument("--seeds", type=seeds, default=(0, 1, 2), help="seeds of the stochastic models (default 0,1,2)")
    p.add_argument("--genres", type=csv_list, help="genres to score (default: every dense and sparse genre)")
    p.add_argument("--jobs", type=int, default=1, help="fits in parallel processes (default 1)")
    p.set_defaults(func=cmd_baselines)
