"""Classical reference rows (scikit-surprise) on the small synthetic split: they learn the planted
structure, write distill's run-folder format, fit deterministic models once, resume only equal configs."""

from __future__ import annotations

import shutil
import statistics
import sys

import polars as pl
import pytest

from data_prep.atomic import read_json
from reckd.baselines import MODELS, fit_baselines
from reckd.data.split import SplitError, load_split
from reckd.errors import ReckdError
from reckd.train.plan import slug

# a 2-point grid keeps the whole module near 10 s on 2 cores
GRID = {"n_factors": (8,), "n_epochs": (20,), "lr_all": (0.005, 0.01), "reg_all": (0.05,)}
KEYS = {"genre", "method", "seed", "test_rmse", "val_rmse", "test_ratings", "train_ratings", "seconds", "config",
        "deterministic"}


@pytest.fixture(scope="module")
def fitted(synth_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("baselines")
    results = fit_baselines(synth_data, out, seeds=(0, 1), grid=GRID, svdpp_max_epochs=10)
    return out, results


def _genres(data) -> list[str]:
    return [g for g in data.genres if data.manifest["genres"][g]["class"] in ("dense", "sparse")]


def test_svd_beats_the_global_mean(synth_data, fitted):
    """The synthetic ratings have latent user × item factors: SVD must beat predicting the training mean,
    overall and on every genre (all-genre), and the genre's mean (genre-only) on average."""
    _, results = fitted
    data = synth_data
    train = data.rating[data.rows("train", teacher_only=True)].double()
    test = data.rating[data.rows("test", teacher_only=True)].double()
    mean_rmse = float(((test - train.mean()) ** 2).mean().sqrt())
    svd_all = [r for r in results if r["method"] == "svd@all"]
    overall = statistics.fmean(r["overall_test_rmse"] for r in svd_all)
    assert overall < 0.9 * mean_rmse, (overall, mean_rmse)
    # and the factors add to the user and item biases alone
    biases = next(r for r in results if r["method"] == "baselineonly@all")["overall_test_rmse"]
    assert overall < biases - 0.01, (overall, biases)
    for r in svd_all:
        rows = data.rows("test", r["genre"])
        genre_mean_rmse = float(((data.rating[rows].double() - train.mean()) ** 2).mean().sqrt())
        assert r["test_rmse"] < genre_mean_rmse, r["genre"]
    gains = []
    for r in (r for r in results if r["method"] == "svd"):
        train_g = data.rating[data.rows("train", r["genre"])].double()
        test_g = data.rating[data.rows("test", r["genre"])].double()
        gains.append(float(((test_g - train_g.mean()) ** 2).mean().sqrt()) - r["test_rmse"])
    assert statistics.fmean(gains) > 0.02, gains


def test_folder_format_and_keys(synth_data, fitted):
    out, results = fitted
    data, genres = synth_data, _genres(synth_data)
    methods = {f"{m}@all" for m in MODELS} | set(MODELS)
    assert {r["method"] for r in results} == methods
    on_disk = sorted(out.glob("*/*/seed*/result.json"))
    # 2 stochastic models × 2 seeds + 2 deterministic × 1, all-genre and genre-only, per genre
    assert len(on_disk) == len(results) == len(genres) * 2 * (2 * 2 + 2)
    teacher_train = data.rows("train", teacher_only=True).numel()
    for path in on_disk:
        r = read_json(path)
        assert KEYS <= set(r), path
        assert path.parts[-4:-1] == (slug(r["genre"]), slug(r["method"]), f"seed{r['seed']}")
        assert r["test_ratings"] == data.rows("test", r["genre"]).numel()
        assert r["train_ratings"] == (teacher_train if r["method"].endswith("@all")
                                      else data.rows("train", r["genre"]).numel())
        assert 0.3 < r["test_rmse"] < 2.0 and 0.3 < r["val_rmse"] < 2.0
        if MODELS[r["config"]["model"]].tuned:
            assert r["config"]["grid"] == {k: list(v) for k, v in GRID.items()}
            assert set(r["config"]["params"]) == set(GRID)
    summary = read_json(out / "baselines.json")
    assert summary["split_fingerprint"] == data.manifest.get("fingerprint")
    assert summary["grid"] == {k: list(v) for k, v in sorted(GRID.items())}
    assert sorted(map(tuple, summary["runs"])) == sorted((r["genre"], r["method"], r["seed"]) for r in results)
    assert set(summary["chosen"]) == {"svd@all", "svd (dense)", "svd (sparse)",
                                      "svdpp@all", "svdpp (dense)", "svdpp (sparse)"}
    assert summary["chosen"]["svdpp@all"] == {**summary["chosen"]["svd@all"], "n_epochs": 10}
    # the choice is the best of the grid on validation, and seed 0 of the final fit reproduces its score
    table = summary["svd_choice"]["all"]["table"]
    assert len(table) == 2 and table[0]["val_rmse"] <= table[1]["val_rmse"]
    assert {k: table[0][k] for k in GRID} == summary["chosen"]["svd@all"]
    svd0 = next(r for r in results if r["method"] == "svd@all" and r["seed"] == 0)
    assert svd0["overall_val_rmse"] == pytest.approx(summary["svd_choice"]["all"]["val_rmse"], abs=1e-12)
    overall = summary["overall"]["svd@all"]
    per_seed = [r["overall_test_rmse"] for r in results if r["method"] == "svd@all" and r["genre"] == genres[0]]
    assert overall["test_rmse_mean"] == pytest.approx(statistics.fmean(per_seed))
    assert overall["test_rmse_std"] == pytest.approx(statistics.stdev(per_seed))
    assert overall["test_ratings"] == data.rows("test", teacher_only=True).numel()


def test_deterministic_models_run_once(fitted):
    out, results = fitted
    for model, spec in MODELS.items():
        for method in (model, f"{model}@all"):
            seeds = {r["seed"] for r in results if r["method"] == method}
            assert seeds == ({0, 1} if spec.stochastic else {0}), method
            assert all(r["deterministic"] is not spec.stochastic for r in results if r["method"] == method)
    assert not list(out.glob("*/knnbaseline*/seed1"))
    summary = read_json(out / "baselines.json")
    assert summary["deterministic"] == {"baselineonly": True, "svd": False, "svdpp": False, "knnbaseline": True}
    assert summary["overall"]["knnbaseline@all"]["test_rmse_std"] == 0.0


def test_rmse_matches_surprise_itself(synth_data, fitted):
    """Independent check of the rows trained on and scored: KNNBaseline fit with surprise's own API on the
    genre's training rows, scored by surprise.accuracy.rmse on its test rows."""
    import surprise

    _, results = fitted
    data, genre = synth_data, _genres(synth_data)[-1]
    rows = {part: data.rows(part, genre).numpy() for part in ("train", "test")}
    frame = pl.DataFrame({"u": data.user.numpy()[rows["train"]], "i": data.item.numpy()[rows["train"]],
                          "r": data.rating.numpy()[rows["train"]].astype(float)}).to_pandas()
    trainset = surprise.Dataset.load_from_df(frame, surprise.Reader(rating_scale=(1, 5))).build_full_trainset()
    algo = surprise.KNNBaseline(sim_options={"name": "pearson_baseline", "user_based": False}, verbose=False)
    algo.fit(trainset)
    testset = list(zip(data.user.numpy()[rows["test"]].tolist(), data.item.numpy()[rows["test"]].tolist(),
                       data.rating.numpy()[rows["test"]].astype(float).tolist()))
    expected = surprise.accuracy.rmse(algo.test(testset), verbose=False)
    got = next(r for r in results if r["method"] == "knnbaseline" and r["genre"] == genre)
    assert got["test_rmse"] == pytest.approx(expected, abs=1e-12)


def test_rerun_skips_equal_configs_and_refits_a_changed_grid(synth_data, fitted, tmp_path):
    out = tmp_path / "baselines"
    shutil.copytree(fitted[0], out)
    stamps = lambda: {p: p.stat().st_mtime_ns for p in out.glob("*/*/seed*/result.json")}
    before = stamps()
    again = fit_baselines(synth_data, out, seeds=(0, 1), grid=GRID, svdpp_max_epochs=10)
    assert stamps() == before
    assert again == fitted[1]
    # one value of the grid changes: SVD and SVD++ are refit, the deterministic models kept
    grid = {**GRID, "lr_all": (0.005, 0.02)}
    changed = fit_baselines(synth_data, out, seeds=(0, 1), grid=grid, svdpp_max_epochs=10)
    after = stamps()
    for path, stamp in before.items():
        tuned = path.parts[-3].split("_")[0] in ("svd", "svdpp")
        assert (after[path] != stamp) == tuned, path
    assert all(r["config"]["grid"]["lr_all"] == [0.005, 0.02] for r in changed if "grid" in r["config"])
    assert read_json(out / "baselines.json")["grid"]["lr_all"] == [0.005, 0.02]


def test_missing_surprise_names_the_extra(synth_data, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "surprise", None)  # makes `import surprise` raise ImportError
    with pytest.raises(ReckdError, match=r"pip install 'reckd\[classical\]'"):
        fit_baselines(synth_data, tmp_path / "out", models=("svd",), grid=GRID)
    assert not (tmp_path / "out").exists()


def test_split_without_the_needed_columns(synth_split, tmp_path):
    split = tmp_path / "split"
    shutil.copytree(synth_split, split)
    ratings = pl.read_parquet(split / "ratings.parquet")
    ratings.drop("teacher").write_parquet(split / "ratings.parquet")
    with pytest.raises(SplitError, match=r"ratings\.parquet: missing columns \['teacher'\]"):
        load_split(split)


def test_bad_arguments(synth_data, tmp_path):
    data = synth_data
    with pytest.raises(ReckdError, match="models: expected some of"):
        fit_baselines(data, tmp_path / "a", models=("svd", "als"), grid=GRID)
    with pytest.raises(ReckdError, match="grid: expected a non-empty tuple for each of"):
        fit_baselines(data, tmp_path / "b", models=("svd",), grid={"n_factors": (8,)})
    with pytest.raises(ReckdError, match="seeds: expected each value once"):
        fit_baselines(data, tmp_path / "c", models=("svd",), seeds=(0, 0), grid=GRID)
    with pytest.raises(ReckdError, match="unknown genre 'Jazz'"):
        fit_baselines(data, tmp_path / "d", models=("baselineonly",), genres=["Jazz"])
    classless = type(data)(**{**data.__dict__, "manifest": {**data.manifest, "genres": {
        g: {k: v for k, v in info.items() if k != "class"} for g, info in data.manifest["genres"].items()}}})
    with pytest.raises(ReckdError, match=r"manifest\.json: genre .* has no 'class'"):
        fit_baselines(classless, tmp_path / "e", models=("baselineonly",))
    assert not any((tmp_path / name).exists() for name in "abcde")


def test_another_split_is_refused(synth_data, fitted, tmp_path):
    out = tmp_path / "baselines"
    shutil.copytree(fitted[0], out)
    summary = read_json(out / "baselines.json")
    other = type(synth_data)(**{**synth_data.__dict__, "path": tmp_path / "elsewhere",
                                "manifest": {**synth_data.manifest, "fingerprint": "sha256:other"}})
    if summary["split_fingerprint"] is None:
        pytest.skip("the fixture split has no fingerprint")
    with pytest.raises(ReckdError, match="made from split"):
        fit_baselines(other, out, models=("baselineonly",))
    assert read_json(out / "baselines.json") == summary
