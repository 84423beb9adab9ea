"""The per-genre RMSE table of a ``reckd distill`` folder, read back from its run folders."""

from __future__ import annotations

import csv
import io
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from reckd import __version__
from reckd.errors import ReckdError
from reckd.train.io import read_json, write_with
from reckd.train.plan import slug
from reckd.train.teacher import teacher_ref

CLASSES = ("dense", "sparse")


@dataclass
class Cell:
    """One method on one genre (or one macro-average): RMSE over seeds."""

    mean: float
    std: float
    seeds: int
    improvement: float | None = None  # % RMSE reduction relative to ``none``
    asked: int = 0  # seeds requested for this cell (a cell with fewer finished is partial)


@dataclass
class Row:
    genre: str
    klass: str
    test_ratings: int
    teacher: float | None
    methods: dict[str, Cell]


@dataclass
class Report:
    """A distill folder read back: the rows, and what made them."""

    rows: list[Row]
    methods: list[str]
    teacher: dict  # the teacher's result.json
    made_with: dict  # distill.json: split/teacher paths and fingerprints, requested runs
    seeds: list[int]
    missing: list[tuple[str, str, int]] = field(default_factory=list)  # requested runs not finished


def _cell(values: list[float], asked: int = 0) -> Cell:
    return Cell(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values),
                asked=asked or len(values))


def collect(run_dir: Path, only: list[str] | None = None) -> Report:
    """Rows per genre plus dense/sparse macro-average rows, read from a ``reckd distill`` folder.
    Macro-averages: per seed, the mean over the class's genres; then mean ± std over seeds.
    ``only``: report just these methods (in this order). Refuses a folder whose teacher changed or
    was trained on another split than the one recorded; lists requested runs that are not finished."""
    run_dir = Path(run_dir)
    if not (run_dir / "distill.json").is_file():
        raise ReckdError(f"{run_dir / 'distill.json'}: missing; expected a `reckd distill --out` folder")
    info = read_json(run_dir / "distill.json", "a distill header")
    if "split_fingerprint" not in info or "runs" not in info:
        raise ReckdError(f"{run_dir / 'distill.json'}: made before reckd 0.2 (no split fingerprint or run list); "
                         f"re-run `reckd distill` into a new --out")
    manifest = read_json(Path(info["split"]) / "manifest.json", "the split manifest")
    if manifest.get("fingerprint") != info["split_fingerprint"]:
        raise ReckdError(f"{Path(info['split']) / 'manifest.json'}: split {manifest.get('fingerprint')}, but the "
                         f"students in {run_dir} were trained on split {info['split_fingerprint']}")
    ref = teacher_ref(Path(info["teacher"]))
    if ref.sha256 != info["teacher_sha256"]:
        raise ReckdError(f"{ref.path / 'checkpoint.pt'}: the teacher changed after the students in {run_dir} "
                         f"were distilled; its RMSE would not be the one they learned from")
    if ref.split_fingerprint != info["split_fingerprint"]:
        raise ReckdError(f"{ref.path}: trained on split {ref.split_fingerprint}, but the students in {run_dir} "
                         f"on split {info['split_fingerprint']}")
    teacher = ref.result
    requested = [(g, m, s) for g, m, s in info["runs"]]
    results = {}
    for g, m, s in requested:
        path = run_dir / slug(g) / slug(m) / f"seed{s}" / "result.json"
        if path.is_file():
            results[g, m, s] = read_json(path, "a run's result")
    if not results:
        raise ReckdError(f"{run_dir}: no finished runs (no */*/seed*/result.json)")
    order = list(dict.fromkeys(m for _, m, _ in requested))
    methods = [m for m in (only or order) if any(k[1] == m for k in results)]
    if only and len(methods) < len(only):
        missing = sorted(set(only) - set(methods))
        raise ReckdError(f"--methods: no finished runs of {', '.join(missing)} in {run_dir}")
    asked: dict[tuple[str, str], int] = {}
    for g, m, _ in requested:
        asked[g, m] = asked.get((g, m), 0) + 1
    by_key: dict[tuple[str, str], dict[int, float]] = {}
    for (g, m, s), r in results.items():
        if m in methods:
            by_key.setdefault((g, m), {})[s] = r["test_rmse"]
    klass = lambda g: manifest["genres"][g]["class"]
    genres = sorted({g for g, _ in by_key}, key=lambda g: (CLASSES.index(klass(g)) if klass(g) in CLASSES else 2, g))
    rows = []
    for genre in genres:
        cells = {m: _cell(list(by_key[genre, m].values()), asked[genre, m]) for m in methods if (genre, m) in by_key}
        t = teacher["genres"].get(genre, {})
        rows.append(Row(genre, klass(genre), t.get("test_ratings", 0), t.get("test_rmse"), cells))
    for name in CLASSES:
        members = [r.genre for r in rows if r.klass == name]
        if not members:
            continue
        cells = {}
        for m in methods:
            seeds = set.intersection(*[set(by_key.get((g, m), {})) for g in members])
            if seeds:
                asked_seeds = min(asked.get((g, m), 0) for g in members)
                cells[m] = _cell([statistics.fmean(by_key[g, m][s] for g in members) for s in sorted(seeds)],
                                 asked_seeds)
        teacher_avg = statistics.fmean(teacher["genres"][g]["test_rmse"] for g in members)
        rows.append(Row(f"{name} macro-avg", name, sum(r.test_ratings for r in rows if r.genre in members),
                        teacher_avg, cells))
    for row in rows:
        base = row.methods.get("none")
        for cell in row.methods.values():
            cell.improvement = None if base is None else 100.0 * (base.mean - cell.mean) / base.mean
    missing = [k for k in requested if k not in results and k[1] in methods]
    seeds = sorted({s for _, _, s in requested})
    return Report(rows, methods, teacher, info, seeds, missing)


def records(rows: list[Row], methods: list[str]) -> list[dict]:
    out = []
    for r in rows:
        rec = {"genre": r.genre, "class": r.klass, "test_ratings": r.test_ratings, "teacher_rmse": r.teacher}
        for m in methods:
            c = r.methods.get(m)
            rec[f"{m}_rmse"] = c.mean if c else None
            rec[f"{m}_std"] = c.std if c else None
            rec[f"{m}_seeds"] = c.seeds if c else 0
            rec[f"{m}_seeds_asked"] = c.asked if c else 0
            rec[f"{m}_improvement_pct"] = c.improvement if c else None
        out.append(rec)
    return out


def document(report: Report) -> dict:
    """The JSON report: what made the numbers (split, teacher, seeds, methods, version) and the rows."""
    info, teacher = report.made_with, report.teacher
    return {"reckd_version": __version__, "split": info["split"], "split_fingerprint": info["split_fingerprint"],
            "teacher": {"path": info["teacher"], "sha256": info["teacher_sha256"],
                        "test_rmse": teacher["test_rmse"], "test_ratings": teacher["test_ratings"],
                        "parameters": teacher["parameters"], "best_epoch": teacher["best_epoch"]},
            "seeds": report.seeds, "methods": report.methods, "partial": bool(report.missing),
            "missing_runs": [list(k) for k in report.missing],
            "rows": records(report.rows, report.methods)}


def render(report: Report, fmt: str = "table") -> str:
    """``table`` (aligned text), ``markdown``, ``csv`` or ``json``. A cell with fewer finished seeds than
    requested is marked ``n=k/K``."""
    rows, methods = report.rows, report.methods
    if fmt == "json":
        return json.dumps(document(report), indent=2)
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
            if c.seeds < c.asked:
                text += f" n={c.seeds}/{c.asked}"
            line.append(text)
        body.append(line)
    if fmt == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(x.replace("macro-avg", "**macro-avg**") for x in line) + " |" for line in body]
        return "\n".join(lines)
    if fmt != "table":
        raise ReckdError(f"--format: expected table, csv, json or markdown, found {fmt!r}")
    widths = [max(len(h), *(len(line[i]) for line in body)) for i, h in enumerate(header)]
    fmt_line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    return "\n".join([fmt_line(header), fmt_line(["-" * w for w in widths]), *map(fmt_line, body)])


def plot(report: Report, path: Path) -> None:
    """Bar chart of each method's relative improvement over ``none`` per genre (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, methods = report.rows, report.methods
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
    write_with(Path(path), lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
