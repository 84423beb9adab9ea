"""The run plan of ``reckd distill``: which genre × method × seed runs a request names, where each
lives, and which of them a folder already holds with exactly the requested configuration.

A run is its configuration: ``OUT/<genre>/<method>/seed<k>/config.json`` records every effective
option (method, model, training, augmentation, teacher and split fingerprints, reckd version), and
``result.json`` marks it finished. Resume skips a run only when the recorded configuration equals the
requested one; a changed one stops the command with the differing keys, unless the caller asked to
retrain changed runs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from reckd.data.split import SplitData
from reckd.errors import ReckdError
from reckd.train.io import read_json

RUN_FILES = ("config.json", "metrics.jsonl", "checkpoint.pt", "test_predictions.npy", "result.json")  # all a run writes


def slug(name: str) -> str:
    """A folder-safe name: ``Children's`` -> ``Children_s``."""
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", name)


@dataclass(frozen=True)
class Run:
    """One student: a genre, a method spec (``kd`` or ``kd+aug``) and a seed."""

    genre: str
    method: str
    seed: int

    def folder(self, out: Path) -> Path:
        return Path(out) / slug(self.genre) / slug(self.method) / f"seed{self.seed}"


@dataclass
class Plan:
    runs: list[Run]  # every requested run, in request order
    finished: dict[Run, dict]  # results of runs already done with the requested configuration
    pending: list[Run]  # runs to train now, the largest genres first


def unique(values: tuple, flag: str) -> tuple:
    """A non-empty list without repeats (a repeated seed would train one run twice into one folder)."""
    if not values:
        raise ReckdError(f"{flag}: expected a non-empty comma-separated list, found none")
    repeated = sorted({str(v) for v in values if values.count(v) > 1})
    if repeated:
        raise ReckdError(f"{flag}: expected each value once, found {', '.join(repeated)} more than once")
    return values


def select_genres(data: SplitData, spec: str) -> list[str]:
    """Genres named by ``--genres``; ``excluded`` genres are never selected by a class word."""
    classes = {g: info["class"] for g, info in data.manifest["genres"].items()}
    if spec in ("all", "dense", "sparse"):
        return [g for g in data.genres if classes[g] != "excluded" and spec in ("all", classes[g])]
    chosen = unique(tuple(g.strip() for g in spec.split(",") if g.strip()), "--genres")
    for genre in chosen:
        data.genre_index(genre)  # raises, naming the known genres
        if data.rows("train", genre).numel() == 0:
            raise ReckdError(f"--genres: genre {genre!r} has no training ratings in {data.path}")
    return list(chosen)


def normal(config: dict) -> dict:
    """``config`` as it reads back from JSON (tuples become lists), so it compares with a recorded one."""
    return json.loads(json.dumps(config))


def differences(recorded: dict, requested: dict, prefix: str = "") -> list[str]:
    """``key (recorded X, requested Y)`` for every leaf key whose value differs."""
    out = []
    for key in sorted(set(recorded) | set(requested)):
        a, b = recorded.get(key, "<absent>"), requested.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key} (recorded {a!r}, requested {b!r})")
    return out


def clear_run(folder: Path) -> None:
    """Remove what a run writes (and temp files of its atomic writes), never anything else."""
    for name in RUN_FILES:
        (folder / name).unlink(missing_ok=True)
    for tmp in folder.glob(".*.tmp"):
        tmp.unlink()


def make_plan(out: Path, runs: list[Run], config_of: Callable[[Run], dict[str, Any]],
              size: Callable[[str], int], retrain_changed: bool = False) -> Plan:
    """Sort ``runs`` into finished (same recorded configuration and a result) and pending. A run whose
    recorded configuration differs is an error naming the keys, or, with ``retrain_changed``, pending.
    A run folder holding files that a run does not write is an error; nothing is deleted here."""
    finished: dict[Run, dict] = {}
    pending, changed = [], []
    for run in runs:
        folder = run.folder(out)
        foreign = sorted(p.name for p in folder.iterdir() if p.name not in RUN_FILES
                         and not (p.name.startswith(".") and p.name.endswith(".tmp"))) if folder.is_dir() else []
        if foreign:
            raise ReckdError(f"{folder}: expected only a run's files ({', '.join(RUN_FILES)}), found "
                             f"{', '.join(foreign)}; move them away or use a new --out")
        if not (folder / "config.json").is_file():
            pending.append(run)
            continue
        recorded, requested = read_json(folder / "config.json", "a run's configuration"), normal(config_of(run))
        if recorded != requested:
            changed.append((run, differences(recorded, requested)))
            pending.append(run)
        elif (folder / "result.json").is_file():
            finished[run] = read_json(folder / "result.json", "a run's result")
        else:
            pending.append(run)  # interrupted: it starts over
    if changed and not retrain_changed:
        shown = "\n".join(f"  {run.folder(out)}: {'; '.join(diff)}" for run, diff in changed[:10])
        more = f"\n  … and {len(changed) - 10} more" if len(changed) > 10 else ""
        raise ReckdError(f"{out}: {len(changed)} run(s) were made with other options than requested:\n{shown}{more}\n"
                         f"use a new --out, or --retrain-changed to retrain exactly these runs")
    # the largest genres first, so that parallel workers finish together
    pending.sort(key=lambda run: -size(run.genre))
    return Plan(runs, finished, pending)
