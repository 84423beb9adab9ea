"""Regenerate the README's ML-100K tables: per-genre test RMSE of every method (mean ± std over
seeds, best-validation epoch), dense/sparse macro-averages, improvement over ``none``, and each
method's training cost per epoch relative to ``none``.

    python benchmarks/ml100k.py                                   # the main job's methods
    python benchmarks/ml100k.py --methods none,kd,fitnet,hybrid,dist,moe,talking,kd+aug,dist+aug \\
        --out runs/ml-100k/bench-all
    python benchmarks/ml100k.py --tuned runs/ml-100k/tune/tuned.json   # tuned students (benchmarks/tune.py)

Missing steps are done first (fetch through the mirror if needed, split random 80/10/10 seed 0,
pre-train the teacher's members and combine them); finished runs are reused, so an interrupted benchmark resumes.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from reckd.cli.flags import csv_list, method_options
from reckd.report import collect, render
from reckd.train.distill import DistillConfig, distill
from reckd.train.io import read_json
from reckd.train.device import resolve_device
from reckd.train.tune import load_tuned

from readme_split import README_STUDENT_SET, readme_split, readme_student_options, readme_teacher


def cost_table(out: Path, methods: list[str]) -> str:
    """Mean seconds per epoch of each method over all its runs, relative to ``none`` run-by-run
    (same genre and seed; — where the folder holds no ``none`` runs), and mean epochs to the best
    validation epoch."""
    results = [read_json(p) for p in out.glob("*/*/seed*/result.json")]
    base = {(r["genre"], r["seed"]): r["seconds_per_epoch"] for r in results if r["method"] == "none"}
    lines = ["| method | s / epoch (mean over runs) | relative to none | best epoch (mean) | extra parameters |",
             "|---|---:|---:|---:|---:|"]
    for m in methods:
        rs = [r for r in results if r["method"] == m]
        ratios = [r["seconds_per_epoch"] / base[r["genre"], r["seed"]] for r in rs if (r["genre"], r["seed"]) in base]
        lines.append(f"| {m} | {statistics.fmean(r['seconds_per_epoch'] for r in rs):.3f} | "
                     f"{f'{statistics.fmean(ratios):.2f}×' if ratios else '—'} | "
                     f"{statistics.fmean(r['best_epoch'] for r in rs):.1f} | "
                     f"{max(r['extra_parameters'] for r in rs):,} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="runs/ml-100k", help="folder for split/ and the teacher (teacher-mix/ and its members)")
    parser.add_argument("--out", default=None, help="distill folder (default ROOT/students, or ROOT/students-tuned "
                                                    "with --tuned)")
    parser.add_argument("--methods", default="none,kd,kd+aug")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--genres", default="all")
    parser.add_argument("--workers", type=int, help="student processes (default: distill's for the device)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--set", action="append", metavar="METHOD.OPTION=VALUE",
                        help="a method option, as distill's --set (default: the README's students' "
                             f"{', '.join(README_STUDENT_SET)}, when kd is in --methods)")
    parser.add_argument("--tuned", type=csv_list,
                        help="tuned.json files of benchmarks/tune.py (`reckd tune`), comma-separated: each run "
                             "trains with the values chosen for its method and genre class (as distill's --tuned)")
    args = parser.parse_args()
    root = Path(args.root)
    out = Path(args.out) if args.out else root / ("students-tuned" if args.tuned is not None else "students")
    started = time.perf_counter()
    device = resolve_device(args.device)
    data = readme_split(root, device)
    teacher = readme_teacher(root, data)
    methods = [m.strip() for m in args.methods.split(",")]
    options = method_options(args.set) if args.set is not None else readme_student_options(methods)
    config = DistillConfig(genres=args.genres, methods=tuple(methods), options=options,
                           seeds=tuple(int(s) for s in args.seeds.split(",")))
    if args.tuned is not None:
        config.tuned = load_tuned(args.tuned, data, teacher, config)
    distill(data, teacher, out, config, workers=args.workers)
    report = collect(out)
    teacher, methods = report.teacher, report.methods
    print(f"Teacher: {teacher['parameters']:,} parameters, test RMSE {teacher['test_rmse']:.4f} on "
          f"{teacher['test_ratings']:,} ratings (best validation epoch {teacher['best_epoch']}).\n")
    if args.tuned:
        print(f"Students tuned: each run uses the values {args.tuned} chose for its method and genre class on "
              f"validation (recorded in its config.json under `tuned`).\n")
    print(render(report, "markdown"))
    print()
    print(cost_table(out, methods))
    print(f"\n(wall time of this command: {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
