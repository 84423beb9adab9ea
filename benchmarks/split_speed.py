"""Speed of `data_prep split` on synthetic MovieLens-like ratings (issue: 25M ratings in ≤ 60 s and
≤ 6 GB peak memory on a 2-core machine).

Generates the data once (or reuses it: `DATA_DIR/NAME/canonical/`, generation is not timed), then runs
`python -m data_prep split` in a child process per scheme and reports that child's wall time and peak
resident memory (`os.wait4` rusage). Rerun:

    python benchmarks/split_speed.py                       # 25M ratings, random + temporal
    python benchmarks/split_speed.py --ratings 1000000     # a quick look
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from data_prep.api import synth
from data_prep.paths import data_dir

LIMIT_S, LIMIT_GB = 60.0, 6.0


def ensure_data(root: Path, name: str, ratings: int, seed: int) -> float | None:
    """Generate NAME unless an identical one exists; returns the generation time, or None if reused."""
    source = root / name / "canonical" / "source.json"
    if source.exists():
        config = json.loads(source.read_text()).get("synth", {})
        if config.get("ratings") == ratings and config.get("seed") == seed and config.get("users") is None:
            return None
    start = time.perf_counter()
    synth(ratings, seed=seed, name=name, data_dir=root)
    return time.perf_counter() - start


def measure(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in GB) of one child process."""
    start = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"split failed: {child.stderr.read().decode()}")
    return wall, usage.ru_maxrss * 1024 / 1e9  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ratings", type=int, default=25_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", help="where the synthetic data lives (default: the data_prep data dir)")
    parser.add_argument("--schemes", default="random,temporal")
    parser.add_argument("--holdout-genres", default="Documentary")
    args = parser.parse_args()

    root = data_dir(args.data_dir)
    name = f"synth-{args.ratings}-seed{args.seed}"
    generated = ensure_data(root, name, args.ratings, args.seed)
    print(f"data: {root / name} ({'generated in %.1f s' % generated if generated is not None else 'reused'})")
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}\n")
    print(f"| scheme | ratings | wall (s) | peak RSS (GB) | within {LIMIT_S:.0f} s / {LIMIT_GB:.0f} GB |")
    print("|---|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory(prefix="split-speed-") as tmp:
        for scheme in args.schemes.split(","):
            argv = [sys.executable, "-m", "data_prep", "split", name, "--data-dir", str(root), "--scheme", scheme,
                    "--seed", "0", "--holdout-genres", args.holdout_genres, "--out", str(Path(tmp) / scheme)]
            wall, peak = measure(argv)
            ok = "yes" if wall <= LIMIT_S and peak <= LIMIT_GB else "NO"
            print(f"| {scheme} | {args.ratings:,} | {wall:.1f} | {peak:.2f} | {ok} |", flush=True)


if __name__ == "__main__":
    main()
