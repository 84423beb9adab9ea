"""Classical reference rows: scikit-surprise's BaselineOnly, SVD, SVD++ and KNNBaseline on a split.

Each model is fit two ways: *all-genre* (method ``<model>@all``, on the teacher's training rows, as
the teacher is) and *genre-only* (method ``<model>``, on one genre's training rows, as a student is).
Both are scored on every genre's test rows, the all-genre fits also on the teacher's overall test rows.
Hyper-parameters are chosen on the validation split only. Results use ``reckd distill``'s run-folder
format (``OUT/<genre>/<method>/seed<k>/result.json``) so that they sit beside the students.
"""

from __future__ import annotations

import itertools
import operator
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_prep.atomic import read_json, write_json
from reckd.train.io import write_array
from data_prep.folder import claim
from reckd.data.split import SplitData
from reckd.errors import ReckdError
from reckd.train.plan import normal, slug, unique
from reckd.train.tune import grid_points

COMMAND = "reckd baselines"
INSTALL_HINT = "reckd baselines needs scikit-surprise: pip install 'reckd[classical]'"
ALL = "all"  # the scope of an all-genre fit; its method is named f"{model}@all"
CLASSES = ("dense", "sparse")
# SVD's grid, searched on validation RMSE: 16 points, each fit 0.3-1 s on ML-100K's 80k training ratings.
DEFAULT_GRID: dict[str, tuple] = {"n_factors": (50, 100), "n_epochs": (20, 60),
                                  "lr_all": (0.005, 0.007), "reg_all": (0.02, 0.1)}
# SVD++ is ~100x slower per epoch than SVD in surprise (1.3 s vs 0.013 s, 50 factors, ML-100K), too slow for
# a grid of its own: it takes SVD's chosen values with the epochs capped here. On ML-100K 40 epochs reach the
# validation RMSE of 60 (0.9130 vs 0.9133, SVD's all-genre choice) in two thirds of the time.
SVDPP_MAX_EPOCHS = 40
GRID_SEED = 0  # the random_state of every grid fit, whatever seeds the final fits use


@dataclass(frozen=True)
class Model:
    """A surprise algorithm and the parameters it always gets (surprise 1.1.5's defaults, spelled out so
    that every result records them)."""

    algorithm: str
    fixed: dict
    stochastic: bool  # takes a random_state and is fit once per seed; else fit once, recorded as seed 0
    tuned: bool  # takes the values chosen on SVD's grid


_ALS = {"method": "als", "n_epochs": 10, "reg_u": 15, "reg_i": 10}
MODELS: dict[str, Model] = {
    "baselineonly": Model("BaselineOnly", {"bsl_options": _ALS}, stochastic=False, tuned=False),
    "svd": Model("SVD", {"biased": True, "init_mean": 0, "init_std_dev": 0.1}, stochastic=True, tuned=True),
    "svdpp": Model("SVDpp", {"init_mean": 0, "init_std_dev": 0.1, "cache_ratings": True},
                   stochastic=True, tuned=True),
    "knnbaseline": Model("KNNBaseline", {"k": 40, "min_k": 1, "bsl_options": _ALS, "sim_options": {
        "name": "pearson_baseline", "user_based": False, "shrinkage": 100, "min_support": 1}},
        stochastic=False, tuned=False),
}


def method_name(model: str, scope: str) -> str:
    return f"{model}@{ALL}" if scope == ALL else model


def _surprise():
    """Import scikit-surprise, or say which extra installs it."""
    try:
        import surprise
    except ImportError:
        raise ReckdError(INSTALL_HINT) from None
    return surprise


def _fit_predict(model: str, params: dict, seed: int, train: tuple[np.ndarray, np.ndarray, np.ndarray],
                 query: tuple[np.ndarray, np.ndarray], scale: tuple[float, float]) -> tuple[np.ndarray, float]:
    """Fit one surprise model on (user, item, rating) arrays and predict (user, item) pairs. Returns the
    predictions, clipped to ``scale`` by surprise's ``predict``, and the seconds taken."""
    import pandas as pd

    surprise = _surprise()
    start = time.perf_counter()
    frame = pd.DataFrame({"user": train[0], "item": train[1], "rating": train[2]})
    trainset = surprise.Dataset.load_from_df(frame, surprise.Reader(rating_scale=scale)).build_full_trainset()
    spec = MODELS[model]
    options = {**spec.fixed, **params}
    if spec.stochastic:
        options["random_state"] = seed
    if spec.algorithm in ("BaselineOnly", "KNNBaseline"):
        options["verbose"] = False
    algo = getattr(surprise, spec.algorithm)(**options).fit(trainset)
    predictions = algo.test(list(zip(query[0].tolist(), query[1].tolist(), itertools.repeat(0.0))))
    estimates = np.fromiter(map(operator.attrgetter("est"), predictions), dtype=np.float64, count=len(predictions))
    return estimates, time.perf_counter() - start


def _rmse(estimates: np.ndarray, ratings: np.ndarray) -> float:
    return float(np.sqrt(np.mean((estimates - ratings) ** 2)))


class _Split:
    """The split's rows as numpy arrays, and the rows each fit trains on, predicts and is scored on.

    A scope is ``all`` (an all-genre fit) or a genre (a genre-only fit); a choice scope, where SVD's
    hyper-parameters are chosen, is ``all`` or a genre class."""

    def __init__(self, data: SplitData) -> None:
        self.data = data
        self.user, self.item = data.user.cpu().numpy(), data.item.cpu().numpy()
        self.rating = data.rating.cpu().numpy().astype(np.float64)
        self.scale = (data.rating_min, data.rating_max)
        self.klass = {g: data.manifest["genres"][g]["class"] for g in data.genres}

    def rows(self, part: str, genre: str | None = None, teacher_only: bool = False) -> np.ndarray:
        return self.data.rows(part, genre, teacher_only).cpu().numpy()

    def train(self, scope: str) -> np.ndarray:
        return self.rows("train", teacher_only=True) if scope == ALL else self.rows("train", scope)

    def query(self, scope: str) -> np.ndarray:
        """The rows a fit predicts, sorted: every val and test row for ``all``, else the genre's."""
        genre = None if scope == ALL else scope
        return np.sort(np.concatenate([self.rows("val", genre), self.rows("test", genre)]))

    def scored(self, part: str, genre: str | None) -> np.ndarray:
        """Rows of ``part`` (val/test) that score a fit on ``genre``; None: the teacher's overall rows."""
        return self.rows(part, genre, teacher_only=genre is None)

    def triples(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.user[rows], self.item[rows], self.rating[rows]

    def pairs(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.user[rows], self.item[rows]

    def choice_scope(self, scope: str) -> str:
        return ALL if scope == ALL else self.klass[scope]

    def class_genres(self, klass: str) -> list[str]:
        """Every genre of a class with training and validation rows, whichever genres a run reports, so
        that a class's choice does not depend on them."""
        return [g for g in self.data.genres if self.klass[g] == klass
                and self.rows("train", g).size and self.rows("val", g).size]


def _request(model: str, scope: str, grid: dict[str, tuple], svdpp_max_epochs: int,
             fingerprint: str | None) -> dict:
    """What a run's config says before the grid is searched; a finished run is kept when its recorded
    config, less the chosen values (``params``, ``svd_choice``), equals this."""
    spec = MODELS[model]
    request = {"model": model, "algorithm": f"surprise.{spec.algorithm}", "fixed": spec.fixed,
               "split_fingerprint": fingerprint, "trained_on": "the teacher's training rows (all genres)"
               if scope == ALL else "the genre's training rows"}
    if spec.tuned:
        request |= {"grid": {k: list(v) for k, v in sorted(grid.items())}, "grid_seed": GRID_SEED,
                    "chosen_on": "SVD's validation RMSE on the teacher's validation rows" if scope == ALL
                    else "SVD's macro-average validation RMSE over the genres of the genre's class"}
    if model == "svdpp":
        request |= {"svdpp": "SVD's chosen values, n_epochs capped at max_epochs", "max_epochs": svdpp_max_epochs}
    return normal(request)


def _params(model: str, svd: dict, svdpp_max_epochs: int) -> dict:
    """A tuned model's hyper-parameters from SVD's chosen ones."""
    return {**svd, "n_epochs": min(svd["n_epochs"], svdpp_max_epochs)} if model == "svdpp" else dict(svd)


def _finished(path: Path, request: dict) -> dict | None:
    """The result in ``path`` when it exists and was made with ``request``; None when it is to be (re)fit."""
    if not (path.is_file() and path.with_name("test_predictions.npy").is_file()):
        return None
    result = read_json(path, "a baseline result")
    recorded = {k: v for k, v in result.get("config", {}).items() if k not in ("params", "svd_choice")}
    return result if recorded == request else None


def _check(data: SplitData, genres: list[str] | None, models: tuple[str, ...], seeds: tuple[int, ...],
           grid: dict[str, tuple]) -> list[str]:
    """The genres to score; a ReckdError naming the argument or file for anything the baselines cannot use."""
    manifest = data.path / "manifest.json"
    unique(models, "models"), unique(seeds, "seeds")
    if unknown := [m for m in models if m not in MODELS]:
        raise ReckdError(f"models: expected some of {', '.join(MODELS)}, found {', '.join(unknown)}")
    for g in data.genres:
        if "class" not in data.manifest["genres"][g]:
            raise ReckdError(f"{manifest}: genre {g!r} has no 'class'; expected a manifest written by "
                             f"`data_prep split`")
    if any(MODELS[m].tuned for m in models) and (sorted(grid) != sorted(DEFAULT_GRID) or not all(grid.values())):
        raise ReckdError(f"grid: expected a non-empty tuple for each of {', '.join(sorted(DEFAULT_GRID))}, "
                         f"found {grid}")
    if genres is None:
        genres = [g for g in data.genres if data.manifest["genres"][g]["class"] in CLASSES]
    unique(tuple(genres), "genres")
    for g in genres:
        data.genre_index(g)  # raises, naming the known genres
        if (klass := data.manifest["genres"][g]["class"]) not in CLASSES:
            raise ReckdError(f"genres: expected a dense or sparse genre, found {g!r}, {klass} in {manifest}")
        if data.rows("train", g).numel() == 0 or data.rows("test", g).numel() == 0:
            raise ReckdError(f"genres: {g!r} has no training or no test ratings in {data.path / 'ratings.parquet'}")
    if data.rows("train", teacher_only=True).numel() == 0:
        raise ReckdError(f"{data.path / 'ratings.parquet'}: expected teacher training rows (split 0, teacher "
                         f"true), found none")
    return list(genres)


def _choose_svd(split: _Split, scopes: list[str], grid: dict[str, tuple], jobs: int = 1) -> dict[str, dict]:
    """SVD's grid point with the lowest validation RMSE for each choice scope: for ``all``, an all-genre
    fit scored on the teacher's validation rows; for a class, genre-only fits on each of its genres,
    scored by the macro-average of their validation RMSEs. Test rows are never looked at.
    Returns {scope: {"params", "val_rmse", "genres", "table"}} (``table``: every point, best first)."""
    from joblib import Parallel, delayed

    points = grid_points({name: grid[name] for name in sorted(grid)})
    members = {scope: [ALL] if scope == ALL else split.class_genres(scope) for scope in scopes}
    for scope, genres in members.items():
        if not genres:
            raise ReckdError(f"{split.data.path / 'ratings.parquet'}: expected a {scope} genre with training and "
                             f"validation ratings to choose SVD's hyper-parameters on, found none")
    fits = [(scope, genre, k) for scope in scopes for genre in members[scope] for k in range(len(points))]
    val = {genre: split.scored("val", None if genre == ALL else genre)
           for genre in {g for gs in members.values() for g in gs}}
    outcomes = Parallel(n_jobs=jobs)(
        delayed(_fit_predict)("svd", points[k], GRID_SEED, split.triples(split.train(genre)),
                              split.pairs(val[genre]), split.scale) for _, genre, k in fits)
    scores: dict[tuple[str, int], list[float]] = {}
    for (scope, genre, k), (estimates, _) in zip(fits, outcomes):
        scores.setdefault((scope, k), []).append(_rmse(estimates, split.rating[val[genre]]))
    chosen = {}
    for scope in scopes:
        table = sorted((statistics.fmean(scores[scope, k]), k) for k in range(len(points)))
        chosen[scope] = {"params": points[table[0][1]], "val_rmse": table[0][0], "genres": members[scope],
                         "table": [{**points[k], "val_rmse": v} for v, k in table]}
    return chosen


def fit_baselines(data: SplitData, out: Path,
                  models: tuple[str, ...] = ("baselineonly", "svd", "svdpp", "knnbaseline"),
                  seeds: tuple[int, ...] = (0, 1, 2), genres: list[str] | None = None,
                  grid: dict[str, tuple] | None = None, svdpp_max_epochs: int = SVDPP_MAX_EPOCHS,
                  jobs: int = 1) -> list[dict]:
    """Fit each model all-genre (``<model>@all``) and genre-only (``<model>``); write one
    ``OUT/<genre>/<method>/seed<k>/result.json`` per genre, method and seed, and ``OUT/baselines.json``.

    ``genres``: the genres scored (default: every dense and sparse one). ``grid``: SVD's grid (default
    ``DEFAULT_GRID``); SVD++ takes SVD's choice with at most ``svdpp_max_epochs`` epochs. Deterministic
    models (BaselineOnly, KNNBaseline) are fit once, recorded as seed 0. A finished run is kept when its
    recorded config equals the requested one. ``jobs``: fits run in parallel (joblib processes).
    Returns every run's result, sorted by (genre, method, seed).

    >>> from reckd.data.split import load_split
    >>> results = fit_baselines(load_split("runs/ml-100k/split"), Path("runs/ml-100k/baselines"))  # doctest: +SKIP
    """
    surprise = _surprise()
    from joblib import Parallel, delayed  # a dependency of scikit-surprise

    grid = dict(DEFAULT_GRID if grid is None else grid)
    models, seeds = tuple(models), tuple(seeds)
    genres = _check(data, genres, models, seeds, grid)
    split, out = _Split(data), Path(out)
    fingerprint = data.manifest.get("fingerprint")  # absent on splits made before data_prep wrote one
    fits = [(model, scope, seed) for model in models for scope in (ALL, *genres)
            for seed in (seeds if MODELS[model].stochastic else (0,))]
    scored = {scope: genres if scope == ALL else [scope] for scope in (ALL, *genres)}
    path = lambda genre, method, seed: out / slug(genre) / slug(method) / f"seed{seed}" / "result.json"
    requests = {(m, scope): _request(m, scope, grid, svdpp_max_epochs, fingerprint)
                for m in models for scope in (ALL, *genres)}
    made_with = {"split": str(Path(data.path).resolve()), "split_fingerprint": fingerprint,
                 "surprise": surprise.__version__, "models": list(models), "seeds": list(seeds), "genres": genres,
                 "grid": {k: list(v) for k, v in sorted(grid.items())}, "grid_seed": GRID_SEED,
                 "svdpp_max_epochs": svdpp_max_epochs,
                 "deterministic": {m: not MODELS[m].stochastic for m in models},
                 "runs": [[g, method_name(m, scope), seed] for m, scope, seed in fits for g in scored[scope]]}

    with claim(out, COMMAND):
        before = _same_split(out / "baselines.json", made_with)
        if not before:  # marks the folder as this split's before any run is written
            write_json(out / "baselines.json", {**made_with, "svd_choice": {}, "chosen": {}, "overall": {}})
        done = {(g, method_name(m, scope), seed): _finished(path(g, method_name(m, scope), seed),
                                                            requests[m, scope])
                for m, scope, seed in fits for g in scored[scope]}
        todo = [(m, scope, seed) for m, scope, seed in fits
                if any(done[g, method_name(m, scope), seed] is None for g in scored[scope])]
        # SVD's choice: the one finished runs recorded (their grid was this one), else searched anew
        choice: dict[str, dict] = {}
        for (genre, method, _), result in done.items():
            if result is not None and "svd_choice" in result["config"]:
                scope = split.choice_scope(ALL if method.endswith(f"@{ALL}") else genre)
                kept = before.get("svd_choice", {}).get(scope, {})
                choice[scope] = kept if kept.get("params") == result["config"]["svd_choice"] \
                    else {"params": result["config"]["svd_choice"]}
        search = sorted({split.choice_scope(scope) for m, scope, _ in todo if MODELS[m].tuned} - set(choice))
        choice |= _choose_svd(split, search, grid, jobs) if search else {}

        def params(model: str, scope: str) -> dict:
            tuned = MODELS[model].tuned
            return _params(model, choice[split.choice_scope(scope)]["params"], svdpp_max_epochs) if tuned else {}

        order = sorted(todo, key=lambda fit: (fit[0] != "svdpp", fit[1] != ALL))  # slowest first
        outcomes = Parallel(n_jobs=jobs)(
            delayed(_fit_predict)(model, params(model, scope), seed, split.triples(split.train(scope)),
                                  split.pairs(split.query(scope)), split.scale) for model, scope, seed in order)
        for (model, scope, seed), (estimates, seconds) in zip(order, outcomes):
            config = {**requests[model, scope], "params": params(model, scope)}
            if MODELS[model].tuned:
                config["svd_choice"] = choice[split.choice_scope(scope)]["params"]
            for result, predictions in _score(split, model, scope, seed, scored[scope], estimates, seconds, config):
                key = (result["genre"], result["method"], seed)
                if done[key] is None:
                    write_array(path(*key).with_name("test_predictions.npy"), predictions)
                    write_json(path(*key), result)
                    done[key] = result
        results = sorted(done.values(), key=lambda r: (r["genre"], r["method"], r["seed"]))
        chosen = {method_name(m, ALL) if scope == ALL else f"{m} ({scope})":
                  _params(m, c["params"], svdpp_max_epochs)
                  for m in models if MODELS[m].tuned for scope, c in sorted(choice.items())}
        write_json(out / "baselines.json", {**made_with, "svd_choice": choice, "chosen": chosen,
                                            "overall": overall_rmse(results)})
    return results


def _score(split: _Split, model: str, scope: str, seed: int, genres: list[str], estimates: np.ndarray,
           seconds: float, config: dict) -> list[tuple[dict, np.ndarray]]:
    """One fit's result per genre, and its test predictions (in the genre's test-row order, as a
    student's), from its predictions of ``split.query(scope)``; an all-genre fit's results also carry
    its RMSE on the teacher's overall validation and test rows."""
    query = split.query(scope)

    def predicted(part: str, genre: str | None) -> np.ndarray:
        return estimates[np.searchsorted(query, split.scored(part, genre))]

    def rmse(part: str, genre: str | None) -> tuple[int, float]:
        rows = split.scored(part, genre)
        return rows.size, _rmse(predicted(part, genre), split.rating[rows])

    overall = {}
    if scope == ALL:
        (_, val), (test_n, test) = rmse("val", None), rmse("test", None)
        overall = {"overall_val_rmse": val, "overall_test_rmse": test, "overall_test_ratings": test_n}
    results = []
    for genre in genres:
        (_, val), (test_n, test) = rmse("val", genre), rmse("test", genre)
        results.append(({"genre": genre, "method": method_name(model, scope), "seed": seed, "val_rmse": val,
                        "test_rmse": test, "test_ratings": test_n, "train_ratings": int(split.train(scope).size),
                        "seconds": seconds, "deterministic": not MODELS[model].stochastic, "config": config,
                        **overall}, predicted("test", genre)))
    return results


def overall_rmse(results: list[dict]) -> dict[str, dict]:
    """The all-genre methods' RMSE on the teacher's overall test rows: per seed, and mean ± std (sample
    standard deviation, 0 for a single seed) over seeds."""
    per_seed: dict[str, dict[int, dict]] = {}
    for r in results:
        if "overall_test_rmse" in r:
            per_seed.setdefault(r["method"], {})[r["seed"]] = r
    summary = {}
    for method, runs in sorted(per_seed.items()):
        test = [runs[s]["overall_test_rmse"] for s in sorted(runs)]
        summary[method] = {"test_rmse_mean": statistics.fmean(test),
                           "test_rmse_std": statistics.stdev(test) if len(test) > 1 else 0.0,
                           "seeds": {str(s): runs[s]["overall_test_rmse"] for s in sorted(runs)},
                           "val_rmse": {str(s): runs[s]["overall_val_rmse"] for s in sorted(runs)},
                           "test_ratings": runs[min(runs)]["overall_test_ratings"]}
    return summary


def _same_split(path: Path, made_with: dict) -> dict:
    """The folder's previous ``baselines.json`` ({} if none); refuses one made from another split."""
    if not path.is_file():
        return {}
    before = read_json(path, "a baselines summary")
    if before.get("split_fingerprint") and made_with["split_fingerprint"]:
        same = before["split_fingerprint"] == made_with["split_fingerprint"]
    else:
        same = Path(before.get("split", "")).resolve() == Path(made_with["split"]).resolve()
    if not same:
        raise ReckdError(f"{path}: made from split {before.get('split')} (fingerprint "
                         f"{before.get('split_fingerprint')}), not from {made_with['split']} (fingerprint "
                         f"{made_with['split_fingerprint']}); choose another out folder")
    return before
