"""Every number traceable (issue 8): a teacher from another split, a stale cache, a changed-option
resume, two writers on one folder, a killed parent, a large --augment, foreign files, partial reports."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from data_prep.config import SplitConfig
from data_prep.split import split
from reckd.cli.main import main
from reckd.data.augment import sample_unrated
from reckd.data.split import load_split
from reckd.errors import ReckdError
from reckd.train.distill import DistillConfig, distill
from reckd.train.teacher import cached_teacher_outputs, load_teacher, teacher_outputs, teacher_ref

SMALL = "Adventure"  # the synthetic split's smallest genre (470 training ratings, 7 movies)


def _config(**kwargs) -> DistillConfig:
    config = DistillConfig(**{"genres": SMALL, "methods": ("none", "kd"), "seeds": (0, 1), **kwargs})
    config.train = dataclasses.replace(config.train, epochs=2)
    return config


def test_teacher_from_another_split_is_refused(synth_split, synth_teacher, tmp_path):
    other = tmp_path / "split-b"
    split("synth", other, data_dir=synth_split.parent,
          config=SplitConfig(seed=3, holdout_genres=("Romance",), min_test_ratings=20))
    data_b = load_split(other)
    a = load_split(synth_split).fingerprint
    assert data_b.fingerprint != a
    with pytest.raises(ReckdError, match=f"trained on split {a}.* is split {data_b.fingerprint}"):
        distill(data_b, synth_teacher[0], tmp_path / "students", _config(), progress=False)
    assert not (tmp_path / "students").exists()  # refused before anything was written


def test_stale_or_truncated_cache_is_rebuilt(synth_data, synth_teacher, tmp_path, capsys):
    teacher_dir = tmp_path / "teacher"
    teacher_dir.mkdir()
    for name in ("config.json", "result.json", "checkpoint.pt"):
        (teacher_dir / name).write_bytes((synth_teacher[0] / name).read_bytes())
    ref = teacher_ref(teacher_dir, synth_data)
    teacher = load_teacher(teacher_dir)
    live = teacher_outputs(teacher, synth_data, synth_data.user, synth_data.item)
    first = cached_teacher_outputs(teacher, synth_data, ref)
    assert torch.equal(first.prediction, live.prediction)
    # a cache stamped for another split (as when a split folder is rewritten in place) is not trusted
    stale = torch.load(teacher_dir / "cache.pt", weights_only=True)
    stale["key"]["split_fingerprint"] = "sha256:another"
    stale["prediction"] = stale["prediction"] + 0.65
    torch.save(stale, teacher_dir / "cache.pt")
    again = cached_teacher_outputs(teacher, synth_data, ref)
    assert torch.equal(again.prediction, live.prediction)
    assert "made from another teacher checkpoint or split; rebuilding" in capsys.readouterr().err
    # a truncated cache is rebuilt, not fatal
    data = (teacher_dir / "cache.pt").read_bytes()
    (teacher_dir / "cache.pt").write_bytes(data[: len(data) // 3])
    again = cached_teacher_outputs(teacher, synth_data, ref)
    assert torch.equal(again.prediction, live.prediction)
    assert "unreadable" in capsys.readouterr().err
    assert torch.load(teacher_dir / "cache.pt", weights_only=True)["key"]["teacher_sha256"] == ref.sha256


def test_teacher_outputs_hold_only_the_states_asked_for(synth_data, synth_teacher):
    teacher = load_teacher(synth_teacher[0])
    users, items = synth_data.user[:5000], synth_data.item[:5000]
    whole = teacher(synth_data.batch(users, items).sparse_features)
    both = teacher_outputs(teacher, synth_data, users, items, lower=True, chunk=1024)  # 5 chunks
    torch.testing.assert_close(both.lower, whole.lower)
    torch.testing.assert_close(both.upper, whole.upper)
    torch.testing.assert_close(both.prediction, whole.prediction)
    bare = teacher_outputs(teacher, synth_data, users, items, upper=False, chunk=1024)
    assert torch.equal(bare.prediction, both.prediction)
    assert bare.lower.shape == bare.upper.shape == (5000, 0)


def test_cache_keeps_states_only_when_a_method_reads_them_in_half_precision(synth_data, synth_teacher, tmp_path,
                                                                             capsys):
    from reckd.losses import get, names

    assert {n for n in names() if get(n).reads_teacher_states} == {"fitnet", "hybrid", "moe"}
    teacher_dir = tmp_path / "teacher"
    teacher_dir.mkdir()
    for name in ("config.json", "result.json", "checkpoint.pt"):
        (teacher_dir / name).write_bytes((synth_teacher[0] / name).read_bytes())
    ref, teacher = teacher_ref(teacher_dir, synth_data), load_teacher(teacher_dir)
    live = teacher_outputs(teacher, synth_data, synth_data.user, synth_data.item)
    bare = cached_teacher_outputs(teacher, synth_data, ref, states=False)
    assert torch.equal(bare.prediction, live.prediction) and bare.upper.shape == (len(live.prediction), 0)
    small = (teacher_dir / "cache.pt").stat().st_size
    full = cached_teacher_outputs(teacher, synth_data, ref, states=True)  # lacks t_h: rebuilt with it
    assert "without the teacher's states t_h" in capsys.readouterr().err
    stored = torch.load(teacher_dir / "cache.pt", weights_only=True)
    assert stored["upper"].dtype == torch.float16 and stored["prediction"].dtype == torch.float32
    # half precision: every value within 2^-11 of the float32 state (relative), read back as float32
    rows = torch.arange(len(live.prediction))
    t_h = full.index(rows).upper
    assert t_h.dtype == torch.float32
    assert ((t_h - live.upper).abs() <= live.upper.abs() * 2.0 ** -11 + 1e-7).all()
    assert (teacher_dir / "cache.pt").stat().st_size > small * 10  # t_h is most of the cache
    # a cache with t_h serves a request without it, unchanged
    again = cached_teacher_outputs(teacher, synth_data, ref, states=False)
    assert torch.equal(again.prediction, live.prediction) and capsys.readouterr().err == ""


def test_resume_with_changed_options_is_refused_then_retrained(synth_data, synth_teacher, tmp_path):
    out = tmp_path / "students"
    zero = _config(options={"kd": {"w_kd": "0"}})
    before = {(r["method"], r["seed"]): r["test_rmse"] for r in distill(synth_data, synth_teacher[0], out, zero,
                                                                        progress=False)}
    with pytest.raises(ReckdError, match=r"(?s)2 run\(s\) were made with other options.*kd/seed0: "
                                         r"method_config.w_kd \(recorded 0.0, requested 1.0\).*--retrain-changed"):
        distill(synth_data, synth_teacher[0], out, _config(), progress=False)
    kd = out / SMALL / "kd" / "seed0"
    assert json.loads((kd / "config.json").read_text())["method_config"]["w_kd"] == 0.0  # nothing overwritten
    stamp = (out / SMALL / "none" / "seed0" / "result.json").stat().st_mtime_ns
    after = {(r["method"], r["seed"]): r["test_rmse"] for r in distill(synth_data, synth_teacher[0], out, _config(),
                                                                       progress=False, retrain_changed=True)}
    assert json.loads((kd / "config.json").read_text())["method_config"]["w_kd"] == 1.0
    assert (out / SMALL / "none" / "seed0" / "result.json").stat().st_mtime_ns == stamp  # unchanged run kept
    assert after[("none", 0)] == before[("none", 0)] and after[("kd", 0)] != before[("kd", 0)]


def test_repeated_or_empty_lists_and_bad_options_name_the_flag(synth_data, synth_teacher, tmp_path):
    cases = [(dict(seeds=(0, 0)), "--seeds: expected each value once, found 0"),
             (dict(seeds=()), "--seeds: expected a non-empty"),
             (dict(methods=()), "--methods: expected a non-empty"),
             (dict(methods=("kd", "kd")), "--methods: expected each value once"),
             (dict(genres=f"{SMALL},{SMALL}"), "--genres: expected each value once"),
             (dict(augment=0, methods=("kd+aug",)), "--augment: expected at least 1"),
             (dict(options={"dist": {"tau": "2"}}), "--set: options given for 'dist'")]
    for kwargs, message in cases:
        config = _config(**kwargs)
        with pytest.raises(ReckdError, match=message):
            distill(synth_data, synth_teacher[0], tmp_path / "out", config, progress=False)
    with pytest.raises(ReckdError, match="--epochs: expected at least 1, found 0"):
        _config().train = dataclasses.replace(_config().train, epochs=0)
    assert not (tmp_path / "out").exists()


def test_large_augment_takes_every_unrated_pair_of_a_small_genre(synth_data):
    index = synth_data.genre_index(SMALL)
    in_genre = synth_data.item_genre[:, index]
    rated = torch.unique(synth_data.user * synth_data.num_items + synth_data.item)
    free = synth_data.num_users * int(in_genre.sum()) - int(in_genre[rated % synth_data.num_items].sum())
    asked = 16 * synth_data.rows("train", SMALL).numel()
    assert asked > free
    users, items = sample_unrated(synth_data, SMALL, asked, seed=index)
    keys = users * synth_data.num_items + items
    assert keys.numel() == torch.unique(keys).numel() == free
    assert not torch.isin(keys, rated).any() and in_genre[items].all()
    # nearly all of them: the exact draw finishes what popularity sampling leaves, still without repeats
    users, items = sample_unrated(synth_data, SMALL, free - 3, seed=index)
    keys = users * synth_data.num_items + items
    assert keys.numel() == torch.unique(keys).numel() == free - 3 and not torch.isin(keys, rated).any()


def test_augment_shortfall_is_recorded(synth_data, synth_teacher, tmp_path, capsys):
    config = _config(augment=16)
    config.methods, config.seeds = ("kd+aug",), (0,)
    (result,) = distill(synth_data, synth_teacher[0], tmp_path / "out", config, progress=False)
    assert 0 < result["augment_pairs"] < 16 * result["train_ratings"]
    assert f"{result['augment_pairs']} unrated pairs exist, fewer than the" in capsys.readouterr().err


def test_foreign_folders_are_refused_and_left_alone(synth_data, synth_teacher, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("user data")
    (mine / "result.json").write_text("{}")
    with pytest.raises(Exception, match="expected a new or empty folder.*keep.txt"):
        distill(synth_data, synth_teacher[0], mine, _config(), progress=False)
    from reckd.train.teacher import PretrainConfig, pretrain

    with pytest.raises(Exception, match="expected a new or empty folder"):
        pretrain(synth_data, mine, PretrainConfig())
    assert sorted(p.name for p in mine.iterdir()) == ["keep.txt", "result.json"]  # left exactly as it was
    assert (mine / "keep.txt").read_text() == "user data"
    # a file dropped into a run folder is never deleted by a resume
    out = tmp_path / "students"
    config = _config()
    config.seeds = (0,)
    distill(synth_data, synth_teacher[0], out, config, progress=False)
    run = out / SMALL / "kd" / "seed0"
    (run / "result.json").unlink()
    (run / "notes.txt").write_text("mine")
    with pytest.raises(ReckdError, match="notes.txt"):
        distill(synth_data, synth_teacher[0], out, config, progress=False)
    assert (run / "notes.txt").read_text() == "mine"


def _cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """The console script, as a user runs it."""
    script = Path(sys.executable).with_name("reckd")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(script), *args], capture_output=True, text=True, env=env, **kwargs)


def test_two_writers_on_one_folder(synth_split, synth_teacher, tmp_path):
    out = tmp_path / "students"
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time; from data_prep.folder import claim\n"
                               f"with claim({str(out)!r}, 'reckd distill'):\n"
                               "    print('held', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        done = _cli("distill", str(synth_split), "--teacher", str(synth_teacher[0]), "--out", str(out),
                    "--genres", SMALL, "--methods", "none", "--seeds", "0", "--epochs", "1", "--quiet")
        assert done.returncode == 1
        assert f"in use by pid {holder.pid} " in done.stderr and "(reckd distill, since" in done.stderr
        assert "Traceback" not in done.stderr
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock is taken over
    done = _cli("distill", str(synth_split), "--teacher", str(synth_teacher[0]), "--out", str(out),
                "--genres", SMALL, "--methods", "none", "--seeds", "0", "--epochs", "1", "--quiet")
    assert done.returncode == 0, done.stderr


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_killed_parent_leaves_no_workers(synth_split, synth_teacher, tmp_path):
    parent = subprocess.Popen([str(Path(sys.executable).with_name("reckd")), "distill", str(synth_split),
                               "--teacher", str(synth_teacher[0]), "--out", str(tmp_path / "students"),
                               "--genres", "Drama", "--methods", "none,kd", "--seeds", "0,1", "--workers", "2",
                               "--quiet"], stderr=subprocess.DEVNULL)
    workers = []
    for _ in range(600):  # wait for both workers to have started training
        workers = [p for p in _children(parent.pid)
                   if "multiprocessing" in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")
                   and "resource_tracker" not in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")]
        if len(workers) == 2 and list((tmp_path / "students").glob("*/*/seed*/metrics.jsonl")):
            break
        time.sleep(0.1)
    assert len(workers) == 2
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    for _ in range(100):
        alive = [p for p in workers if Path(f"/proc/{p}").exists()
                 and Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
        if not alive:
            break
        time.sleep(0.1)
    assert alive == []


def test_cli_end_to_end_and_partial_report(synth_split, tmp_path):
    teacher, students = tmp_path / "teacher", tmp_path / "students"
    done = _cli("pretrain", str(synth_split), "--out", str(teacher), "--epochs", "2", "--restarts", "1",
                "--arch", "dcn", "--no-bias", "--embedding-dim", "24", "--dropout", "0.2", "--weight-decay", "0.01")
    assert done.returncode == 0, done.stderr
    assert "teacher: test RMSE" in done.stdout
    fingerprint = load_split(synth_split).fingerprint
    assert json.loads((teacher / "result.json").read_text())["split_fingerprint"] == fingerprint
    recorded = json.loads((teacher / "config.json").read_text())["model"]
    assert (recorded["arch"], recorded["bias"], recorded["embedding_dim"], recorded["dropout"]) == ("dcn", False, 24, 0.2)
    assert json.loads((teacher / "config.json").read_text())["train"]["weight_decay"] == 0.01
    done = _cli("distill", str(synth_split), "--teacher", str(teacher), "--out", str(students), "--genres", SMALL,
                "--methods", "none,kd", "--seeds", "0,1", "--epochs", "2", "--quiet",
                "--arch", "deepfm", "--hidden", "16,8", "--batch-size", "256", "--lr", "0.01")
    assert done.returncode == 0, done.stderr
    recorded = json.loads((students / SMALL / "kd" / "seed0" / "config.json").read_text())
    assert (recorded["model"]["arch"], recorded["model"]["hidden"]) == ("deepfm", [16, 8])
    assert recorded["train"]["lr"] == 0.01 and recorded["train"]["batch_size"] <= 256
    report = _cli("report", str(students), "--format", "json")
    assert report.returncode == 0, report.stderr
    doc = json.loads(report.stdout)
    assert doc["split_fingerprint"] == fingerprint and doc["seeds"] == [0, 1] and doc["methods"] == ["none", "kd"]
    assert doc["teacher"]["test_rmse"] == json.loads((teacher / "result.json").read_text())["test_rmse"]
    assert doc["partial"] is False and doc["reckd_version"]
    (row,) = [r for r in doc["rows"] if r["genre"] == SMALL]
    assert row["kd_seeds"] == row["kd_seeds_asked"] == 2
    (students / SMALL / "kd" / "seed1" / "result.json").unlink()
    refused = _cli("report", str(students))
    assert refused.returncode == 1 and "1 requested run(s) not finished (Adventure/kd/seed1)" in refused.stderr
    assert refused.stdout == ""
    partial = _cli("report", str(students), "--allow-partial")
    assert partial.returncode == 0 and "warning" in partial.stderr
    assert "n=1/2" in partial.stdout
    bad = _cli("distill", str(synth_split), "--teacher", str(teacher), "--out", str(students), "--seeds", "1,1")
    assert bad.returncode == 1 and bad.stderr.startswith("reckd: error: --seeds")
    bad = _cli("distill", str(synth_split), "--teacher", str(teacher), "--out", str(students), "--hidden", "16,0")
    assert bad.returncode == 1 and "hidden[1] (--hidden): expected a whole number ≥ 1, found 0" in bad.stderr
    bad = _cli("pretrain", str(synth_split), "--out", str(tmp_path / "t2"), "--batch-size", "0")
    assert bad.returncode == 1 and "--batch-size: expected at least 1, found 0" in bad.stderr
    bad = _cli("pretrain", str(synth_split), "--out", str(tmp_path / "t2"), "--dropout", "1.5")
    assert bad.returncode == 1 and "dropout (--dropout): expected a probability in [0, 1), found 1.5" in bad.stderr
    bad = _cli("distill", str(synth_split), "--teacher", str(teacher), "--out", str(students), "--weight-decay", "-1")
    assert bad.returncode == 1 and "weight_decay (--weight-decay): expected a finite value ≥ 0, found -1.0" in bad.stderr


def test_cli_errors_exit_1_and_bugs_keep_their_traceback(tmp_path, capsys, monkeypatch):
    assert main(["report", str(tmp_path)]) == 1
    assert "distill.json: missing" in capsys.readouterr().err
    import reckd.cli.report as command

    monkeypatch.setattr(command, "cmd_report", lambda args: {}["a bug"])
    with pytest.raises(KeyError):  # a bug in a command is not turned into a one-line message
        main(["report", str(tmp_path)])


def test_method_and_training_options_are_checked_for_range():
    from reckd.losses import make_config
    from reckd.train.loop import TrainConfig

    for options, message in (({"tau": "-1"}, "'tau': expected a value > 0, found -1.0"),
                             ({"tau": "nan"}, "'tau': expected a finite number, found nan"),
                             ({"w_kd": "-0.5"}, "'w_kd': expected a weight ≥ 0, found -0.5")):
        with pytest.raises(ValueError, match=message):
            make_config("kd", options)
    assert make_config("kd", {"w_kd": "0"}).w_kd == 0.0
    with pytest.raises(ValueError, match="'beta': expected a weight ≥ 0"):
        make_config("dist", {"beta": "-1"})
    for kwargs, message in ((dict(epochs=0), "--epochs: expected at least 1, found 0"),
                            (dict(batch_size=-4), "--batch-size: expected at least 1"),
                            (dict(lr=float("nan")), "--lr: expected a finite learning rate > 0, found nan"),
                            (dict(weight_decay=-1e-5), r"weight_decay \(--weight-decay\): expected a finite value ≥ 0")):
        with pytest.raises(ReckdError, match=message):
            TrainConfig(**kwargs)


def test_cli_names_a_bad_option(synth_split, synth_teacher, tmp_path):
    done = _cli("distill", str(synth_split), "--teacher", str(synth_teacher[0]), "--out", str(tmp_path / "s"),
                "--methods", "kd", "--set", "kd.tau=-1")
    assert done.returncode == 1 and done.stderr.startswith("reckd: error: --set: method 'kd' option 'tau'")
    assert not (tmp_path / "s").exists()


def test_the_same_training_writes_the_same_checkpoint_bytes(synth_data, synth_teacher, tmp_path, one_thread):
    """A checkpoint's SHA-256 is what students record of their teacher: training the same run twice must
    give the same bytes (not only the same weights), whatever temp file each write went through."""
    import hashlib

    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    for out in ("a", "b"):
        distill(synth_data, synth_teacher[0], tmp_path / out, _config(methods=("kd",), seeds=(0,)), progress=False)
    run = Path(SMALL) / "kd" / "seed0"
    assert digest(tmp_path / "a" / run / "checkpoint.pt") == digest(tmp_path / "b" / run / "checkpoint.pt")
