"""Would choosing a tuned value per genre, instead of per genre class, close the scratch student's gap to
genre-only SVD? Reads a finished `reckd tune` folder (seed 0 runs; no training) and fits SVD's grid per
genre, then prints per method: the macro validation and test RMSE of the per-class choice (what `reckd
tune` does) beside a per-genre choice (each genre's point with the lowest validation RMSE). The same two
choices are made for genre-only SVD over `reckd.baselines.DEFAULT_GRID` (seed 0). Validation chooses; test
is reported only.

    python benchmarks/genre_choice.py runs/ml-100k/tune-v6
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np

from reckd.baselines import DEFAULT_GRID, _fit_predict, _rmse, _Split
from reckd.train.io import read_json
from reckd.train.plan import Run
from reckd.train.tune import argmin, grid_points

from readme_split import readme_split


def choices(val: dict[str, list[float]], test: dict[str, list[float]], classes: dict[str, str]) -> list[str]:
    """Rows 'class | per-class val / test | per-genre val / test' from each genre's RMSE at every point."""
    rows = []
    for klass in ("dense", "sparse"):
        genres = [g for g in val if classes[g] == klass]
        if not genres:
            continue
        macro = lambda table, at: statistics.fmean(table[g][at[g]] for g in genres)  # noqa: E731
        points = range(len(val[genres[0]]))
        best = argmin([statistics.fmean(val[g][k] for g in genres) for k in points], "this model", klass)
        by_class = {g: best for g in genres}
        by_genre = {g: argmin(val[g], "this model", g) for g in genres}
        rows.append(f"{klass} | {macro(val, by_class):.4f} / {macro(test, by_class):.4f} | "
                    f"{macro(val, by_genre):.4f} / {macro(test, by_genre):.4f}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tune_dir", help="a finished `reckd tune` folder on the README's split")
    parser.add_argument("--root", default="runs/ml-100k", help="where the README's split is (made if missing)")
    args = parser.parse_args()
    document = read_json(Path(args.tune_dir) / "tuned.json", "a `reckd tune` result")
    classes = {g: c for c, genres in document["genres"].items() for g in genres}
    seeds, n = document.get("seeds", [document.get("seed", 0)]), len(document["points"])  # "seed": before --seeds
    print("| model | class | per class: val / test | per genre: val / test |\n|---|---|---|---|")
    for method in document["validation"]:
        results = {g: [[read_json(Run(g, method, s).folder(Path(args.tune_dir) / f"point{k}") / "result.json",
                                  "a run's result") for s in seeds] for k in range(n)] for g in classes}
        val = {g: [statistics.fmean(r["val_rmse"] for r in rs) for rs in point] for g, point in results.items()}
        test = {g: [statistics.fmean(r["test_rmse"] for r in rs) for rs in point] for g, point in results.items()}
        for row in choices(val, test, classes):
            print(f"| `{method}` (`{args.tune_dir}`) | {row} |", flush=True)
    split = _Split(readme_split(Path(args.root)))
    points = grid_points({name: DEFAULT_GRID[name] for name in sorted(DEFAULT_GRID)})
    val, test = {g: [] for g in classes}, {g: [] for g in classes}
    for genre in classes:  # one fit per point predicts the validation and the test rows
        train = split.triples(split.train(genre))
        v, t = split.scored("val", genre), split.scored("test", genre)
        for p in points:
            estimates = _fit_predict("svd", p, 0, train, split.pairs(np.concatenate([v, t])), split.scale)[0]
            val[genre].append(_rmse(estimates[:v.size], split.rating[v]))
            test[genre].append(_rmse(estimates[v.size:], split.rating[t]))
    for row in choices(val, test, classes):
        print(f"| genre-only SVD (seed 0) | {row} |")


if __name__ == "__main__":
    main()
