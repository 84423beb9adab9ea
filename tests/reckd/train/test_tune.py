"""``reckd tune`` and ``reckd distill --tuned`` on the synthetic split: the choice is the validation argmin
recomputed from the point folders, tuned runs record and train with the chosen values, resume keeps
them, and a tuned file from another split or bad --grid values are refused naming the flag."""

from __future__ import annotations

import dataclasses
import json
import shutil
import statistics

import pytest

from data_prep.config import SplitConfig
from data_prep.split import split
from reckd.cli.main import main
from reckd.data.split import load_split
from reckd.errors import ReckdError
from reckd.models.ranker import RankerConfig
from reckd.train.distill import DistillConfig, distill
from reckd.train.io import read_json
from reckd.train.loop import TrainConfig
from reckd.train.plan import slug
from reckd.train.student import TUNABLE
from reckd.train.teacher import teacher_ref
from reckd.train.tune import check_grid, load_tuned, tune

GENRES = ("Adventure", "Romance", "Thriller")  # the synthetic split's two sparse genres and its smallest dense one
GRID = {"train.lr": (1e-3, 3e-2)}  # 2 points, far enough apart to train differently in 2 epochs
pytestmark = pytest.mark.usefixtures("one_thread_module")  # the fixture in conftest.py (module fixtures train too)


def _config(**kwargs) -> DistillConfig:
    config = DistillConfig(**{"genres": ",".join(GENRES), "methods": ("none", "kd"), "seeds": (0,), **kwargs})
    config.train = dataclasses.replace(config.train, epochs=2)
    return config


@pytest.fixture(scope="module")
def tuned(synth_data, synth_teacher, tmp_path_factory):
    out = tmp_path_factory.mktemp("tune")
    document = tune(synth_data, synth_teacher[0], out, _config(), GRID, workers=1, progress=False)
    return out, document


def _class_of(data, genre: str) -> str:
    return data.manifest["genres"][genre]["class"]


def test_choice_is_the_validation_argmin_of_the_point_folders(tuned, synth_data, synth_teacher):
    out, document = tuned
    assert document["points"] == [{"train.lr": 0.001}, {"train.lr": 0.03}]
    assert read_json(out / "tuned.json") == json.loads(json.dumps(document))
    assert document["split_fingerprint"] == synth_data.fingerprint
    assert document["teacher_sha256"] == teacher_ref(synth_teacher[0]).sha256
    classes = {c: [g for g in GENRES if _class_of(synth_data, g) == c] for c in ("dense", "sparse")}
    assert document["genres"] == classes and classes["sparse"] == ["Adventure", "Romance"]
    for method in ("none", "kd"):
        for genre_class, genres in classes.items():
            macro = []
            for k, point in enumerate(document["points"]):
                runs = [out / f"point{k}" / slug(g) / method / "seed0" for g in genres]
                assert all(read_json(r / "config.json")["train"]["lr"] == point["train.lr"] for r in runs)
                macro.append(statistics.fmean(read_json(r / "result.json")["val_rmse"] for r in runs))
            best = min(range(len(macro)), key=lambda k: (macro[k], k))
            assert document["validation"][method][genre_class] == pytest.approx(macro, abs=1e-15)
            assert macro[0] != macro[1]
            assert document["chosen_point"][method][genre_class] == best
            assert document["chosen"][method][genre_class] == document["points"][best]


def test_rerun_resumes_every_point(tuned, synth_data, synth_teacher):
    """The tune folder holds its own point folders: a re-run is accepted, trains nothing, chooses the same."""
    out, document = tuned
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("point*/*/*/seed0/result.json")}
    assert len(stamps) == 2 * len(GENRES) * 2
    again = tune(synth_data, synth_teacher[0], out, _config(), GRID, workers=1, progress=False)
    assert again == document
    assert {p: p.stat().st_mtime_ns for p in out.glob("point*/*/*/seed0/result.json")} == stamps


def test_distill_tuned_records_and_trains_with_the_chosen_values(tuned, synth_data, synth_teacher, tmp_path):
    out, document = tuned
    teacher = synth_teacher[0]
    chosen = load_tuned(out / "tuned.json", synth_data, teacher)
    students = tmp_path / "students"
    results = distill(synth_data, teacher, students, _config(tuned=chosen), progress=False, workers=1)
    untuned = {r["genre"]: r for r in distill(synth_data, teacher, tmp_path / "untuned",
                                              _config(methods=("none",)), progress=False, workers=1)}
    assert len(results) == 2 * len(GENRES)
    for result in results:
        genre, method = result["genre"], result["method"]
        genre_class = _class_of(synth_data, genre)
        k = document["chosen_point"][method][genre_class]
        config = read_json(students / slug(genre) / method / "seed0" / "config.json")
        assert config["tuned"] == chosen[method][genre_class] == document["points"][k]
        assert config["train"]["lr"] == chosen[method][genre_class]["train.lr"]
        # same seed and options as the chosen point's run: the same training, epoch for epoch
        point = read_json(out / f"point{k}" / slug(genre) / method / "seed0" / "result.json")
        other = read_json(out / f"point{1 - k}" / slug(genre) / method / "seed0" / "result.json")
        assert (result["val_rmse"], result["test_rmse"]) == (point["val_rmse"], point["test_rmse"])
        assert result["val_rmse"] != other["val_rmse"]
        if method == "none":  # the untuned student (lr 3e-3) trains differently
            assert result["val_rmse"] != untuned[genre]["val_rmse"]
            assert "tuned" not in read_json(tmp_path / "untuned" / slug(genre) / "none" / "seed0" / "config.json")
    # a resume with the same tuned file skips every run; an untuned request is refused, naming the keys
    stamps = {p: p.stat().st_mtime_ns for p in students.glob("*/*/seed0/result.json")}
    again = distill(synth_data, teacher, students, _config(tuned=chosen), progress=False, workers=1)
    assert sorted(r["val_rmse"] for r in again) == sorted(r["val_rmse"] for r in results)
    assert {p: p.stat().st_mtime_ns for p in students.glob("*/*/seed0/result.json")} == stamps
    with pytest.raises(ReckdError, match=r"(?s)other options.*tuned \(recorded \{'train.lr'"):
        distill(synth_data, teacher, students, _config(), progress=False, workers=1)
    # a method or genre class the tuned file lacks is named, before anything is written
    with pytest.raises(ReckdError, match=r"--tuned: expected tuned values for method 'kd\+aug', found only 'kd', 'none'"):
        distill(synth_data, teacher, tmp_path / "more", _config(methods=("kd+aug",), tuned=chosen), progress=False)
    sparse_only = {m: {"sparse": by_class["sparse"]} for m, by_class in chosen.items()}
    with pytest.raises(ReckdError, match="expected tuned values for 'none' on dense genres \\(Thriller is dense\\)"):
        distill(synth_data, teacher, tmp_path / "more", _config(tuned=sparse_only), progress=False)
    assert not (tmp_path / "more").exists()


def test_a_per_genre_choice_reuses_the_points_and_each_genre_trains_with_its_own(tuned, synth_data, synth_teacher,
                                                                               tmp_path):
    """``choose="genre"`` on the same grid trains nothing, picks each genre's own validation argmin, and a
    distill with it records and trains with its genre's values (not its class's)."""
    out, by_class = tuned
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("point*/*/*/seed0/result.json")}
    document = tune(synth_data, synth_teacher[0], out, _config(), GRID, workers=1, progress=False,
                    choose="genre")
    assert {p: p.stat().st_mtime_ns for p in out.glob("point*/*/*/seed0/result.json")} == stamps
    assert document["choose"] == "genre" and by_class["choose"] == "class"
    assert document["genres"] == by_class["genres"]
    for method in ("none", "kd"):
        assert sorted(document["chosen_point"][method]) == sorted(GENRES)
        for genre in GENRES:
            val = [read_json(out / f"point{k}" / slug(genre) / method / "seed0" / "result.json")["val_rmse"]
                   for k in range(2)]
            assert document["validation"][method][genre] == val
            assert document["chosen_point"][method][genre] == min(range(2), key=lambda k: (val[k], k))
    # the per-class choices differ from some genre's own (else this test shows nothing)
    assert any(document["chosen_point"][m][g] != by_class["chosen_point"][m][_class_of(synth_data, g)]
               for m in ("none", "kd") for g in GENRES)
    chosen = load_tuned(out / "tuned.json", synth_data, synth_teacher[0])
    students = tmp_path / "students"
    for result in distill(synth_data, synth_teacher[0], students, _config(tuned=chosen), progress=False, workers=1):
        genre, method = result["genre"], result["method"]
        k = document["chosen_point"][method][genre]
        assert read_json(students / slug(genre) / method / "seed0" / "config.json")["tuned"] == document["points"][k]
        point = read_json(out / f"point{k}" / slug(genre) / method / "seed0" / "result.json")
        assert result["val_rmse"] == point["val_rmse"]
    with pytest.raises(ReckdError, match="--choose: expected one of class, genre, found 'user'"):
        tune(synth_data, synth_teacher[0], out, _config(), GRID, choose="user")
    tune(synth_data, synth_teacher[0], out, _config(), GRID, workers=1, progress=False)  # the file as it was


def test_more_seeds_choose_on_validation_averaged_over_them(tuned, synth_data, synth_teacher, tmp_path):
    """``seeds=(0, 1)`` on a copy of the tune: seed 0's runs are reused, seed 1's trained at every point,
    and each class's validation is the mean over its genres and both seeds, recomputed from the folders."""
    out = tmp_path / "tune"
    shutil.copytree(tuned[0], out)
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("point*/*/*/seed0/result.json")}
    document = tune(synth_data, synth_teacher[0], out, _config(), GRID, seeds=(0, 1), workers=1, progress=False)
    assert {p: p.stat().st_mtime_ns for p in out.glob("point*/*/*/seed0/result.json")} == stamps
    assert len(list(out.glob("point*/*/*/seed1/result.json"))) == len(stamps) == 2 * len(GENRES) * 2
    assert document["seeds"] == [0, 1] and document["points"] == tuned[1]["points"]
    for method in ("none", "kd"):
        for genre_class, genres in document["genres"].items():
            macro = []
            for k in range(2):
                runs = [out / f"point{k}" / slug(g) / method / f"seed{s}" for g in genres for s in (0, 1)]
                assert [read_json(r / "config.json")["train"]["seed"] for r in runs] == [0, 1] * len(genres)
                macro.append(statistics.fmean(read_json(r / "result.json")["val_rmse"] for r in runs))
            assert document["validation"][method][genre_class] == pytest.approx(macro, abs=1e-15)
            assert macro != tuned[1]["validation"][method][genre_class]  # seed 1 counts
            assert document["chosen_point"][method][genre_class] == min(range(2), key=lambda k: (macro[k], k))
    with pytest.raises(ReckdError, match="--seeds: expected a non-empty comma-separated list, found none"):
        tune(synth_data, synth_teacher[0], out, _config(), GRID, seeds=(), progress=False)


def test_tuned_files_per_class_are_merged_and_overlaps_refused(tuned, synth_data, synth_teacher, tmp_path, capsys):
    """A tune of the dense genres and one of the sparse (here the module's tune, its choice split by class)
    given together to ``--tuned A,B``: each run trains with its own class's values; a class chosen by both
    files, or a class no file holds, is refused naming the files or the class."""
    out, document = tuned
    files = {}
    for genre_class in ("dense", "sparse"):
        files[genre_class] = tmp_path / f"{genre_class}.json"
        chosen = {m: {genre_class: by_class[genre_class]} for m, by_class in document["chosen"].items()}
        files[genre_class].write_text(json.dumps({**document, "chosen": chosen}))
    assert load_tuned([files["dense"], files["sparse"]], synth_data, synth_teacher[0]) == document["chosen"]
    students = tmp_path / "students"
    flags = ["--teacher", str(synth_teacher[0]), "--genres", ",".join(GENRES), "--methods", "none", "--epochs", "2",
             "--workers", "1", "--quiet"]
    assert main(["distill", str(synth_data.path), *flags, "--out", str(students),
                 "--tuned", f"{files['dense']},{files['sparse']}"]) == 0
    for genre in GENRES:
        recorded = read_json(students / slug(genre) / "none" / "seed0" / "config.json")["tuned"]
        assert recorded == document["chosen"]["none"][_class_of(synth_data, genre)]
    capsys.readouterr()
    assert main(["distill", str(synth_data.path), *flags, "--out", str(tmp_path / "both"),
                 "--tuned", f"{files['dense']},{out / 'tuned.json'}"]) == 1
    first = min(document["chosen"])  # tuned.json is written with sorted keys: the first clash is the first name
    assert capsys.readouterr().err.startswith(f"reckd: error: --tuned: {first!r} on dense is chosen by both "
                                              f"{files['dense']} and {out / 'tuned.json'}; pass only one of them")
    assert main(["distill", str(synth_data.path), *flags, "--out", str(tmp_path / "half"),
                 "--tuned", str(files["dense"])]) == 1
    assert "--tuned: expected tuned values for 'none' on sparse genres" in capsys.readouterr().err
    assert not (tmp_path / "both").exists() and not (tmp_path / "half" / "Adventure").exists()
    with pytest.raises(ReckdError, match="--tuned: expected one or more tuned.json files, found none"):
        load_tuned([], synth_data, synth_teacher[0])


def test_tuned_file_from_another_split_or_teacher_is_refused(tuned, synth_split, synth_data, synth_teacher,
                                                              tmp_path, capsys):
    out, document = tuned
    other = tmp_path / "split-b"
    split("synth", other, data_dir=synth_split.parent, config=SplitConfig(seed=3, min_test_ratings=20))
    data_b = load_split(other)
    with pytest.raises(ReckdError, match=f"--tuned .*tuned.json: chosen on split {synth_data.fingerprint}.* "
                                         f"is split {data_b.fingerprint}"):
        load_tuned(out / "tuned.json", data_b, synth_teacher[0])
    assert main(["distill", str(other), "--teacher", str(synth_teacher[0]), "--out", str(tmp_path / "students"),
                 "--tuned", str(out / "tuned.json"), "--quiet"]) == 1
    assert f"chosen on split {synth_data.fingerprint}" in capsys.readouterr().err
    assert not (tmp_path / "students").exists()
    # options the grid did not run with are named (the tuned keys themselves may differ)
    load_tuned(out / "tuned.json", synth_data, synth_teacher[0], _config())
    assert capsys.readouterr().err == ""
    longer = _config()
    longer.train = dataclasses.replace(longer.train, epochs=3, lr=0.5)
    load_tuned(out / "tuned.json", synth_data, synth_teacher[0], longer)
    assert capsys.readouterr().err == (f"reckd: warning: --tuned {out / 'tuned.json'}: the grid ran with other "
                                       f"options than this request: train.epochs (recorded 2, requested 3)\n")
    stamped = tmp_path / "tuned.json"
    stamped.write_text(json.dumps({**document, "teacher_sha256": "0" * 64}))
    with pytest.raises(ReckdError, match="chosen with the teacher whose checkpoint has SHA-256 0000"):
        load_tuned(stamped, synth_data, synth_teacher[0])


def test_bad_grid_keys_and_values_name_the_flag(synth_split, synth_data, synth_teacher, tmp_path, capsys):
    fields = {f"train.{f.name}" for f in dataclasses.fields(TrainConfig)} | \
             {f"model.{f.name}" for f in dataclasses.fields(RankerConfig)}
    assert set(TUNABLE) <= fields
    cases = [({}, "--grid: expected at least one KEY=V1,V2"),
             ({"train.momentum": (0.9,)}, "--grid: expected a key among train.lr, .*found 'train.momentum'"),
             ({"lr": (0.1,)}, "--grid: expected a key among"),
             ({"train.seed": (1, 2)}, "--grid: train.seed is not tunable"),
             ({"model.hidden": ((8, 4),)}, "--grid: model.hidden is not tunable"),
             ({"train.lr": ("fast",)}, "--grid train.lr: expected a number, found 'fast'"),
             ({"train.lr": (0.0,)}, "--grid train.lr: expected a finite learning rate > 0, found 0.0"),
             ({"train.weight_decay": (-1e-5,)}, "--grid train.weight_decay: expected a finite weight decay >= 0"),
             ({"model.input_dropout": ("1",)}, r"--grid model.input_dropout: expected a probability in \[0, 1\), found '1'"),
             ({"model.embedding_dim": ("8.5",)}, "--grid model.embedding_dim: expected an integer, found '8.5'"),
             ({"train.epochs": (True,)}, "--grid train.epochs: expected an integer, found True"),
             ({"train.lr": ()}, "--grid train.lr: expected a non-empty"),
             ({"train.lr": ("1e-3", 0.001)}, "--grid train.lr: expected each value once, found 0.001")]
    for grid, message in cases:
        with pytest.raises(ReckdError, match=message):
            tune(synth_data, synth_teacher[0], tmp_path / "out", _config(), grid, progress=False)
    assert check_grid({"train.patience": "3", "model.dropout": ("0", "0.2")}) == \
        {"model.dropout": (0.0, 0.2), "train.patience": (3,)}
    assert not (tmp_path / "out").exists()
    for flags, message in [(["--grid", "train.lr"], "--grid: expected KEY=V1,V2,… (e.g. train.lr=1e-3,3e-3), found 'train.lr'"),
                           (["--grid", "train.lr=1", "--grid", "train.lr=2"], "--grid: expected each key once, found train.lr twice"),
                           (["--grid", "train.lr=1e-3,x"], "--grid train.lr: expected a number, found 'x'")]:
        assert main(["tune", str(synth_split), "--teacher", str(synth_teacher[0]), "--out", str(tmp_path / "out"),
                     *flags]) == 1
        assert capsys.readouterr().err == f"reckd: error: {message}\n"
    assert not (tmp_path / "out").exists()


def test_cli_tune_then_distill_tuned(synth_split, synth_teacher, tmp_path, capsys):
    out, students = tmp_path / "tune", tmp_path / "students"
    common = ["--teacher", str(synth_teacher[0]), "--genres", "Adventure", "--methods", "none", "--epochs", "1",
              "--workers", "1", "--quiet"]
    assert main(["tune", str(synth_split), "--out", str(out), "--grid", "train.lr=3e-2,1e-3", *common]) == 0
    table = capsys.readouterr().out
    document = read_json(out / "tuned.json")
    k = document["chosen_point"]["none"]["sparse"]
    assert document["grid"] == {"train.lr": [0.03, 0.001]}  # as given; the points follow this order
    assert f"chosen for none on sparse genres: point{k} (train.lr={document['points'][k]['train.lr']:g})" in table
    assert main(["distill", str(synth_split), "--out", str(students), "--seeds", "0",
                 "--tuned", str(out / "tuned.json"), *common]) == 0
    config = read_json(students / "Adventure" / "none" / "seed0" / "config.json")
    assert config["tuned"] == {"train.lr": document["points"][k]["train.lr"]} and config["train"]["epochs"] == 1


def test_a_diverging_point_is_never_chosen(synth_data, synth_teacher, tmp_path, capsys):
    """A learning rate that turns the loss NaN stops its runs; the point is reported and left out."""
    config = _config(genres="Adventure", methods=("none",))
    document = tune(synth_data, synth_teacher[0], tmp_path / "tune", config, {"train.lr": (1e30, 1e-3)},
                    workers=1, progress=False)
    assert "reckd tune: point0 is not chosen where its runs stopped" in capsys.readouterr().err
    assert document["validation"]["none"]["sparse"][0] is None
    assert document["chosen"] == {"none": {"sparse": {"train.lr": 0.001}}}
    with pytest.raises(ReckdError, match="--grid: no grid point finished every sparse run of 'none'"):
        tune(synth_data, synth_teacher[0], tmp_path / "diverged", config, {"train.lr": (1e30,)}, workers=1,
             progress=False)


def test_a_method_option_is_tuned_on_its_runs_and_recorded(synth_data, synth_teacher, tmp_path):
    """``kd.w_task`` on the grid: each point's kd runs train with it (config.json's method_config), and
    ``distill --tuned`` trains with the chosen weight, epoch for epoch as the chosen point did."""
    teacher = synth_teacher[0]
    config = _config(genres="Adventure,Thriller", methods=("kd",))
    document = tune(synth_data, teacher, tmp_path / "tune", config, {"kd.w_task": ("0", 0.9)}, workers=1,
                    progress=False)
    assert document["points"] == [{"kd.w_task": 0.0}, {"kd.w_task": 0.9}]
    for k, weight in enumerate((0.0, 0.9)):
        recorded = read_json(tmp_path / "tune" / f"point{k}" / "Adventure" / "kd" / "seed0" / "config.json")
        assert recorded["method_config"]["w_task"] == weight and recorded["method_config"]["tau"] == 4.0
    runs = [read_json(tmp_path / "tune" / f"point{k}" / "Adventure" / "kd" / "seed0" / "result.json") for k in (0, 1)]
    assert runs[0]["val_rmse"] != runs[1]["val_rmse"]
    chosen = load_tuned(tmp_path / "tune" / "tuned.json", synth_data, teacher, config)
    results = distill(synth_data, teacher, tmp_path / "students", _config(genres="Adventure,Thriller",
                      methods=("kd",), tuned=chosen, options={"kd": {"w_task": 0.5, "tau": 2}}), progress=False, workers=1)
    for result in results:
        genre_class = _class_of(synth_data, result["genre"])
        k = document["chosen_point"]["kd"][genre_class]
        recorded = read_json(tmp_path / "students" / slug(result["genre"]) / "kd" / "seed0" / "config.json")
        # the tuned weight wins over --set's; --set's other options stay
        assert recorded["method_config"]["w_task"] == document["points"][k]["kd.w_task"]
        assert recorded["method_config"]["tau"] == 2.0 and recorded["tuned"] == document["points"][k]
    # refused: another method's option in a run's tuned values; a grid over kd's option with `none` runs
    with pytest.raises(ReckdError, match=r"--tuned \(kd, sparse\): expected options of 'kd' only, found 'dist''s"):
        distill(synth_data, teacher, tmp_path / "bad", _config(genres="Adventure", methods=("kd",),
                tuned={"kd": {"sparse": {"dist.w_task": 0.1}}}), progress=False, workers=1)
    with pytest.raises(ReckdError, match=r"--grid kd\.…: 'kd''s options are searched on its runs only, but "
                                         r"--methods also holds 'none'"):
        tune(synth_data, teacher, tmp_path / "bad", _config(), {"kd.w_task": (0.1,)}, progress=False)
    for grid, message in [({"kd.nope": (1,)}, r"--grid kd.nope: expected a numeric option of 'kd' \(s, tau, w_kd, w_task\), found 'nope'"),
                          ({"kd.rating_loss": ("kl",)}, "--grid kd.rating_loss: expected a numeric option of 'kd'"),
                          ({"kd.w_task": (-1,)}, "--grid kd.w_task: method 'kd' option 'w_task': expected a weight ≥ 0, found -1"),
                          ({"kd.w_task": (True,)}, "--grid kd.w_task: expected a number, found True"),
                          ({"kd.w_task": ("x",)}, "--grid kd.w_task: method 'kd' option 'w_task'")]:
        with pytest.raises(ReckdError, match=message):
            tune(synth_data, teacher, tmp_path / "bad", config, grid, progress=False)
    assert not (tmp_path / "bad").exists()
