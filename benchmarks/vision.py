"""Regenerate the README's image-classification table (markdown on stdout, progress on stderr).

    python benchmarks/vision.py                      # 5 seeds, CPU or CUDA (auto)
    python benchmarks/vision.py --seeds 0,1 --device cpu

Teacher: a CNN pre-trained on all ten digits of scikit-learn's load_digits (70% of the images);
students: a small MLP on two downstream tasks — digits 0–4 with 10 labels per class, and all ten
digits with 10 labels per class (30% of those labels are the student's validation split) — scored on
the held-out 30% of the images. Seeds fix the splits, the teacher and every initialisation.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from reckd.vision import VisionConfig, format_report, run

METHODS = ["none", "kd", "fitnet", "hybrid", "dist", "moe", "talking", "none+aug", "kd+aug", "dist+aug"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--methods", default=",".join(METHODS))
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny models: one thread is fastest
    start = time.perf_counter()
    report = run(VisionConfig(), args.methods.split(","), [int(s) for s in args.seeds.split(",")], args.device,
                 progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(format_report(report, "markdown"))
    print(f"\n{len(report.rows)} runs on {report.setup['device']}, {time.perf_counter() - start:.0f} s "
          f"(torch {torch.__version__}, 1 CPU thread)")


if __name__ == "__main__":
    main()
