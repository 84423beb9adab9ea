"""Tune the students on validation only: every grid point is a ``reckd distill`` of the same genres and
methods with the same seeds (one by default), and per method spec and genre class the point with the
lowest macro-average validation RMSE (the mean over the class's genres and the seeds of each run's
best-epoch ``val_rmse``) is chosen, ties to the earlier point — or, with ``choose="genre"``, per method
spec and genre, on that genre's own validation RMSE. Every method, ``none`` included, gets the same grid:
the same budget.

    OUT/point<k>/    a distill folder per grid point (resumable, readable by ``reckd report``); the runs of
                     all points are trained by one pool of workers (:func:`~reckd.train.distill.distill_each`)
    OUT/tuned.json   the grid, its points, the validation table, the choice, split and teacher fingerprints

``reckd distill --tuned OUT/tuned.json`` (:func:`load_tuned` → ``DistillConfig.tuned``) trains each
run with the values chosen for its method and genre (or genre class), recorded in its ``config.json``.

Example::

    document = tune(data, teacher_dir, Path("runs/tune"), DistillConfig(methods=("none", "kd")), DEFAULT_GRID)
    config = DistillConfig(methods=("none", "kd"), tuned=load_tuned(Path("runs/tune/tuned.json"), data, teacher_dir))
"""

from __future__ import annotations

import dataclasses
import itertools
import statistics
import sys
from pathlib import Path
from typing import Sequence

from data_prep.folder import claim
from data_prep.table import render_table
from reckd import __version__
from reckd.data.split import SplitData
from reckd.errors import ReckdError
from reckd.losses import split_spec
from reckd.train.distill import DistillConfig, distill_each
from reckd.train.io import read_json, write_json
from reckd.train.plan import Run, differences, normal, select_genres, unique
from reckd.train.student import apply_tuned, method_keys, tuned_value
from reckd.train.teacher import teacher_ref

COMMAND = "reckd tune"
CHOICES = ("class", "genre")  # what one choice is made for: a genre class (its macro validation RMSE) or a genre
# 8 points, the same for every method. It holds the untuned students' own values (point0: input dropout 0,
# lr 3e-3, weight decay 0), so a choice is never worse on validation than the untuned student. Probes on the
# README split with the 0.2 student (seed 0, 60 epochs, macro validation RMSE of `none`, input dropout 0.5,
# lr 3e-3): weight decay is the strongest lever for these small genre models — dense 0.9358 (wd 0) →
# 0.9351 (1e-3) → 0.9337 (3e-3) → 0.9338 (1e-2) → 0.9596 (3e-2); sparse 0.9712 → 0.9684 → 0.9666 → 0.9558
# → 0.9535 — so it spans 0 to 3e-2. Input dropout 0.5 beat 0 and 0.3 for `none` in every cell of the
# 0.1 grid, while `kd+aug` chose 0 or 0.3 there: both ends stay. lr 3e-3 gave the best `none` point of both
# classes on the 0.2 student's 12-point grid (1e-3 won only dense cells at input dropout 0, by ≤ 0.0022), so
# lr 1e-3 is dropped to afford weight decay's four values.
DEFAULT_GRID: dict[str, tuple] = {"model.input_dropout": (0.0, 0.5), "train.lr": (3e-3,),
                                  "train.weight_decay": (0.0, 1e-3, 1e-2, 3e-2)}


def check_grid(grid: dict[str, object]) -> dict[str, tuple]:
    """``grid`` with each key a tunable option and its values typed, in range and given once, keys sorted
    (so that point ``k`` is the same whatever order the flags came in); errors name ``--grid``."""
    if not grid:
        raise ReckdError("--grid: expected at least one KEY=V1,V2,…, found none")
    checked = {}
    for key in sorted(grid):
        values = grid[key]
        values = (values,) if isinstance(values, (str, int, float)) else tuple(values)
        checked[key] = unique(tuple(tuned_value(key, v, "--grid") for v in values), f"--grid {key}")
    return checked


def grid_points(grid: dict[str, tuple]) -> list[dict[str, object]]:
    """Every combination of the grid's values, the last key varying fastest."""
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def tune(data: SplitData, teacher_dir: Path, out: Path, config: DistillConfig, grid: dict[str, object],
         seeds: tuple[int, ...] = (0,), workers: int | None = None, progress: bool = True,
         retrain_changed: bool = False, choose: str = "class") -> dict:
    """Distil ``config``'s genres and methods per point of ``grid``, once per seed of ``seeds``, into
    ``out/point<k>/``, choose per method spec and genre class (``choose="class"``) or genre (``"genre"``)
    on validation RMSE averaged over the seeds (more seeds: a choice less swayed by one seed's luck), write
    ``out/tuned.json`` and return it. Finished runs are kept, so an interrupted tune resumes, and the same
    grid chosen the other way (or with more seeds) re-trains nothing it has. A point whose run stops on a
    non-finite loss is reported and never chosen for that run's method and class or genre."""
    if choose not in CHOICES:
        raise ReckdError(f"--choose: expected one of {', '.join(CHOICES)}, found {choose!r}")
    if config.tuned:
        raise ReckdError("--tuned: tune searches from the untuned students; pass a config without tuned values")
    grid = check_grid(grid)
    points = grid_points(grid)
    base = dataclasses.replace(config, seeds=tuple(seeds))
    base.check()
    for name in method_keys(grid):  # a method option is searched for that method's runs only
        others = [m for m in config.methods if split_spec(m)[0] != name]
        if others:
            raise ReckdError(f"--grid {name}.…: {name!r}'s options are searched on its runs only, but --methods "
                             f"also holds {', '.join(map(repr, others))}; tune those in another `reckd tune`")
    point_configs = []
    for values in points:
        model, train = apply_tuned(base.model, base.train, values, "--grid")
        options = {**base.options}
        for name, chosen in method_keys(values).items():
            options[name] = {**options.get(name, {}), **chosen}
        point_configs.append(dataclasses.replace(base, model=model, train=train, options=options))
    genres = select_genres(data, config.genres)
    classes: dict[str, list[str]] = {}
    for genre in genres:
        classes.setdefault(data.manifest["genres"][genre]["class"], []).append(genre)
    scopes = classes if choose == "class" else {genre: [genre] for genre in genres}
    ref = teacher_ref(teacher_dir, data)  # refused before the folder is made
    with claim(out, COMMAND) as out:
        if progress:
            for k, values in enumerate(points):
                print(f"reckd tune: point{k}: {_spell(values)}", file=sys.stderr)
        # one pool of workers over every point's runs (no core idles while a point finishes its largest run)
        done = distill_each(data, teacher_dir, [(out / f"point{k}", c) for k, c in enumerate(point_configs)],
                            progress, workers, retrain_changed)
        for k, (_, failed) in enumerate(done):
            if failed:
                print(f"reckd tune: point{k} is not chosen where its runs stopped: {len(failed)} run(s) stopped "
                      f"on a non-finite loss", file=sys.stderr)
        table = {method: {c: [_macro_val(out / f"point{k}", members, method, base.seeds)
                              for k in range(len(points))]
                          for c, members in sorted(scopes.items())} for method in config.methods}
        chosen_point = {method: {c: argmin(row, method, c) for c, row in by_class.items()}
                        for method, by_class in table.items()}
        document = {"grid": {key: list(values) for key, values in grid.items()}, "points": points,
                    "genres": dict(sorted(classes.items())), "seeds": list(base.seeds), "choose": choose,
                    "validation": table, "chosen_point": chosen_point,
                    "chosen": {method: {c: points[k] for c, k in by_class.items()}
                               for method, by_class in chosen_point.items()},
                    "split": str(Path(data.path).resolve()), "split_fingerprint": data.fingerprint,
                    "teacher": str(ref.path.resolve()), "teacher_sha256": ref.sha256,
                    "config": base.recorded(), "reckd_version": __version__}
        write_json(out / "tuned.json", document)
    return document


def _macro_val(point_dir: Path, genres: list[str], method: str, seeds: tuple[int, ...]) -> float | None:
    """The mean validation RMSE of ``method`` over ``genres`` and ``seeds`` at one point (each seed's
    macro-average, averaged); None if a run did not finish."""
    values = []
    for genre in genres:
        for seed in seeds:
            result = Run(genre, method, seed).folder(point_dir) / "result.json"
            if not result.is_file():
                return None
            values.append(read_json(result, "a run's result")["val_rmse"])
    return statistics.fmean(values)


def argmin(row: list[float | None], method: str, scope: str) -> int:
    """The point with the lowest value, the earlier one on a tie (points that did not finish, None, are
    never chosen); an error names ``method`` and ``scope`` when none finished."""
    finished = [k for k, value in enumerate(row) if value is not None]
    if not finished:
        raise ReckdError(f"--grid: no grid point finished every {scope} run of {method!r} (each stopped on "
                         f"a non-finite loss); try smaller learning rates")
    return min(finished, key=lambda k: (row[k], k))


def _spell(values: dict[str, object]) -> str:
    return ", ".join(f"{key}={value:g}" for key, value in values.items())


def load_tuned(paths: str | Path | Sequence[str | Path], data: SplitData, teacher_dir: Path,
               config: DistillConfig | None = None) -> dict[str, dict[str, dict[str, object]]]:
    """The chosen values of one or more ``tuned.json`` (for ``DistillConfig.tuned``: ``{method: {class or
    genre: values}}``), each refused unless it was tuned on this very split and teacher: values chosen on
    another split's validation ratings may have seen this split's test ratings. Several files (a tune of
    the dense genres and one of the sparse, say) are merged; a method chosen for the same class or genre
    by two of them is an error naming both. With ``config`` (the distill request), options that differ
    from those a grid was run with (say ``--epochs``), other than the tuned keys and the seed, are named
    in a warning."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not paths:
        raise ReckdError("--tuned: expected one or more tuned.json files, found none")
    merged: dict[str, dict[str, dict[str, object]]] = {}
    chosen_by: dict[tuple[str, str], Path] = {}
    for path in paths:
        for method, scopes in _load_one(Path(path), data, teacher_dir, config).items():
            for scope, values in scopes.items():
                if (method, scope) in chosen_by:
                    raise ReckdError(f"--tuned: {method!r} on {scope} is chosen by both {chosen_by[method, scope]} "
                                     f"and {path}; pass only one of them")
                chosen_by[method, scope] = Path(path)
                merged.setdefault(method, {})[scope] = values
    return merged


def _load_one(path: Path, data: SplitData, teacher_dir: Path,
              config: DistillConfig | None) -> dict[str, dict[str, dict[str, object]]]:
    document = read_json(path, "a `reckd tune` result (tuned.json)", keys=("chosen", "split_fingerprint",
                                                                             "teacher_sha256"))
    if document["split_fingerprint"] != data.fingerprint:
        raise ReckdError(f"--tuned {path}: chosen on split {document['split_fingerprint']} "
                         f"({document.get('split')}), but {data.path} is split {data.fingerprint}; run "
                         f"`reckd tune` on {data.path}")
    ref = teacher_ref(teacher_dir, data)
    if document["teacher_sha256"] != ref.sha256:
        raise ReckdError(f"--tuned {path}: chosen with the teacher whose checkpoint has SHA-256 "
                         f"{document['teacher_sha256']} ({document.get('teacher')}), but --teacher {teacher_dir} "
                         f"has {ref.sha256}; run `reckd tune` with this teacher")
    chosen = document["chosen"]
    if not (isinstance(chosen, dict) and all(isinstance(v, dict) for v in chosen.values())):
        raise ReckdError(f"--tuned {path}: expected chosen as {{method: {{class or genre: {{KEY: VALUE}}}}}}, "
                         f"found {chosen!r}")
    if config is not None and isinstance(document.get("config"), dict):
        tuned_keys = {*document.get("grid", {}), "train.seed"}
        sections = ("model", "train", "augment", "aug_weight", "options", "min_steps", "min_batch")
        recorded = {k: document["config"].get(k) for k in sections}
        as_recorded = config.recorded()
        requested = normal({k: as_recorded[k] for k in sections})
        changed = [d for d in differences(recorded, requested)
                   if d.split(" ")[0].removeprefix("options.") not in tuned_keys]
        if changed:
            print(f"reckd: warning: --tuned {path}: the grid ran with other options than this request: "
                  f"{'; '.join(changed)}", file=sys.stderr)
    return chosen


def render_tuned(document: dict, fmt: str = "table") -> str:
    """The validation table of a tuned.json: one row per point, a column per method × class (macro
    validation RMSE, ``*`` on the chosen point), then the chosen values."""
    columns = [(m, c) for m, by_class in document["validation"].items() for c in by_class]
    keys = list(document["grid"])
    header = ["point", *keys, *(f"{m} {c}" for m, c in columns)]
    body = []
    for k, values in enumerate(document["points"]):
        cells = [f"point{k}", *(f"{values[key]:g}" for key in keys)]
        for m, c in columns:
            value = document["validation"][m][c][k]
            mark = "*" if document["chosen_point"][m][c] == k else ""
            cells.append("stopped" if value is None else f"{value:.4f}{mark}")
        body.append(cells)
    per_class = document.get("choose", "class") == "class"  # a scope is a class ("dense genres") or a genre
    chosen = "\n".join(f"chosen for {m} on {f'{c} genres' if per_class else c}: "
                       f"point{document['chosen_point'][m][c]} ({_spell(document['chosen'][m][c])})"
                       for m, c in columns)
    return f"{render_table(header, body, fmt, left=1)}\n\n{chosen}"
