"""torchrun + gloo on the CPU: a sharded teacher learns what one process learns, distillation over ranks
gives the same runs, sharded checkpoints load into one process, and bad set-ups are refused."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from reckd.errors import EveryRankError, ReckdError
from reckd.train.distributed import World, load_sharded, shard, world_from_env

SMALL = ("--restarts", "1", "--epochs", "3", "--batch-size", "512", "--lr", "3e-3", "--embedding-optimizer", "adagrad",
         "--embedding-dim", "16", "--hidden", "32,16")


def _torchrun(*args: str, processes: int = 2) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node N -m reckd ARGS``, as a user launches it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "reckd", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def sharded_teacher(synth_split, tmp_path_factory):
    out = tmp_path_factory.mktemp("sharded") / "teacher"
    done = _torchrun("pretrain", str(synth_split), "--out", str(out), *SMALL)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done


def test_two_gloo_ranks_train_the_teacher_of_one_process(sharded_teacher, synth_data, tmp_path, one_thread):
    from reckd.models.ranker import RankerConfig
    from reckd.train.loop import TrainConfig
    from reckd.train.teacher import PretrainConfig, pretrain

    out, done = sharded_teacher
    assert done.stdout.count("teacher: test RMSE") == 1  # rank 0 reports, once
    config = PretrainConfig(restarts=1, scale=False, embedding_optimizer="adagrad",
                            model=dataclasses.replace(RankerConfig.teacher(), embedding_dim=16, hidden=(32, 16)),
                            train=dataclasses.replace(PretrainConfig().train, epochs=3, batch_size=512, lr=3e-3))
    one = pretrain(synth_data, tmp_path / "one", config)
    two = json.loads((out / "result.json").read_text())
    assert abs(two["test_rmse"] - one["test_rmse"]) <= 0.01, (two["test_rmse"], one["test_rmse"])
    assert two["test_rmse"] < 1.0  # it learnt (the synthetic ratings' spread is about 1.1)
    # every table of the embedding collection is sharded on one rank or the other, as torchrec planned it
    features = [name for name, _ in json.loads((out / "config.json").read_text())["features"]]
    assert set(two["sharding"]) == {f"ebc.t_{name}" for name in features}
    assert {r for spec in two["sharding"].values() for r in spec["ranks"]} == {0, 1}
    recorded = json.loads((out / "config.json").read_text())
    assert (recorded["world_size"], recorded["sharding"], recorded["embedding_optimizer"]) == (2, "auto", "adagrad")
    assert isinstance(TrainConfig(**recorded["train"]), TrainConfig)


def test_ranks_score_the_genres_of_one_process(sharded_teacher, synth_data, synth_split, one_thread):
    """Each rank trains on its share of the training ratings only, then scores a share of the genres,
    ranking against every rank's training pairs: the genres' scores equal one process's on the whole split."""
    from reckd.cli.train import _load
    from reckd.train.teacher import genre_rmse, load_teacher

    assert _load(str(synth_split), "cpu", World(1, 2, torch.device("cpu")), share=True).part == (1, 2)
    out, _ = sharded_teacher
    scored = json.loads((out / "result.json").read_text())["genres"]
    expected = genre_rmse(load_teacher(out), synth_data)
    assert list(scored) == list(expected) == [g for g in synth_data.genres if g in expected]
    for genre, scores in expected.items():
        assert scored[genre] == pytest.approx(scores, abs=1e-6), genre


def test_a_sharded_checkpoint_loads_into_one_process(sharded_teacher):
    out, _ = sharded_teacher
    sharded = load_sharded(out / "restart0" / "checkpoint")
    whole = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
    assert set(sharded) == set(whole)
    assert all(torch.equal(sharded[k], whole[k]) for k in whole)  # the one start's best epoch, gathered
    meta = json.loads((out / "restart0" / "checkpoint" / "reckd.json").read_text())
    assert meta["world_size"] == 2 and meta["epoch"] == json.loads((out / "result.json").read_text())["best_epoch"]
    with pytest.raises(ReckdError, match=r"world_size \(recorded 2, requested 3\)"):
        load_sharded(out / "restart0" / "checkpoint", {"world_size": 3, "plan": meta["plan"]})
    with pytest.raises(ReckdError, match="expected a sharded checkpoint"):
        load_sharded(out / "restart0")


def test_a_teacher_made_by_two_ranks_is_not_reused_by_one(sharded_teacher, synth_split):
    out, _ = sharded_teacher
    script = Path(sys.executable).with_name("reckd")
    done = subprocess.run([str(script), "pretrain", str(synth_split), "--out", str(out), *SMALL],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 1
    assert "world_size (recorded 2, requested '<absent>')" in done.stderr


def test_an_interrupted_sharded_teacher_resumes_its_finished_starts(sharded_teacher, synth_split, tmp_path):
    out = tmp_path / "teacher"
    shutil.copytree(sharded_teacher[0], out)
    before = json.loads((out / "result.json").read_text())
    (out / "result.json").unlink()  # killed after its start finished, before the teacher was written
    done = _torchrun("pretrain", str(synth_split), "--out", str(out), *SMALL)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "val RMSE" not in done.stderr.replace("teacher: test RMSE", "")  # no epoch trained again
    assert json.loads((out / "result.json").read_text())["test_rmse"] == before["test_rmse"]
    # a sharded checkpoint from another plan is refused, not loaded into the wrong shards
    meta_path = out / "restart0" / "checkpoint" / "reckd.json"
    meta = json.loads(meta_path.read_text())
    meta["plan"]["ebc.t_user"]["ranks"] = [1 - meta["plan"]["ebc.t_user"]["ranks"][0]]
    meta_path.write_text(json.dumps(meta))
    (out / "result.json").unlink()
    done = _torchrun("pretrain", str(synth_split), "--out", str(out), *SMALL)
    assert done.returncode != 0
    assert "a sharded checkpoint made with another plan, world size or model: plan.ebc.t_user.ranks" in done.stderr
    assert done.stderr.count("reckd: error") == 1  # rank 0's refusal, said once for both ranks


def test_an_interrupted_teacher_resumes_its_finished_starts(synth_data, tmp_path, one_thread):
    from reckd.train.teacher import PretrainConfig, pretrain

    config = PretrainConfig(restarts=2, scale=False)
    config.train = dataclasses.replace(config.train, epochs=2, batch_size=512, lr=3e-3)
    out = tmp_path / "teacher"
    first = pretrain(synth_data, out, config)
    kept = (out / "restart0" / "metrics.jsonl").read_text()
    (out / "result.json").unlink()  # killed while the second start trained
    (out / "restart1" / "start.json").unlink()
    epochs = []
    again = pretrain(synth_data, out, config, on_epoch=epochs.append)
    assert len(epochs) == 2  # only the second start's epochs
    assert (out / "restart0" / "metrics.jsonl").read_text() == kept
    assert again["test_rmse"] == pytest.approx(first["test_rmse"], abs=1e-6)
    assert again["restart_val_rmse"] == pytest.approx(first["restart_val_rmse"], abs=1e-6)


class Killed(Exception):
    """Stands for the process being killed mid-way."""


def test_a_start_interrupted_mid_way_goes_on_from_its_last_epoch(synth_data, tmp_path, one_thread):
    from reckd.train.teacher import PretrainConfig, pretrain

    config = PretrainConfig(restarts=1, scale=False)  # dropout 0.3 and input dropout 0.5: the global RNG matters
    config.train = dataclasses.replace(config.train, epochs=4, batch_size=512, lr=3e-3)
    whole = pretrain(synth_data, tmp_path / "whole", config)

    def kill_at_3(record):
        if record["epoch"] == 3:  # logged, but neither its checkpoint nor its state written
            raise Killed

    out = tmp_path / "teacher"
    with pytest.raises(Killed):
        pretrain(synth_data, out, config, on_epoch=kill_at_3)
    assert torch.load(out / "restart0" / "last.pt", weights_only=True)["epoch"] == 2
    epochs = []
    again = pretrain(synth_data, out, config, on_epoch=epochs.append)
    assert [r["epoch"] for r in epochs] == [3, 4]  # epochs 1 and 2 are not trained again
    assert again["test_rmse"] == pytest.approx(whole["test_rmse"], abs=1e-6)  # as if never interrupted
    logged = [json.loads(line) for line in (out / "restart0" / "metrics.jsonl").read_text().splitlines()]
    expected = [json.loads(x) for x in (tmp_path / "whole" / "restart0" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in logged] == [1, 2, 3, 4]
    assert [r["val_rmse"] for r in logged] == pytest.approx([r["val_rmse"] for r in expected], abs=1e-6)
    assert not (out / "restart0" / "last.pt").exists()  # a finished start keeps no training state
    # a start interrupted under other options starts over, not from their state

    def with_lr(lr: float) -> PretrainConfig:
        return dataclasses.replace(config, train=dataclasses.replace(config.train, lr=lr))

    with pytest.raises(Killed):
        pretrain(synth_data, out, with_lr(1e-3), on_epoch=kill_at_3, retrain_changed=True)
    epochs.clear()
    pretrain(synth_data, out, with_lr(2e-3), on_epoch=epochs.append, retrain_changed=True)
    assert [r["epoch"] for r in epochs] == [1, 2, 3, 4]


def test_a_sharded_start_killed_mid_way_goes_on_from_its_last_epoch(synth_split, tmp_path):
    args = ("pretrain", str(synth_split), *SMALL[:2], "--epochs", "6", *SMALL[4:])
    whole = _torchrun(*args, "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr[-3000:]
    out = tmp_path / "teacher"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    launch = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                               "-m", "reckd", *args, "--out", str(out)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = out / "restart0" / "last.pt"
    deadline = time.monotonic() + 300
    while launch.poll() is None and time.monotonic() < deadline:
        if last.is_file() and torch.load(last, weights_only=True)["epoch"] >= 2:
            launch.terminate()  # as a scheduler preempts a job: torchrun stops every rank
            break
        time.sleep(0.05)
    launch.wait(timeout=60)
    killed_at = torch.load(last, weights_only=True)["epoch"]
    assert killed_at < 6, "the run finished before it could be killed"
    again = _torchrun(*args, "--out", str(out))
    assert again.returncode == 0, again.stderr[-3000:]
    trained = [int(line.split()[1]) for line in again.stderr.splitlines() if line.startswith("epoch ")]
    assert trained == list(range(killed_at + 1, 7)), again.stderr[-5000:]
    logged = [json.loads(line)["epoch"] for line in (out / "restart0" / "metrics.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3, 4, 5, 6]
    before, after = (json.loads((d / "result.json").read_text()) for d in (tmp_path / "whole", out))
    assert after["test_rmse"] == pytest.approx(before["test_rmse"], abs=1e-4)
    assert not list((out / "restart0").glob("last*"))


def test_distill_over_two_ranks_runs_each_run_once_with_one_process_results(synth_split, synth_data, synth_teacher,
                                                                            tmp_path, one_thread):
    from reckd.train.distill import DistillConfig, distill

    teacher = synth_teacher[0]
    genres = ",".join(synth_data.genres[:2])
    done = _torchrun("distill", str(synth_split), "--teacher", str(teacher), "--out", str(tmp_path / "two"),
                     "--genres", genres, "--methods", "none,kd", "--seeds", "0,1", "--epochs", "3", "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    config = DistillConfig(genres=genres, methods=("none", "kd"), seeds=(0, 1))
    config.train = dataclasses.replace(config.train, epochs=3)
    one = {(r["genre"], r["method"], r["seed"]): r
           for r in distill(synth_data, teacher, tmp_path / "one", config, progress=False, workers=1)}
    two = {}
    for path in (tmp_path / "two").glob("*/*/seed*/result.json"):
        result = json.loads(path.read_text())
        two[(result["genre"], result["method"], result["seed"])] = result
        epochs = (path.parent / "metrics.jsonl").read_text().splitlines()
        assert len(epochs) == result["epochs_run"]  # trained once: one line per epoch
    assert set(two) == set(one) and len(two) == 8
    for key, result in one.items():
        assert two[key]["test_rmse"] == pytest.approx(result["test_rmse"], abs=1e-6), key
        assert two[key]["best_epoch"] == result["best_epoch"]
    assert len(json.loads((tmp_path / "two" / "distill.json").read_text())["runs"]) == 8


# ---------------------------------------------------------------- bad set-ups
def test_a_batch_the_world_size_does_not_divide_is_refused(synth_data, tmp_path):
    from reckd.train.teacher import PretrainConfig, pretrain

    config = PretrainConfig(restarts=1, scale=False)
    config.train = dataclasses.replace(config.train, batch_size=511)
    with pytest.raises(ReckdError, match="--batch-size 511: expected a global batch that the world size 2 divides"):
        pretrain(synth_data, tmp_path / "t", config, world=World(0, 2, torch.device("cpu")))
    assert not (tmp_path / "t").exists()


def test_sharding_options_fbgemm_cannot_serve_on_cpu_are_refused():
    from reckd.models.ranker import Ranker, RankerConfig

    world = World(0, 2, torch.device("cpu"))
    model = Ranker(RankerConfig(embedding_dim=8), [("user", 10), ("item", 10)], (1, 2, 3, 4, 5))
    with pytest.raises(ReckdError, match="--embedding-optimizer adam: fbgemm's CPU kernels .* adagrad"):
        shard(model, world, "adam", 1e-3, 0.0)
    with pytest.raises(ReckdError, match="--sharding row_wise: torchrec shards tables on CPUs table_wise"):
        shard(model, world, "adagrad", 1e-3, 0.0, sharding="row_wise")
    odd = Ranker(RankerConfig(embedding_dim=6), [("user", 10), ("item", 10)], (1, 2, 3, 4, 5))
    with pytest.raises(ReckdError, match="--embedding-dim 6: .* divisible by 4"):
        shard(odd, world, "adagrad", 1e-3, 0.0)


def test_a_launch_without_torchrun_variables_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ReckdError, match="RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT not set: expected a launch by "
                                         "torchrun"):
        world_from_env("cpu")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert world_from_env("cpu") is None


def test_an_unreachable_rendezvous_is_refused(monkeypatch):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for name, value in {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": str(port)}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ReckdError, match=rf"rendezvous at 127.0.0.1:{port} \(rank 1 of 2\): expected every rank"):
        world_from_env("cpu", timeout_s=2)
    assert not dist.is_initialized()


def _agree(rank: int, store: str, values: list, errors) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        World(rank, 2, torch.device("cpu")).agree("the split's fingerprint", values[rank])
        errors.put((rank, None))
    except ReckdError as error:
        errors.put((rank, str(error)))
    finally:
        dist.destroy_process_group()


def test_ranks_that_see_different_splits_stop(tmp_path):
    context = mp.get_context("spawn")
    errors = context.Queue()
    processes = [context.Process(target=_agree, args=(rank, str(tmp_path / "store"), ["aaa", "bbb"], errors))
                 for rank in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    found = dict(errors.get(timeout=5) for _ in range(2))
    assert found[0] == found[1] == ("the split's fingerprint: expected the same on every rank, found rank 0: aaa, "
                                    "rank 1: bbb; every rank must read the same files")


def _slow_main(rank: int, port: int, results) -> None:
    os.environ.update(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    world = world_from_env("cpu", timeout_s=2)
    try:  # rank 0 works alone for longer than the join may take; rank 1 waits for it
        results.put((rank, world.from_main(lambda: time.sleep(5) or 42)))
    except Exception as error:  # noqa: BLE001 - reported to the test
        results.put((rank, repr(error)))
    finally:
        dist.destroy_process_group()


def test_a_collective_outwaits_the_join_timeout():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = mp.get_context("spawn")
    results = context.Queue()
    processes = [context.Process(target=_slow_main, args=(rank, port, results)) for rank in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert dict(results.get(timeout=5) for _ in range(2)) == {0: 42, 1: 42}


@pytest.mark.parametrize("rank, alike, said", [("0", True, "reckd: error: bad\n"), ("1", True, ""),
                                              ("1", False, "reckd: error (rank 1): bad\n")])
def test_an_error_every_rank_raised_is_said_once(monkeypatch, capsys, rank, alike, said):
    from reckd.cli import main as cli

    def refuse(args):
        raise (EveryRankError if alike else ReckdError)("bad")

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", rank)
    parsed = SimpleNamespace(func=refuse)
    monkeypatch.setattr(cli, "build_parser", lambda: SimpleNamespace(parse_args=lambda argv: parsed))
    assert cli.main([]) == 1
    assert capsys.readouterr().err == said


def test_adagrad_for_tables_and_adam_for_the_rest_in_one_process():
    from reckd.losses import Dims, HeadSpec, get, make_config
    from reckd.models.ranker import Ranker, RankerConfig
    from reckd.train.loop import TrainConfig, _optimizers

    model = Ranker(RankerConfig(bias=True), [("user", 10), ("item", 10)], (1, 2, 3, 4, 5))
    none = get("none")(make_config("none"), Dims(*model.dims), Dims(*model.dims), HeadSpec("rating", (1, 2, 3, 4, 5)))
    adam, adagrad = _optimizers(model, none, TrainConfig(), torch.device("cpu"), "adagrad")
    tables = {id(p) for p in [*model.ebc.parameters(), *model.bias_ebc.parameters()]}
    assert isinstance(adam, torch.optim.Adam) and isinstance(adagrad, torch.optim.Adagrad)
    assert {id(p) for g in adagrad.param_groups for p in g["params"]} == tables
    assert not tables & {id(p) for g in adam.param_groups for p in g["params"]}
    (only,) = _optimizers(model, none, TrainConfig(), torch.device("cpu"), "adam")
    assert sum(len(g["params"]) for g in only.param_groups) == len(list(model.parameters()))


def test_students_sharded_over_two_ranks_learn_what_one_process_learns(synth_split, synth_data, synth_teacher,
                                                                        tmp_path, one_thread):
    """``distill --shard-students``: every run trained by both ranks, its student's tables sharded and its
    method's extras (FitNets' regressor) averaged; the folder is what one process writes."""
    from reckd.models.ranker import Ranker, RankerConfig
    from reckd.train.distill import DistillConfig, distill
    from reckd.train.teacher import ranker_features

    teacher, genre, methods = synth_teacher[0], synth_data.genres[0], ("none", "kd", "fitnet")
    done = _torchrun("distill", str(synth_split), "--teacher", str(teacher), "--out", str(tmp_path / "two"),
                     "--genres", genre, "--methods", ",".join(methods), "--seeds", "0", "--epochs", "4",
                     "--embedding-optimizer", "adagrad", "--shard-students", "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    config = DistillConfig(genres=genre, methods=methods, seeds=(0,), embedding_optimizer="adagrad")
    config.train = dataclasses.replace(config.train, epochs=4)
    one = {r["method"]: r for r in distill(synth_data, teacher, tmp_path / "one", config, progress=False, workers=1)}
    test_rows = synth_data.rows("test", genre)
    for method in methods:
        folder = tmp_path / "two" / genre / method / "seed0"
        two = json.loads((folder / "result.json").read_text())
        assert abs(two["test_rmse"] - one[method]["test_rmse"]) <= 0.02, (method, two["test_rmse"], one[method])
        recorded = json.loads((folder / "config.json").read_text())
        assert (recorded["world_size"], recorded["embedding_optimizer"]) == (2, "adagrad")
        assert len((folder / "metrics.jsonl").read_text().splitlines()) == two["epochs_run"]
        assert not (folder / "checkpoint").exists()  # the sharded copy, replaced by the gathered checkpoint.pt
        # checkpoint.pt is the model that was scored: one process reloads it and predicts the same
        model = Ranker(RankerConfig(**recorded["model"]), ranker_features(synth_data), synth_data.levels)
        model.load_state_dict(torch.load(folder / "checkpoint.pt", weights_only=True)["model"])
        model.eval()
        predicted = model(synth_data.batch_rows(test_rows).sparse_features).prediction
        saved = torch.from_numpy(np.load(folder / "test_predictions.npy"))
        assert torch.allclose(predicted.clamp(synth_data.rating_min, synth_data.rating_max), saved, atol=1e-5)


def test_sharded_students_need_torchrun(synth_data, synth_teacher, tmp_path):
    from reckd.train.distill import DistillConfig, distill

    with pytest.raises(ReckdError, match="--shard-students: expected a launch by torchrun"):
        distill(synth_data, synth_teacher[0], tmp_path / "d", DistillConfig(shard_students=True), progress=False)


def test_the_genres_scored_are_dealt_once_each_about_evenly(synth_data):
    from reckd.train.teacher import deal_genres

    movies = dict(zip(synth_data.genres, synth_data.item_genre.sum(0).tolist()))
    for ranks in (1, 2, 3):
        shares = deal_genres(synth_data, ranks)
        assert len(shares) == ranks and sorted(g for s in shares for g in s) == sorted(synth_data.genres)
        loads = [sum(movies[g] for g in share) for share in shares]
        assert max(loads) - min(loads) <= max(movies.values())  # the largest-first greedy bound
    # by hand: genres of 5, 4, 3 and 2 movies over 2 ranks -> 5 + 2 and 4 + 3 (every second genre: 8 and 6)
    rows = [[1, 1, 1, 1]] * 2 + [[1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0]]
    data = SimpleNamespace(genres=["a", "b", "c", "d"], item_genre=torch.tensor(rows).bool())
    assert deal_genres(data, 2) == [["a", "d"], ["b", "c"]]
