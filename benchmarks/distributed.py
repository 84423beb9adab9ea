"""One teacher epoch on a large synthetic split: one process against ``torchrun`` with N ``gloo`` ranks
on the same machine — wall time, seconds per epoch, peak resident memory of the largest process (a
rank), and the RMSE each reaches. Both train with ``--embedding-optimizer adagrad`` (what fbgemm's CPU
kernels for sharded tables support), one start and the default batch (scaled with the set), so the two
rows differ only in how the step is computed.

    python benchmarks/distributed.py                                   # 25M ratings, 2 ranks
    python benchmarks/distributed.py --ratings 1000000 --out /tmp/d    # a quick look
    python benchmarks/distributed.py --only ranks                      # the torchrun row alone

The split is made once in ``--out`` and reused; the teachers are trained again on every call.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from scale import stage
from split_speed import ensure_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ratings", type=int, default=25_000_000)
    parser.add_argument("--ranks", type=int, default=2, help="gloo processes of the torchrun row (default 2)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--data-dir", help="where the synthetic data lives (default: the data_prep data dir)")
    parser.add_argument("--out", default="runs/distributed")
    parser.add_argument("--only", choices=("one", "ranks"), help="run just that row (one process, or torchrun)")
    args = parser.parse_args()
    from data_prep.paths import data_dir

    root, out = data_dir(args.data_dir), Path(args.out)
    name = f"synth-{args.ratings}-seed0"
    ensure_data(root, name, args.ratings, 0)
    out.mkdir(parents=True, exist_ok=True)
    split = out / "split"
    if not (split / "manifest.json").is_file():
        stage("split", [sys.executable, "-m", "data_prep", "split", name, "--data-dir", str(root), "--scheme",
                        "random", "--seed", "0", "--out", str(split)], out / "split.log")
    common = ["pretrain", str(split), "--restarts", "1", "--epochs", str(args.epochs), "--embedding-optimizer",
              "adagrad", "--device", "cpu"]
    launches = {
        "1 process": [sys.executable, "-m", "reckd", *common, "--out", str(out / "one")],
        f"torchrun, {args.ranks} gloo ranks": [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                               f"--nproc_per_node={args.ranks}", "-m", "reckd", *common,
                                               "--out", str(out / "ranks")],
    }
    rows = []
    for (label, argv), folder in zip(launches.items(), ("one", "ranks")):
        if args.only not in (None, folder):
            continue
        shutil.rmtree(out / folder, ignore_errors=True)
        wall, peak = stage(label, argv, out / f"{folder}.log")
        epochs = [json.loads(x) for x in (out / folder / "restart0" / "metrics.jsonl").read_text().splitlines()]
        result = json.loads((out / folder / "result.json").read_text())
        train = json.loads((out / folder / "config.json").read_text())["train"]
        rows.append((label, wall, epochs[-1]["seconds"] / len(epochs), peak, epochs[-1]["val_rmse"],
                     result["test_rmse"], train["batch_size"]))
    counts = json.loads((split / "manifest.json").read_text())["counts"]
    print(f"{args.ratings:,} synthetic ratings ({counts}); {os.cpu_count()} cores; teacher: 1 start, "
          f"{args.epochs} epoch(s), embedding optimiser adagrad\n")
    print("| launch | wall (s) | s / epoch (validation included) | peak RSS per process (GB) | val RMSE | "
          "test RMSE | global batch |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, wall, per_epoch, peak, val, test, batch in rows:
        print(f"| {label} | {wall:.0f} | {per_epoch:.0f} | {peak:.2f} | {val:.4f} | {test:.4f} | {batch} |")


if __name__ == "__main__":
    main()
