"""Pre-train, distil, resume and report end to end on a small synthetic split."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import statistics

import pytest
import torch

from reckd.losses import Dims, HeadSpec, Method, get, make_config
from reckd.models.ranker import Ranker, RankerConfig
from reckd.report import collect, plot, render
from reckd.data.augment import sample_unrated
from reckd.errors import ReckdError
from reckd.train.distill import DistillConfig, distill, distill_each
from reckd.train.plan import select_genres, slug
from reckd.train.io import read_json
from reckd.train.loop import NonFiniteLoss, TrainConfig, fit
from reckd.train.teacher import load_teacher


def _config(**kwargs) -> DistillConfig:
    config = DistillConfig(genres="Action,Comedy", methods=("none", "kd", "kd+aug"), seeds=(0, 1), augment=2, **kwargs)
    config.train = dataclasses.replace(config.train, epochs=12, patience=3)
    return config


@pytest.fixture(scope="module")
def distilled(synth_data, synth_teacher, tmp_path_factory):
    teacher_dir, _ = synth_teacher
    before = {k: v.clone() for k, v in load_teacher(teacher_dir).state_dict().items()}
    out = tmp_path_factory.mktemp("students")
    results = distill(synth_data, teacher_dir, out, _config(), progress=False)
    return out, results, before


def test_teacher_learns(synth_data, synth_teacher):
    _, summary = synth_teacher
    test = synth_data.rows("test")
    mean_only = math.sqrt(((synth_data.rating[test] - synth_data.rating[synth_data.rows("train")].mean()) ** 2)
                          .mean().item())
    assert summary["test_rmse"] < 0.95 * mean_only
    assert summary["test_ratings"] == test.numel() == synth_data.manifest["counts"]["test"]
    assert 1 <= summary["best_epoch"] <= summary["epochs_run"]


def test_kd_beats_scratch_and_teacher_is_untouched(distilled, synth_teacher):
    out, results, before = distilled
    assert len(results) == 2 * 3 * 2
    mean = {m: statistics.fmean(r["test_rmse"] for r in results if r["method"] == m) for m in ("none", "kd", "kd+aug")}
    assert mean["kd"] < mean["none"]
    assert mean["kd+aug"] < mean["none"]
    after = load_teacher(synth_teacher[0]).state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    run = out / "Action" / "kd" / "seed0"
    assert {p.name for p in run.iterdir()} == {"config.json", "metrics.jsonl", "checkpoint.pt", "test_predictions.npy",
                                         "result.json"}
    result = read_json(run / "result.json")
    epochs = [line for line in (run / "metrics.jsonl").read_text().splitlines() if line]
    assert len(epochs) == result["epochs_run"]
    assert read_json(run / "config.json")["method_config"] == {"w_task": 0.9, "w_kd": 1.0, "tau": 4.0,
                                                               "rating_loss": "mse", "s": 0.5}


def test_resume_skips_finished_runs(distilled, synth_data, synth_teacher):
    out, results, _ = distilled
    finished = out / "Comedy" / "none" / "seed1" / "result.json"
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/*/seed*/result.json")}
    redo = out / "Action" / "kd+aug" / "seed1"
    (redo / "result.json").unlink()
    again = distill(synth_data, synth_teacher[0], out, _config(), progress=False)
    assert finished.stat().st_mtime_ns == stamps[finished]
    changed = [p for p in out.glob("*/*/seed*/result.json") if p.stat().st_mtime_ns != stamps.get(p)]
    assert changed == [redo / "result.json"]
    # same seed, same data -> the same RMSE on the CPU
    by_key = lambda rs: {(r["genre"], r["method"], r["seed"]): r["test_rmse"] for r in rs}
    assert by_key(again) == by_key(results)


def test_report_equals_run_folders(distilled, tmp_path):
    out, results, _ = distilled
    report = collect(out)
    rows, methods, teacher = report.rows, report.methods, report.teacher
    assert report.missing == [] and report.seeds == [0, 1]
    assert methods == ["none", "kd", "kd+aug"]
    table = {r.genre: r for r in rows}
    for genre in ("Action", "Comedy"):
        for m in methods:
            values = [r["test_rmse"] for r in results if r["genre"] == genre and r["method"] == m]
            assert table[genre].methods[m].mean == pytest.approx(statistics.fmean(values), abs=1e-12)
            assert table[genre].methods[m].std == pytest.approx(statistics.stdev(values), abs=1e-12)
        kd, none = table[genre].methods["kd"].mean, table[genre].methods["none"].mean
        assert table[genre].methods["kd"].improvement == pytest.approx(100 * (none - kd) / none)
        assert table[genre].teacher == teacher["genres"][genre]["test_rmse"]
    markdown = render(report, "markdown")
    assert f"{table['Action'].methods['kd'].mean:.4f}" in markdown
    assert render(report, "csv").splitlines()[0].startswith("genre,class,test_ratings,teacher_rmse,none_rmse")
    plot(report, tmp_path / "improvement.png")
    assert (tmp_path / "improvement.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_augmentation_pairs_are_unrated_genre_pairs(synth_data):
    genre = "Action"
    users, items = sample_unrated(synth_data, genre, 500, seed=3)
    assert users.numel() == items.numel() == 500
    keys = users * synth_data.num_items + items
    assert torch.unique(keys).numel() == 500
    rated = synth_data.user * synth_data.num_items + synth_data.item
    assert not torch.isin(keys, rated).any()
    assert synth_data.item_genre[items, synth_data.genre_index(genre)].all()
    again = sample_unrated(synth_data, genre, 500, seed=3)
    assert torch.equal(again[0], users) and torch.equal(again[1], items)


def test_genre_selection(synth_data):
    classes = {g: v["class"] for g, v in synth_data.manifest["genres"].items()}
    assert select_genres(synth_data, "all") == [g for g in synth_data.genres if classes[g] != "excluded"]
    assert all(classes[g] == "sparse" for g in select_genres(synth_data, "sparse"))
    with pytest.raises(Exception, match="unknown genre"):
        select_genres(synth_data, "Action,Nope")
    assert slug("Children's") == "Children_s"


class _Explodes(Method):
    """A method whose loss turns NaN in its second epoch."""

    name = "_explodes_test"
    Config = get("none").Config

    def forward(self, student, teacher, labels):
        self.calls = getattr(self, "calls", 0) + 1
        loss = ((student.prediction - labels) ** 2).mean()
        return {"task": loss * (float("nan") if self.calls > 3 else 1.0)}


def test_non_finite_loss_stops_and_keeps_the_checkpoint(synth_data, tmp_path):
    torch.manual_seed(0)
    model = Ranker(RankerConfig.student(), [(f.name, f.cardinality) for f in synth_data.features], synth_data.levels)
    method = _Explodes(make_config("none"), Dims(64, 32), Dims(64, 32), HeadSpec("rating", synth_data.levels))
    rows = synth_data.rows("train", "Action")
    with pytest.raises(NonFiniteLoss, match=r"epoch 2, step 1: loss is nan .*epoch 1\) is kept"):
        fit(model, method, synth_data, rows, synth_data.rows("val", "Action"),
            TrainConfig(epochs=5, batch_size=(rows.numel() + 2) // 3), run_dir=tmp_path)
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert checkpoint["epoch"] == 1 and math.isfinite(checkpoint["val_rmse"])


def test_parallel_workers_finish_every_run(synth_data, synth_teacher, tmp_path):
    config = DistillConfig(genres="Action", methods=("none", "kd+aug"), seeds=(0, 1), augment=1)
    config.train = dataclasses.replace(config.train, epochs=2)
    results = distill(synth_data, synth_teacher[0], tmp_path, config, progress=False, workers=2)
    assert sorted((r["method"], r["seed"]) for r in results) == [("kd+aug", 0), ("kd+aug", 1), ("none", 0), ("none", 1)]
    assert all((tmp_path / "Action" / slug(r["method"]) / f"seed{r['seed']}" / "result.json").is_file() for r in results)
    assert all(math.isfinite(r["test_rmse"]) and r["epochs_run"] == 2 for r in results)


def test_one_pool_trains_several_requests_each_with_its_own_options(synth_data, synth_teacher, one_thread, tmp_path):
    """distill_each (what `reckd tune` trains its grid points with): two requests of different learning
    rates trained by one pool of 2 workers give the results of two separate one-process distills, and
    each folder's runs record and use their own request's options."""
    configs = []
    for lr in (1e-3, 3e-2):
        config = DistillConfig(genres="Action,Comedy", methods=("none", "kd+aug"), seeds=(0,), augment=1)
        config.train = dataclasses.replace(config.train, epochs=2, lr=lr)
        configs.append(config)
    together = distill_each(synth_data, synth_teacher[0], [(tmp_path / f"point{k}", c) for k, c in enumerate(configs)],
                            progress=False, workers=2)
    key = lambda r: (r["genre"], r["method"], r["seed"])
    for k, config in enumerate(configs):
        results, failed = together[k]
        alone = distill(synth_data, synth_teacher[0], tmp_path / f"alone{k}", config, progress=False, workers=1)
        assert failed == [] and len(results) == 4
        assert {key(r): r["val_rmse"] for r in results} == pytest.approx({key(r): r["val_rmse"] for r in alone}, abs=1e-6)
        for r in results:
            recorded = read_json(tmp_path / f"point{k}" / slug(r["genre"]) / slug(r["method"]) / "seed0" / "config.json")
            assert recorded["train"]["lr"] == config.train.lr
    # the two points trained differently: their options were not mixed up
    assert together[0][0][0]["val_rmse"] != pytest.approx(
        next(r for r in together[1][0] if key(r) == key(together[0][0][0]))["val_rmse"], abs=1e-4)


def test_one_pool_builds_each_teacher_cache_once(synth_data, synth_teacher, one_thread, tmp_path, capfd):
    """Requests of other methods in one pool: the cache with the teacher's states (fitnet's) is built first,
    in the parent, and serves the request without them from the file; no worker rebuilds it."""
    teacher = tmp_path / "teacher"
    shutil.copytree(synth_teacher[0], teacher, ignore=shutil.ignore_patterns("cache.pt"))
    requests = [(tmp_path / name, DistillConfig(genres="Action", methods=(name,), seeds=(0, 1)))
                for name in ("none", "fitnet")]
    for _, config in requests:
        config.train = dataclasses.replace(config.train, epochs=1)
    done = distill_each(synth_data, teacher, requests, progress=False, workers=2)
    assert [len(results) for results, failed in done] == [2, 2] and all(not failed for _, failed in done)
    assert "rebuilding the teacher-output cache" not in capfd.readouterr().err
    assert torch.load(teacher / "cache.pt", weights_only=True)["upper"] is not None


def test_resume_refuses_another_teacher(distilled, synth_data, synth_teacher, tmp_path):
    out, _, _ = distilled
    other = tmp_path / "teacher"
    shutil.copytree(synth_teacher[0], other)
    checkpoint = torch.load(other / "checkpoint.pt", weights_only=True)
    checkpoint["model"]["head_layer.bias"] += 1.0
    torch.save(checkpoint, other / "checkpoint.pt")
    with pytest.raises(ReckdError, match="teacher_sha256 .* use a new --out"):
        distill(synth_data, other, out, _config(), progress=False)


def test_report_with_classical_rows_and_significance(distilled, synth_data, tmp_path):
    """Reference columns from a baselines folder of the same split, and paired Wilcoxon p-values that an
    independent computation from the saved test predictions reproduces."""
    import numpy as np
    from scipy.stats import wilcoxon

    from reckd.baselines import fit_baselines

    out, results, _ = distilled
    baselines = tmp_path / "baselines"
    fit_baselines(synth_data, baselines, models=("baselineonly", "svd"), seeds=(0, 1), genres=["Action", "Comedy"],
                  grid={"n_factors": (20,), "n_epochs": (10,), "lr_all": (0.005,), "reg_all": (0.05,)})
    report = collect(out, baselines=baselines)
    assert report.references == ["baselineonly@all", "baselineonly", "svd@all", "svd"]
    action = next(r for r in report.rows if r.genre == "Action")
    svd = [read_json(p)["test_rmse"] for p in sorted((baselines / "Action" / "svd_all").glob("seed*/result.json"))]
    assert action.methods["svd@all"].mean == pytest.approx(statistics.fmean(svd), abs=1e-12)
    assert action.methods["baselineonly"].seeds == 1
    # p-value of kd vs none on Action, from the saved predictions
    rating = synth_data.rating[synth_data.rows("test", "Action")].numpy()
    error = lambda m: np.mean([(np.load(out / "Action" / m / f"seed{s}" / "test_predictions.npy") - rating) ** 2
                               for s in (0, 1)], axis=0)
    assert action.methods["kd"].p_none == pytest.approx(wilcoxon(error("kd") - error("none")).pvalue, rel=1e-9)
    assert action.methods["none"].p_none is None
    best = action.methods["kd"].classical
    assert best in report.references and action.methods["kd"].p_classical is not None
    assert np.sqrt(error("kd").mean()) == pytest.approx(action.methods["kd"].mean, rel=0.05)
    # a macro row pools its genres' ratings, each genre against its own best classical reference
    macro = next(r for r in report.rows if r.genre.endswith("macro-avg"))
    members = [r for r in report.rows if r.klass == macro.klass and r is not macro]
    assert [r.genre for r in members] == ["Action", "Comedy"]
    pooled = []
    for row in members:
        truth = synth_data.rating[synth_data.rows("test", row.genre)].numpy()
        sq = lambda m, folder: np.mean([(np.load(f) - truth) ** 2  # every seed the column has
                                        for f in sorted((folder / row.genre / slug(m)).glob("seed*/*.npy"))], axis=0)
        pooled.append(sq("kd", out) - sq(row.methods["kd"].classical, baselines))
    pooled = np.concatenate(pooled)
    assert macro.methods["kd"].p_classical == pytest.approx(wilcoxon(pooled).pvalue, rel=1e-9)
    assert macro.methods["kd"].beats_classical == (pooled.mean() < 0)
    named = {r.methods["kd"].classical for r in members}
    assert macro.methods["kd"].classical == (named.pop() if len(named) == 1 else "best per genre")
    text = render(report, "table")
    assert "svd@all" in text.splitlines()[0]
    doc = json.loads(render(report, "json"))
    assert doc["references"] == report.references and doc["rows"][0]["kd_p_vs_none"] is not None
    chosen = collect(out, only=["svd@all", "none", "kd"], baselines=baselines)
    assert (chosen.references, chosen.methods) == (["svd@all"], ["none", "kd"])
    with pytest.raises(ReckdError, match="classical rows are scored by RMSE only"):
        collect(out, metric="ndcg@10", baselines=baselines)


def test_report_tests_every_student_against_the_teacher(distilled, synth_data, synth_teacher):
    """The paired test against the teacher uses its own test predictions (whose RMSE is the recorded one),
    and the count of genres at least as good as the teacher equals the rows."""
    import numpy as np
    from scipy.stats import wilcoxon

    from reckd.report import against_teacher
    from reckd.train.loop import predict_rows

    out, _, _ = distilled
    teacher_dir, _ = synth_teacher
    report = collect(out)
    rows = synth_data.rows("test", "Comedy")
    rating = synth_data.rating[rows].numpy()
    teacher_error = (predict_rows(load_teacher(teacher_dir), None, synth_data, rows).numpy() - rating) ** 2
    comedy = next(r for r in report.rows if r.genre == "Comedy")
    assert np.sqrt(teacher_error.mean()) == pytest.approx(comedy.teacher, rel=1e-5)
    for m in ("none", "kd"):
        error = np.mean([(np.load(out / "Comedy" / m / f"seed{s}" / "test_predictions.npy") - rating) ** 2
                         for s in (0, 1)], axis=0)
        assert comedy.methods[m].p_teacher == pytest.approx(wilcoxon(error - teacher_error).pvalue, rel=1e-9)
        assert comedy.methods[m].beats_teacher == (error.mean() < teacher_error.mean())
    genres = [r for r in report.rows if not r.genre.endswith("macro-avg")]
    counts, text = against_teacher(report), render(report, "table")
    for m in report.methods:
        cells = [(r.teacher, r.methods[m]) for r in genres]
        assert counts[m]["genres"] == 2
        assert counts[m]["at_least_as_good"] == sum(c.mean <= t for t, c in cells)
        significant = [c for _, c in cells if c.p_teacher < 0.05]
        assert counts[m]["worse_p05"] == sum(not c.beats_teacher for c in significant)
        assert counts[m]["better_p05"] == sum(c.beats_teacher for c in significant)
    # kd+aug learns from the teacher and the genre's own ratings: significantly better than this briefly
    # trained teacher on at least one genre (Comedy: p ≈ 6e-5), and marked so
    assert counts["kd+aug"]["better_p05"] >= 1 and "▲" in text
    assert f"kd: at or below the teacher on {counts['kd']['at_least_as_good']} of 2 genres" in text
    assert ("▼" in text.split("\n")[2]) == (genres[0].methods["none"].p_teacher < 0.05)
    assert json.loads(render(report, "json"))["against_teacher"] == counts


def test_batch_and_lr_scale_with_the_training_set(synth_data):
    from reckd.train.loop import scaled
    from reckd.train.student import StudentRuns
    from reckd.train.plan import Run

    base = TrainConfig(batch_size=1024, lr=1e-3)
    assert scaled(base, 80_000) == base and scaled(base, 1_000_000) == base  # ML-100K: the chosen defaults
    twenty = scaled(base, 20_000_000)  # 20M ratings: 32× the batch, √32× the lr
    assert twenty.batch_size == 32768 and twenty.lr == pytest.approx(1e-3 * math.sqrt(32))
    assert scaled(base, 10**9).batch_size == 65536  # capped
    assert scaled(base, 20_000_000, lr=False).lr == 1e-3  # a tuned lr: kept
    # the CLI scales only while neither --batch-size nor --lr chooses the optimisation
    import argparse
    from reckd.cli.flags import scales

    assert scales(argparse.Namespace(batch_size=None, lr=None))
    assert not scales(argparse.Namespace(batch_size=None, lr=1e-3))
    assert not scales(argparse.Namespace(batch_size=512, lr=None))
    # distill applies it per genre unless --batch-size was given (scale=False); small genres keep theirs
    config = DistillConfig(genres="all", methods=("kd",), seeds=(0,))
    runs = StudentRuns(synth_data, type("Ref", (), {"sha256": "x"})(), config)
    genre = synth_data.genres[0]
    assert runs.config_of(Run(genre, "kd", 0))["train"]["lr"] == config.train.lr
    # the batch: the requested one at most; a small genre's shrinks to take 16 steps an epoch, down to 64;
    # a request below 64 is kept (it was once raised to 64 without a word)
    rows = {g: runs.rows(g) for g in synth_data.genres}
    for asked in (1024, 128, 32):
        sized = StudentRuns(synth_data, type("Ref", (), {"sha256": "x"})(), dataclasses.replace(
            config, train=dataclasses.replace(config.train, batch_size=asked), scale=False))
        for g, n in rows.items():
            assert sized.config_of(Run(g, "kd", 0))["train"]["batch_size"] == min(asked, max(64, n // 16))
    assert any(n // 16 < 128 for n in rows.values()) and any(n // 16 > 128 for n in rows.values())
