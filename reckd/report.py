"""The per-genre table of a ``reckd distill`` folder, read back from its run folders: RMSE (or a
ranking metric) per genre and method, mean ± std over seeds, beside the teacher and, optionally, the
classical reference rows of a ``reckd baselines`` folder."""

from __future__ import annotations

import functools
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import wilcoxon

from data_prep.table import render_table
from reckd import __version__
from reckd.errors import ReckdError
from reckd.train.io import read_array, read_json, write_with
from reckd.train.plan import slug
from reckd.train.ranking import check_metric
from reckd.train.teacher import load_teacher, teacher_ref

CLASSES = ("dense", "sparse")
TEACHER = "teacher"  # the teacher's own test predictions, as a side of a paired test
FORMATS = ("table", "csv", "json", "markdown")


@dataclass
class Cell:
    """One method on one genre (or one macro-average): the metric over seeds."""

    mean: float
    std: float
    seeds: int
    improvement: float | None = None  # % better than ``none`` (RMSE reduction, or ranking gain)
    asked: int = 0  # seeds requested for this cell (a cell with fewer finished is partial)
    p_none: float | None = None  # paired Wilcoxon test vs ``none`` over the test ratings (RMSE only)
    p_classical: float | None = None  # the same vs the best classical reference (chosen on validation)
    classical: str | None = None  # which reference that was
    beats_classical: bool = False  # lower mean squared error than that reference
    p_teacher: float | None = None  # the same vs the teacher's own predictions
    beats_teacher: bool = False  # lower mean squared error than the teacher


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
    methods: list[str]  # students, in request order
    teacher: dict  # the teacher's result.json
    made_with: dict  # distill.json: split/teacher paths and fingerprints, requested runs
    seeds: list[int]
    missing: list[tuple[str, str, int]] = field(default_factory=list)  # requested runs not finished
    metric: str = "rmse"
    references: list[str] = field(default_factory=list)  # classical columns (from a baselines folder)
    baselines: dict | None = None  # its baselines.json

    @property
    def columns(self) -> list[str]:
        return self.references + self.methods


def _cell(values: list[float], asked: int = 0) -> Cell:
    return Cell(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values),
                asked=asked or len(values))


def _key(metric: str) -> str:
    return "test_rmse" if metric == "rmse" else metric


def _read_runs(folder: Path, requested: list[tuple[str, str, int]]) -> dict[tuple[str, str, int], dict]:
    out = {}
    for g, m, s in requested:
        path = folder / slug(g) / slug(m) / f"seed{s}" / "result.json"
        if path.is_file():
            out[g, m, s] = read_json(path, "a run's result")
    return out


def collect(run_dir: Path, only: list[str] | None = None, metric: str = "rmse",
            baselines: Path | None = None) -> Report:
    """Rows per genre plus dense/sparse macro-average rows, read from a ``reckd distill`` folder.
    Macro-averages: per seed, the mean over the class's genres; then mean ± std over seeds.
    ``only``: report just these methods and reference columns (in this order). ``metric``: ``rmse`` or a ranking metric
    (``ndcg@10``, ``recall@10``, ``hr@10``). ``baselines``: a ``reckd baselines`` folder of the same
    split, shown as reference columns. Refuses a folder whose teacher changed or was trained on
    another split than the one recorded; lists requested runs that are not finished."""
    check_metric(metric)
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
    results = _read_runs(run_dir, requested)
    if not results:
        raise ReckdError(f"{run_dir}: no finished runs (no */*/seed*/result.json)")
    order = list(dict.fromkeys(m for _, m, _ in requested))
    references, base_info, base_results = [], None, {}
    if baselines is not None:
        base_info, base_results = _baselines(Path(baselines), info["split_fingerprint"], metric)
        references = list(dict.fromkeys(m for _, m, _ in base_results))
        if only:  # --methods names the reference columns to show, too
            references = [m for m in only if m in references]
        base_results = {k: v for k, v in base_results.items() if k[1] in references}
    methods = [m for m in (only or order) if m not in references and any(k[1] == m for k in results)]
    if only and len(methods) + len(references) < len(only):
        missing = sorted(set(only) - set(methods) - set(references))
        raise ReckdError(f"--methods: no finished runs of {', '.join(missing)} in {run_dir}"
                         + (f" or {baselines}" if baselines is not None else ""))
    results = {**results, **base_results}
    requested = requested + list(base_results)
    columns = references + methods
    asked: dict[tuple[str, str], int] = {}
    for g, m, _ in requested:
        asked[g, m] = asked.get((g, m), 0) + 1
    key = _key(metric)
    by_key: dict[tuple[str, str], dict[int, float]] = {}
    for (g, m, s), r in results.items():
        if m in columns and r.get(key) is not None:
            by_key.setdefault((g, m), {})[s] = r[key]
    klass = lambda g: manifest["genres"][g]["class"]
    genres = sorted({g for g, m in by_key if m in methods},
                    key=lambda g: (CLASSES.index(klass(g)) if klass(g) in CLASSES else 2, g))
    rows = []
    for genre in genres:
        cells = {m: _cell(list(by_key[genre, m].values()), asked[genre, m]) for m in columns if (genre, m) in by_key}
        t = teacher["genres"].get(genre, {})
        rows.append(Row(genre, klass(genre), t.get("test_ratings", 0), t.get(key), cells))
    for name in CLASSES:
        members = [r.genre for r in rows if r.klass == name]
        if not members:
            continue
        cells = {}
        for m in columns:
            seeds = set.intersection(*[set(by_key.get((g, m), {})) for g in members])
            if seeds:
                asked_seeds = min(asked.get((g, m), 0) for g in members)
                cells[m] = _cell([statistics.fmean(by_key[g, m][s] for g in members) for s in sorted(seeds)],
                                 asked_seeds)
        teacher_values = [teacher["genres"][g].get(key) for g in members]
        teacher_avg = statistics.fmean(teacher_values) if None not in teacher_values else None
        rows.append(Row(f"{name} macro-avg", name, sum(r.test_ratings for r in rows if r.genre in members),
                        teacher_avg, cells))
    sign = -1.0 if metric == "rmse" else 1.0  # lower RMSE is better; higher ranking metrics are
    for row in rows:
        base = row.methods.get("none")
        for m, cell in row.methods.items():
            if base is not None and m in methods:
                cell.improvement = sign * 100.0 * (cell.mean - base.mean) / base.mean
    missing = [k for k in requested if k not in results and k[1] in methods]
    seeds = sorted({s for _, m, s in requested if m in methods})
    report = Report(rows, methods, teacher, info, seeds, missing, metric, references, base_info)
    if metric == "rmse":
        _significance(report, run_dir, Path(baselines) if baselines is not None else None, results)
    return report


def _baselines(folder: Path, fingerprint: str, metric: str) -> tuple[dict, dict[tuple[str, str, int], dict]]:
    """The reference runs of a ``reckd baselines`` folder made from the same split."""
    info = read_json(folder / "baselines.json", "a `reckd baselines --out` summary")
    if info.get("split_fingerprint") != fingerprint:
        raise ReckdError(f"--baselines {folder}: made from split {info.get('split_fingerprint')}, but the students "
                         f"from split {fingerprint}")
    if metric != "rmse":
        raise ReckdError(f"--baselines with --metric {metric}: the classical rows are scored by RMSE only; "
                         f"use --metric rmse")
    return info, _read_runs(folder, [tuple(r) for r in info["runs"]])


def _significance(report: Report, run_dir: Path, baselines: Path | None, results: dict) -> None:
    """Paired two-sided Wilcoxon signed-rank tests over a genre's test ratings: each rating's squared
    error, averaged over the seeds both sides have, for every method against ``none``, against the
    classical reference with the best validation RMSE on that genre, and against the teacher (its own
    predictions, recomputed from its checkpoint). A macro row pools its genres' ratings, each genre against
    its own best classical reference. Runs without saved test predictions get no test (``None``)."""
    from reckd.data.split import load_split
    from reckd.train.loop import predict_rows

    data = load_split(report.made_with["split"])
    seeds: dict[tuple[str, str], set[int]] = {}
    for g, m, s in results:
        seeds.setdefault((g, m), set()).add(s)
    ratings = {r.genre: data.rating[data.rows("test", r.genre)].cpu().numpy() for r in report.rows
               if not r.genre.endswith("macro-avg")}
    for genre in ratings:
        seeds[genre, TEACHER] = {0}  # one set of predictions, not a seed's
    cache: dict[tuple, np.ndarray | None] = {}
    teacher = functools.cache(lambda: load_teacher(Path(report.made_with["teacher"])))  # loaded on first use

    def squared_error(genre: str, method: str, chosen: frozenset[int]) -> np.ndarray | None:
        if (genre, method, chosen) not in cache:
            if method == TEACHER:
                runs = [predict_rows(teacher(), None, data, data.rows("test", genre)).cpu().numpy()]
            else:
                folder = (baselines if method in report.references else run_dir) / slug(genre) / slug(method)
                files = [folder / f"seed{s}" / "test_predictions.npy" for s in sorted(chosen)]
                runs = [read_array(f) for f in files if f.is_file()]
                runs = runs if len(runs) == len(files) else []
            ok = runs and all(r.shape == ratings[genre].shape for r in runs)
            cache[genre, method, chosen] = np.mean([(r - ratings[genre]) ** 2 for r in runs], axis=0) if ok else None
        return cache[genre, method, chosen]

    def test(genres: list[str], method: str, other: str | dict[str, str]) -> tuple[float, float] | None:
        """(p-value, mean difference of squared errors method − other) over the genres' test ratings;
        ``other``: one column, or one per genre."""
        diffs = []
        for genre in genres:
            them = other if isinstance(other, str) else other[genre]
            mine, theirs = seeds.get((genre, method), set()), seeds.get((genre, them), set())
            if them in report.methods:  # students: the seeds both have
                mine = theirs = mine & theirs
            a = squared_error(genre, method, frozenset(mine)) if mine else None
            b = squared_error(genre, them, frozenset(theirs)) if theirs else None
            if a is None or b is None:
                return None
            diffs.append(a - b)
        d = np.concatenate(diffs)
        return (float(wilcoxon(d).pvalue) if np.any(d != 0) else 1.0), float(d.mean())

    klass = {r.genre: r.klass for r in report.rows}
    best = {}
    for genre in ratings:
        val = {m: statistics.fmean(results[genre, m, s]["val_rmse"] for s in seeds[genre, m])
               for m in report.references if (genre, m) in seeds}
        best[genre] = min(val, key=val.get) if val else None
    for row in report.rows:
        macro = row.genre.endswith("macro-avg")
        genres = [g for g in ratings if klass[g] == row.klass] if macro else [row.genre]
        for m, cell in row.methods.items():
            if m not in report.methods:
                continue
            if m != "none" and "none" in row.methods:
                outcome = test(genres, m, "none")
                cell.p_none = None if outcome is None else outcome[0]
            against = {g: best.get(g) for g in genres}
            if all(against.values()):
                outcome = test(genres, m, against)
                if outcome is not None:
                    names = set(against.values())
                    cell.classical = names.pop() if len(names) == 1 else "best per genre"
                    cell.p_classical, cell.beats_classical = outcome[0], outcome[1] < 0
            outcome = test(genres, m, TEACHER)
            if outcome is not None:
                cell.p_teacher, cell.beats_teacher = outcome[0], outcome[1] < 0


def against_teacher(report: Report) -> dict[str, dict[str, int]]:
    """Per method, over the genre rows (not the macro-averages): how many genres there are, on how many
    its mean over seeds is at or below the teacher's metric (at or above for a ranking metric), and on
    how many the paired test (:func:`_significance`) finds it better or worse than the teacher at p < 0.05."""
    genres = [r for r in report.rows if not r.genre.endswith("macro-avg") and r.teacher is not None]
    sign = 1.0 if report.metric == "rmse" else -1.0
    out = {}
    for m in report.methods:
        cells = [(r, r.methods[m]) for r in genres if m in r.methods]
        tested = [c for _, c in cells if c.p_teacher is not None and c.p_teacher < 0.05]
        out[m] = {"genres": len(cells), "at_least_as_good": sum(sign * (c.mean - r.teacher) <= 0 for r, c in cells),
                  "better_p05": sum(c.beats_teacher for c in tested),
                  "worse_p05": sum(not c.beats_teacher for c in tested)}
    return out


def records(report: Report) -> list[dict]:
    out = []
    name = report.metric.replace("@", "_at_")
    for r in report.rows:
        rec = {"genre": r.genre, "class": r.klass, "test_ratings": r.test_ratings, f"teacher_{name}": r.teacher}
        for m in report.columns:
            c = r.methods.get(m)
            rec[f"{m}_{name}"] = c.mean if c else None
            rec[f"{m}_std"] = c.std if c else None
            rec[f"{m}_seeds"] = c.seeds if c else 0
            rec[f"{m}_seeds_asked"] = c.asked if c else 0
            if m in report.methods:
                rec[f"{m}_improvement_pct"] = c.improvement if c else None
                rec[f"{m}_p_vs_none"] = c.p_none if c else None
                rec[f"{m}_p_vs_classical"] = c.p_classical if c else None
                rec[f"{m}_p_vs_teacher"] = c.p_teacher if c else None
        out.append(rec)
    return out


def document(report: Report) -> dict:
    """The JSON report: what made the numbers (split, teacher, seeds, methods, version) and the rows."""
    info, teacher = report.made_with, report.teacher
    return {"reckd_version": __version__, "metric": report.metric, "split": info["split"],
            "split_fingerprint": info["split_fingerprint"],
            "teacher": {"path": info["teacher"], "sha256": info["teacher_sha256"],
                        "test_rmse": teacher["test_rmse"], "test_ratings": teacher["test_ratings"],
                        "parameters": teacher["parameters"], "best_epoch": teacher["best_epoch"]},
            "seeds": report.seeds, "methods": report.methods, "references": report.references,
            "baselines": None if report.baselines is None else {
                k: report.baselines.get(k) for k in ("split", "models", "seeds", "chosen", "overall")},
            "partial": bool(report.missing), "missing_runs": [list(k) for k in report.missing],
            "against_teacher": against_teacher(report),
            "rows": records(report)}


def _marks(cell: Cell) -> str:
    """``*``/``**``: differs from ``none`` at p < 0.05 / 0.01; ``†``: better than the best classical row
    (chosen per genre on validation RMSE) at p < 0.05; ``▲``/``▼``: better / worse than the teacher at p < 0.05."""
    mark = ""
    if cell.p_none is not None and cell.p_none < 0.05:
        mark += "**" if cell.p_none < 0.01 else "*"
    if cell.p_classical is not None and cell.p_classical < 0.05 and cell.beats_classical:
        mark += "†"
    if cell.p_teacher is not None and cell.p_teacher < 0.05:
        mark += "▲" if cell.beats_teacher else "▼"
    return mark


def render(report: Report, fmt: str = "table") -> str:
    """``table`` (aligned text), ``markdown``, ``csv`` or ``json``. A cell with fewer finished seeds than
    requested is marked ``n=k/K``; significance marks as in :func:`_marks`. ``table`` and ``markdown`` end
    with a line per method counting the genres where it is at least as good as the teacher
    (:func:`against_teacher`)."""
    if fmt not in FORMATS:
        raise ReckdError(f"--format: expected {', '.join(FORMATS)}, found {fmt!r}")
    if fmt == "json":
        return json.dumps(document(report), indent=2)
    if fmt == "csv":
        recs = records(report)
        return render_table(list(recs[0]), [["" if v is None else str(v) for v in rec.values()] for rec in recs], "csv")
    header = ["genre", "class", "test n", "teacher"] + report.columns
    body = []
    for r in report.rows:
        line = [r.genre, r.klass, str(r.test_ratings), "" if r.teacher is None else f"{r.teacher:.4f}"]
        for m in report.columns:
            c = r.methods.get(m)
            if c is None:
                line.append("—")
                continue
            text = f"{c.mean:.4f} ± {c.std:.4f}" if c.seeds > 1 or m in report.methods else f"{c.mean:.4f}"
            if m != "none" and c.improvement is not None:
                text += f" ({c.improvement:+.2f}%)"
            text += _marks(c)
            if c.seeds < c.asked:
                text += f" n={c.seeds}/{c.asked}"
            line.append(text)
        if fmt == "markdown":
            line = [x.replace("macro-avg", "**macro-avg**") for x in line]
        body.append(line)
    better = "at or below" if report.metric == "rmse" else "at or above"
    counts = [f"{m}: {better} the teacher on {n['at_least_as_good']} of {n['genres']} genres"
              + (f" (paired test, p < 0.05: better on {n['better_p05']}, worse on {n['worse_p05']})"
                 if report.metric == "rmse" else "")
              for m, n in against_teacher(report).items() if n["genres"]]
    return render_table(header, body, fmt) + "\n" + "".join(f"\n{line}" for line in counts)


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
    ax.set_ylabel(f"{report.metric} improvement over none (%)")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.legend()
    fig.tight_layout()
    write_with(Path(path), lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
