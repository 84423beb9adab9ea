"""The per-genre RMSE table of a ``reckd distill`` folder, read back from its run folders."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from reckd.train.io import read_json

CLASSES = ("dense", "sparse")


@dataclass
class Cell:
    """One method on one genre (or one macro-average): RMSE over seeds."""

    mean: float
    std: float
    seeds: int
    improvement: float | None = None  # % RMSE reduction relative to ``none``


@dataclass
class Row:
    genre: str
    klass: str
    test_ratings: int
    teacher: float | None
    methods: dict[str, Cell]


def _cell(values: list[float]) -> Cell:
    return Cell(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values))


def collect(run_dir: Path, only: list[str] | None = None) -> tuple[list[Row], list[str], dict]:
    """Rows per genre plus dense/sparse macro-average rows, the method order, and the teacher's
    result. Macro-averages: per seed, the mean over the class's genres; then mean ± std over seeds.
    ``only``: report just these methods (in this order)."""
    run_dir = Path(run_dir)
    if not (run_dir / "distill.json").is_file():
        raise FileNotFoundError(f"{run_dir / 'distill.json'}: missing; expected a `reckd distill --out` folder")
    info = read_json(run_dir / "distill.json")
    manifest = read_json(Path(info["split"]) / "manifest.json")
    teacher_dir = Path(info["teacher"])
    if "teacher_sha256" in info and hashlib.sha256((teacher_dir / "checkpoint.pt").read_bytes()).hexdigest() \
            != info["teacher_sha256"]:
        raise ValueError(f"{teacher_dir / 'checkpoint.pt'}: the teacher changed after the students in {run_dir} "
                         f"were distilled; its RMSE would not be the one they learned from")
    teacher = read_json(teacher_dir / "result.json")
    results = [read_json(p) for p in sorted(run_dir.glob("*/*/seed*/result.json"))]
    if not results:
        raise FileNotFoundError(f"{run_dir}: no finished runs (no */*/seed*/result.json)")
    methods = [m for m in (only or info["config"]["methods"]) if any(r["method"] == m for r in results)]
    if only and len(methods) < len(only):
        missing = sorted(set(only) - set(methods))
        raise ValueError(f"--methods: no finished runs of {', '.join(missing)} in {run_dir}")
    results = [r for r in results if r["method"] in methods]
    by_key: dict[tuple[str, str], dict[int, float]] = {}
    for r in results:
        by_key.setdefault((r["genre"], r["method"]), {})[r["seed"]] = r["test_rmse"]
    genres = sorted({r["genre"] for r in results}, key=lambda g: (CLASSES.index(manifest["genres"][g]["class"])
                                                                  if manifest["genres"][g]["class"] in CLASSES
                                                                  else 2, g))
    rows = []
    for genre in genres:
        cells = {m: _cell(list(by_key[genre, m].values())) for m in methods if (genre, m) in by_key}
        t = teacher["genres"].get(genre, {})
        rows.append(Row(genre, manifest["genres"][genre]["class"], t.get("test_ratings", 0),
                        t.get("test_rmse"), cells))
    for klass in CLASSES:
        members = [r.genre for r in rows if r.klass == klass]
        if not members:
            continue
        cells = {}
        for m in methods:
            seeds = set.intersection(*[set(by_key.get((g, m), {})) for g in members])
            if seeds:
                cells[m] = _cell([statistics.fmean(by_key[g, m][s] for g in members) for s in sorted(seeds)])
        teacher_avg = statistics.fmean(teacher["genres"][g]["test_rmse"] for g in members)
        rows.append(Row(f"{klass} macro-avg", klass, sum(r.test_ratings for r in rows if r.genre in members),
                        teacher_avg, cells))
    for row in rows:
        base = row.methods.get("none")
        for cell in row.methods.values():
            cell.improvement = None if base is None else 100.0 * (base.mean - cell.mean) / base.mean
    return rows, methods, teacher


def records(rows: list[Row], methods: list[str]) -> list[dict]:
    out = []
    for r in rows:
        rec = {"genre": r.genre, "class": r.klass, "test_ratings": r.test_ratings, "teacher_rmse": r.teacher}
        for m in methods:
            c = r.methods.get(m)
            rec[f"{m}_rmse"] = c.mean if c else None
            rec[f"{m}_std"] = c.std if c else None
            rec[f"{m}_seeds"] = c.seeds if c else 0
            rec[f"{m}_improvement_pct"] = c.improvement if c else None
        out.append(rec)
    return out


def render(rows: list[Row], methods: list[str], fmt: str = "table") -> str:
    """``table`` (aligned text), ``markdown``, ``csv`` or ``json``."""
    if fmt == "json":
        return json.dumps(records(rows, methods), indent=2)
    if fmt == "csv":
        buffer = io.StringIO()
        recs = records(rows, methods)
        writer = csv.DictWriter(buffer, fieldnames=list(recs[0]))
        writer.writeheader()
        writer.writerows(recs)
        return buffer.getvalue()
    header = ["genre", "class", "test n", "teacher"] + methods
    body = []
    for r in rows:
        line = [r.genre, r.klass, str(r.test_ratings), "" if r.teacher is None else f"{r.teacher:.4f}"]
        for m in methods:
            c = r.methods.get(m)
            if c is None:
                line.append("—")
                continue
            text = f"{c.mean:.4f} ± {c.std:.4f}"
            if m != "none" and c.improvement is not None:
                text += f" ({c.improvement:+.2f}%)"
            line.append(text)
        body.append(line)
    if fmt == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(x.replace("macro-avg", "**macro-avg**") for x in line) + " |" for line in body]
        return "\n".join(lines)
    if fmt != "table":
        raise ValueError(f"--format: expected table, csv, json or markdown, found {fmt!r}")
    widths = [max(len(h), *(len(line[i]) for line in body)) for i, h in enumerate(header)]
    fmt_line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    return "\n".join([fmt_line(header), fmt_line(["-" * w for w in widths]), *map(fmt_line, body)])


def plot(rows: list[Row], methods: list[str], path: Path) -> None:
    """Bar chart of each method's relative improvement over ``none`` per genre."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [m for m in methods if m != "none"]
    fig, ax = plt.subplots(figsize=(max(8, len(rows) * 0.6), 4))
    width = 0.8 / max(len(shown), 1)
    for k, m in enumerate(shown):
        values = [r.methods[m].improvement if m in r.methods and r.methods[m].improvement is not None else 0
                  for r in rows]
        ax.bar([i + k * width for i in range(len(rows))], values, width, label=m)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(rows))], [r.genre for r in rows], rotation=60, ha="right")
    ax.set_ylabel("RMSE improvement over none (%)")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
