"""Every distillation method with the same search over its task weight, on the README's split and teacher:
does `dist`, `moe` or `talking` beat `kd` once each gets the weight that kd got? Per method, `reckd tune`
runs the weights with seed 0 and chooses per genre class on macro validation RMSE; then every method (and
`none`) is distilled with the chosen weight over the seeds, and `reckd report` prints the test table.

    python benchmarks/method_weights.py                        # the sparse genres (README, every method)
    reckd report runs/ml-100k/method-weights/students --methods none,kd,dist,moe,talking --format markdown

Writes ROOT/method-weights/tune-<method>/ (one tune per method: a grid over one method's option runs
that method only) and ROOT/method-weights/students/; finished runs are reused.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from reckd.losses import split_spec
from reckd.report import collect, render
from reckd.train.distill import DistillConfig, distill
from reckd.train.tune import render_tuned, tune

from readme_split import readme_split, readme_teacher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="runs/ml-100k", help="where the README's split and teacher are (made if missing)")
    parser.add_argument("--methods", default="kd,dist,moe,talking", help="comma list of NAME or NAME+aug")
    parser.add_argument("--weights", default="1,0.3,0.1,0.03", help="the task weights searched, the same for every method")
    parser.add_argument("--genres", default="sparse", help="all|dense|sparse|G1,G2,… (as distill's)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", help="the benchmark's folder (default ROOT/method-weights)")
    args = parser.parse_args()
    root = Path(args.root)
    out = Path(args.out) if args.out else root / "method-weights"
    data = readme_split(root)
    teacher = readme_teacher(root, data)
    methods = tuple(m.strip() for m in args.methods.split(","))
    weights = tuple(float(w) for w in args.weights.split(","))
    chosen: dict[str, dict] = {}
    for method in methods:
        name = split_spec(method)[0]
        config = DistillConfig(genres=args.genres, methods=(method,))
        document = tune(data, teacher, out / f"tune-{method}", config, {f"{name}.w_task": weights}, progress=False)
        print(f"## {method}: macro validation RMSE by task weight (seed 0)\n\n{render_tuned(document, 'markdown')}\n",
              flush=True)
        chosen.update(document["chosen"])
    chosen["none"] = {genre_class: {} for genre_class in chosen[methods[0]]}  # nothing to tune: the same runs
    seeds = tuple(int(s) for s in args.seeds.split(","))
    distill(data, teacher, out / "students",
            DistillConfig(genres=args.genres, methods=("none", *methods), seeds=seeds, tuned=chosen), progress=False)
    report = collect(out / "students", only=["none", *methods])
    print(render(report, "markdown"))


if __name__ == "__main__":
    main()
