"""The ML-25M-sized path end to end on one machine: ``data_prep synth`` → ``split`` → ``pretrain`` →
``distill`` (one dense and one sparse genre) → ``report``, each stage a child process, with its wall
time and peak resident memory (``os.wait4`` rusage), the teacher's seconds per epoch, its batch (the
default scales with the training set, ``reckd.train.loop.scaled``) and the size of its output cache.

    python benchmarks/scale.py                                  # 25M ratings on the CPU
    python benchmarks/scale.py --device cuda                    # on a GPU
    python benchmarks/scale.py --ratings 1000000 --out /tmp/s   # a quick look

The teacher is one start (``--restarts 1``) trained for ``--epochs`` epochs, the students ``kd`` for
``--student-epochs``: this measures the path's cost per epoch, not a tuned 25M model. Finished stages are
not reused: every run starts from an empty ``--out`` (the synthetic data is reused when identical).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from split_speed import ensure_data


def stage(name: str, argv: list[str], log: Path) -> tuple[float, float]:
    """Run one stage in a child process: (wall seconds, peak RSS in GB); a failure stops the benchmark
    with the stage's name and the end of its output."""
    start = time.perf_counter()
    with open(log, "w") as out:
        child = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        tail = log.read_text().splitlines()[-15:]
        raise SystemExit(f"benchmarks/scale.py: stage {name} failed ({' '.join(argv)}):\n" + "\n".join(tail))
    return wall, usage.ru_maxrss * 1024 / 1e9  # ru_maxrss is in KiB on Linux


def pick_genres(split: Path) -> tuple[str, str]:
    """The dense genre with the fewest training ratings and the sparse genre with the most."""
    genres = json.loads((split / "manifest.json").read_text())["genres"]
    dense = min((g for g, v in genres.items() if v["class"] == "dense"), key=lambda g: genres[g]["train"])
    sparse = max((g for g, v in genres.items() if v["class"] == "sparse"), key=lambda g: genres[g]["train"])
    return dense, sparse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ratings", type=int, default=25_000_000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=1, help="teacher epochs")
    parser.add_argument("--student-epochs", type=int, default=2)
    parser.add_argument("--data-dir", help="where the synthetic data lives (default: the data_prep data dir)")
    parser.add_argument("--out", default="runs/scale", help="emptied first; split/, teacher/, students/ go here")
    args = parser.parse_args()
    from data_prep.paths import data_dir

    root, out = data_dir(args.data_dir), Path(args.out)
    name = f"synth-{args.ratings}-seed0"
    started = time.perf_counter()
    generated = ensure_data(root, name, args.ratings, 0)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    py = [sys.executable, "-m"]
    rows = [("synth", generated, None)]
    wall, peak = stage("split", py + ["data_prep", "split", name, "--data-dir", str(root), "--scheme", "random",
                                      "--seed", "0", "--out", str(out / "split")], out / "split.log")
    rows.append(("split", wall, peak))
    dense, sparse = pick_genres(out / "split")
    wall, peak = stage("pretrain", py + ["reckd", "pretrain", str(out / "split"), "--restarts", "1", "--epochs",
                                         str(args.epochs), "--device", args.device, "--out", str(out / "teacher")],
                       out / "pretrain.log")
    rows.append(("pretrain", wall, peak))
    wall, peak = stage("distill", py + ["reckd", "distill", str(out / "split"), "--teacher", str(out / "teacher"),
                                        "--genres", f"{dense},{sparse}", "--methods", "kd", "--seeds", "0",
                                        "--epochs", str(args.student_epochs), "--device", args.device,
                                        "--workers", "1", "--quiet", "--out", str(out / "students")],
                       out / "distill.log")
    rows.append(("distill", wall, peak))
    wall, peak = stage("report", py + ["reckd", "report", str(out / "students"), "--format", "markdown"],
                       out / "report.log")
    rows.append(("report", wall, peak))

    teacher = json.loads((out / "teacher" / "config.json").read_text())["train"]
    epochs = [json.loads(line) for line in (out / "teacher" / "restart0" / "metrics.jsonl").read_text().splitlines()]
    per_epoch = epochs[-1]["seconds"] / len(epochs)
    cache = (out / "teacher" / "cache.pt").stat().st_size / 1e9
    manifest = json.loads((out / "split" / "manifest.json").read_text())
    print(f"{args.ratings:,} synthetic ratings ({manifest['counts']}), device {args.device}, "
          f"{os.cpu_count()} cores; students: {dense} (dense), {sparse} (sparse)\n")
    print("| stage | wall (s) | peak RSS (GB) |")
    print("|---|---:|---:|")
    for stage_name, wall, peak in rows:
        print(f"| {stage_name} | {'reused' if wall is None else f'{wall:.1f}'} | "
              f"{'' if peak is None else f'{peak:.2f}'} |")
    print(f"\nteacher: batch {teacher['batch_size']}, lr {teacher['lr']:.2g}, {per_epoch:.1f} s per epoch "
          f"(validation included), val RMSE {epochs[-1]['val_rmse']:.4f} after {len(epochs)} epoch(s); "
          f"cache.pt {cache:.3f} GB")
    print("\n" + (out / "report.log").read_text().strip())
    print(f"\n(wall time of this command: {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
