"""The classical reference rows of the README's split (ML-100K, random 80/10/10, seed 0): scikit-surprise's
BaselineOnly, SVD, SVD++ and KNNBaseline, all-genre (``@all``) and genre-only, hyper-parameters chosen on
validation. Prints test RMSE per model: overall (teacher's test rows, all-genre fits only), dense and
sparse macro-averages (per seed the mean over the class's genres, then mean ± std over seeds).

    python benchmarks/baselines.py                       # writes runs/ml-100k/baselines
    python benchmarks/baselines.py --models svd,knnbaseline --seeds 0

A missing split is made first (fetch through the PyPI mirror, prepare, split random seed 0); finished
runs are reused, so an interrupted benchmark resumes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from data_prep.atomic import read_json
from reckd.baselines import CLASSES, fit_baselines

from readme_split import readme_split


def _cell(values: list[float]) -> str:
    if not values:
        return "—"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.4f} ± {std:.4f}" if len(values) > 1 else f"{values[0]:.4f}"


def table(results: list[dict], summary: dict, manifest: dict) -> str:
    """Markdown rows: per method, overall / dense macro / sparse macro test RMSE, and the values chosen."""
    by_method: dict[str, dict[int, dict[str, float]]] = {}
    for r in results:
        by_method.setdefault(r["method"], {}).setdefault(r["seed"], {})[r["genre"]] = r["test_rmse"]
    lines = ["| model | trained on | overall | dense macro | sparse macro | seeds | hyper-parameters |",
             "|---|---|---:|---:|---:|---:|---|"]
    for method, seeds in by_method.items():
        macro = {}
        for klass in CLASSES:
            macro[klass] = [statistics.fmean(v for g, v in genres.items() if manifest["genres"][g]["class"] == klass)
                            for genres in seeds.values()
                            if any(manifest["genres"][g]["class"] == klass for g in genres)]
        overall = summary["overall"].get(method, {}).get("seeds", {})
        params = " / ".join(f"{k}: " + ", ".join(f"{n}={v}" for n, v in sorted(p.items()))
                            for k, p in summary["chosen"].items() if k.split(" ")[0] == method)
        model, _, scope = method.partition("@")
        lines.append(f"| {model} | {'all genres' if scope else 'one genre'} | {_cell(list(overall.values()))} | "
                     f"{_cell(macro['dense'])} | {_cell(macro['sparse'])} | {len(seeds)} | {params or 'fixed'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="runs/ml-100k", help="folder holding split/")
    parser.add_argument("--out", default=None, help="baselines folder (default ROOT/baselines)")
    parser.add_argument("--models", default="baselineonly,svd,svdpp,knnbaseline")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel fits")
    args = parser.parse_args()
    root = Path(args.root)
    out = Path(args.out) if args.out else root / "baselines"
    started = time.perf_counter()
    data = readme_split(root)
    models = tuple(m.strip() for m in args.models.split(","))
    seeds = tuple(int(s) for s in args.seeds.split(","))
    order = [f"{m}@all" for m in models] + list(models)
    results = sorted(fit_baselines(data, out, models=models, seeds=seeds, jobs=args.jobs),
                     key=lambda r: order.index(r["method"]))
    summary = read_json(out / "baselines.json", "a baselines summary")
    print(f"Test RMSE on {root / 'split'} (surprise {summary['surprise']}; mean ± std over seeds; "
          f"macro: per seed the mean over the class's genres).\n")
    print(table(results, summary, data.manifest))
    print(f"\n(wall time of this command: {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
