"""Does a torchrun rank's memory grow without bound while it trains? One `dcn` teacher start over
``--epochs`` epochs with 2 ``gloo`` ranks on a synthetic split; every 5 s the resident memory of each
rank is read from /proc, and the largest value of each rank is printed per epoch, with the last one (an epoch ends when its
line reaches ``metrics.jsonl``). Training stops after the last epoch: the teacher's scoring is not measured.

    python benchmarks/rank_memory.py                          # 3M ratings, 3 epochs (about 10 min on 2 cores)
    python benchmarks/rank_memory.py --ratings 25000000 --epochs 2

A per-step leak grows every epoch alike; memory that the allocator keeps after warming up stops growing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from scale import stage
from split_speed import ensure_data


def rank_rss() -> dict[int, float]:
    """Resident memory (GB) of every process started by torchrun (the ones with LOCAL_RANK), by rank."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            env = dict(v.split("=", 1) for v in Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0") if "=" in v)
            if "LOCAL_RANK" in env and "reckd" in Path(f"/proc/{pid}/cmdline").read_bytes().decode():
                pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
                found[int(env["RANK"])] = max(found.get(int(env["RANK"]), 0.0), pages * os.sysconf("SC_PAGE_SIZE") / 1e9)
        except (OSError, ValueError):
            continue
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ratings", type=int, default=3_000_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--data-dir", help="where the synthetic data lives (default: the data_prep data dir)")
    parser.add_argument("--out", default="runs/rank-memory")
    args = parser.parse_args()
    from data_prep.paths import data_dir

    root, out = data_dir(args.data_dir), Path(args.out)
    name = f"synth-{args.ratings}-seed0"
    ensure_data(root, name, args.ratings, 0)
    out.mkdir(parents=True, exist_ok=True)
    split, teacher = out / "split", out / "teacher"
    if not (split / "manifest.json").is_file():
        stage("split", [sys.executable, "-m", "data_prep", "split", name, "--data-dir", str(root), "--scheme",
                        "random", "--seed", "0", "--out", str(split)], out / "split.log")
    shutil.rmtree(teacher, ignore_errors=True)
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "reckd",
            "pretrain", str(split), "--restarts", "1", "--epochs", str(args.epochs), "--embedding-optimizer",
            "adagrad", "--device", "cpu", "--out", str(teacher)]
    metrics = teacher / "restart0" / "metrics.jsonl"
    peaks: list[dict[int, float]] = [{}]
    now: dict[int, float] = {}
    started = time.perf_counter()
    with open(out / "pretrain.log", "w") as log:
        child = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while child.poll() is None:
                now = rank_rss() or now
                for rank, gb in now.items():
                    peaks[-1][rank] = max(peaks[-1].get(rank, 0.0), gb)
                done = len(metrics.read_text().splitlines()) if metrics.is_file() else 0
                if done >= len(peaks):  # an epoch ended: its peaks are final
                    peaks.append({})
                    print(f"epoch {done}: {time.perf_counter() - started:.0f} s, peak RSS "
                          + ", ".join(f"rank {r} {gb:.2f} GB" for r, gb in sorted(peaks[-2].items()))
                          + "; at its end " + ", ".join(f"{gb:.2f}" for _, gb in sorted(now.items())) + " GB", flush=True)
                    if done == args.epochs:
                        break
                time.sleep(5)
        finally:
            os.killpg(child.pid, signal.SIGTERM)
            child.wait()
    if len(peaks) <= args.epochs:
        raise SystemExit(f"benchmarks/rank_memory.py: training stopped before epoch {args.epochs}; see {out / 'pretrain.log'}")
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    rmses = ", ".join(f"{r['val_rmse']:.4f}" for r in records)
    print(f"validation RMSE by epoch: {rmses}")


if __name__ == "__main__":
    main()
