"""Tune every student row on the README's split (ML-100K, random 80/10/10, seed 0) with one budget: the
default grid of ``reckd tune`` (8 points) for each method, chosen per genre class on validation RMSE only,
from the README's students (kd's task weight 0.1, as benchmarks/ml100k.py).
Prints the validation table (macro-average validation RMSE per point, method and class; ``*`` marks the
choice) and, where the untuned students' values are a grid point, the choice's validation gain over it.

    python benchmarks/tune.py                                    # writes runs/ml-100k/tune
    python benchmarks/ml100k.py --tuned runs/ml-100k/tune/tuned.json    # the tuned table (3 seeds)
    python benchmarks/tune.py --genres Action,Fantasy --epochs 2 --out /tmp/tune-smoke   # a smoke run
    python benchmarks/tune.py --methods none --grid train.ema=0,0.99 --out runs/ml-100k/tune-v6   # one more key

A missing split or teacher is made first, as benchmarks/ml100k.py does; finished runs are reused, so an
interrupted benchmark resumes.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from reckd.cli.flags import seeds
from reckd.cli.train import grid_flags
from reckd.losses import make_config
from reckd.train.device import resolve_device
from reckd.train.distill import DistillConfig
from reckd.train.tune import DEFAULT_GRID, render_tuned, tune

from readme_split import readme_split, readme_student_options, readme_teacher


def untuned_gain(document: dict, config: DistillConfig) -> str:
    """Per method and class: the chosen point's macro validation RMSE against the point that holds the
    untuned students' own values (if the grid has one)."""
    base = {"train": config.train, "model": config.model}
    untuned = {}
    for key in document["grid"]:
        section, _, name = key.partition(".")
        source = base[section] if section in base else make_config(section, config.options.get(section))
        untuned[key] = getattr(source, name)
    if untuned not in document["points"]:
        return "(the untuned values are not a point of this grid)"
    k0 = document["points"].index(untuned)
    lines = [f"untuned values are point{k0}; validation RMSE, untuned -> chosen:"]
    for method, by_class in document["validation"].items():
        for genre_class, row in by_class.items():
            k = document["chosen_point"][method][genre_class]
            lines.append(f"  {method} {genre_class}: {row[k0]:.4f} -> {row[k]:.4f} "
                         f"({100 * (row[k0] - row[k]) / row[k0]:+.2f} %)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="runs/ml-100k", help="folder for split/ and the teacher (teacher-mix/ and its members)")
    parser.add_argument("--out", default=None, help="tune folder (default ROOT/tune)")
    parser.add_argument("--methods", default="none,kd,kd+aug")
    parser.add_argument("--genres", default="all")
    parser.add_argument("--seeds", type=seeds, default=(0,),
                        help="comma-separated seeds of every grid point (default 0)")
    parser.add_argument("--epochs", type=int, help="maximum epochs (default: the distill config's)")
    parser.add_argument("--workers", type=int, help="student processes (default: distill's for the device)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,…",
                        help="a key added to (or replacing one of) the default grid, as `reckd tune --grid`")
    args = parser.parse_args()
    root = Path(args.root)
    out = Path(args.out) if args.out else root / "tune"
    started = time.perf_counter()
    device = resolve_device(args.device)
    data = readme_split(root, device)
    teacher = readme_teacher(root, data)
    methods = tuple(m.strip() for m in args.methods.split(","))
    # the README's students' options (benchmarks/ml100k.py's default), so a tuned run starts from its row
    config = DistillConfig(genres=args.genres, methods=methods, options=readme_student_options(methods))
    if args.epochs is not None:
        config.train = dataclasses.replace(config.train, epochs=args.epochs)
    document = tune(data, teacher, out, config, {**DEFAULT_GRID, **grid_flags(args.grid)}, seeds=args.seeds,
                    workers=args.workers)
    print(f"Validation RMSE (macro over each class's genres, seeds {','.join(map(str, args.seeds))}) on "
          f"{root / 'split'}; {len(document['points'])} grid points, {config.train.epochs} epochs at most.\n")
    print(render_tuned(document, "markdown"))
    print()
    print(untuned_gain(document, config))
    print(f"\n-> {out / 'tuned.json'}\n(wall time of this command: {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
