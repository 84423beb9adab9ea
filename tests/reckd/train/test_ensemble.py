"""``reckd ensemble``: finished teachers of one split combined into one teacher, the mean of all their
rankers — scored, reloaded, reused, refused when a member changes or comes from another split, and
served to students like any teacher."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from data_prep.config import SplitConfig
from data_prep.split import split
from reckd.cli.main import main
from reckd.data.split import load_split
from reckd.errors import ReckdError
from reckd.models.ensemble import Ensemble
from reckd.models.ranker import RankerConfig
from reckd.train.distill import DistillConfig, distill
from reckd.train.loop import predict_rows, rmse
from reckd.train.teacher import PretrainConfig, ensemble, load_teacher, pretrain

pytestmark = pytest.mark.usefixtures("one_thread")


def _teacher(data, out, arch: str, restarts: int, seed: int = 0):
    config = PretrainConfig(model=RankerConfig(arch=arch, bias=True, embedding_dim=8, hidden=(16, 8)),
                            restarts=restarts, combine="mean")
    config.train = dataclasses.replace(config.train, epochs=2, batch_size=1024, seed=seed)
    pretrain(data, out, config)
    return out


@pytest.fixture(scope="module")
def members(synth_data, tmp_path_factory, one_thread_module):
    root = tmp_path_factory.mktemp("members")
    return _teacher(synth_data, root / "dcn", "dcn", 2), _teacher(synth_data, root / "mlp", "mlp", 1)


def test_ensemble_is_the_mean_of_every_ranker_of_its_members(synth_data, members, tmp_path):
    summary = ensemble(synth_data, members, tmp_path / "ens")
    teacher = load_teacher(tmp_path / "ens")
    assert isinstance(teacher, Ensemble) and [m.config.arch for m in teacher.members] == ["dcn", "dcn", "mlp"]
    rows = synth_data.rows("test")
    dcn, mlp = (predict_rows(load_teacher(m), None, synth_data, rows) for m in members)
    mean = (2 * dcn + mlp) / 3  # each ranker weighted alike: the 2-start member counts twice
    got = predict_rows(teacher, None, synth_data, rows)
    torch.testing.assert_close(got, mean, rtol=0, atol=1e-5)
    assert summary["test_rmse"] == pytest.approx(rmse(mean, synth_data.rating[rows]), abs=1e-5)
    val = synth_data.rows("val")
    assert summary["val_rmse"] == pytest.approx(rmse(predict_rows(teacher, None, synth_data, val),
                                                     synth_data.rating[val]), abs=1e-6)
    results = [json.loads((m / "result.json").read_text()) for m in members]
    assert summary["member_val_rmse"] == [r["val_rmse"] for r in results]
    assert len(summary["best_epoch"]) == 3 and summary["seconds"] == pytest.approx(sum(r["seconds"] for r in results))
    assert summary["parameters"] == sum(p.numel() for p in teacher.parameters())
    assert set(summary["genres"]) <= set(synth_data.genres) and all(
        g["test_ratings"] == synth_data.rows("test", name).numel() for name, g in summary["genres"].items())
    config = json.loads((tmp_path / "ens" / "config.json").read_text())
    assert [m["teacher"] for m in config["members"]] == [str(m) for m in members]
    assert config["split_fingerprint"] == synth_data.fingerprint and len(config["models"]) == 3


def test_ensemble_is_reused_and_refused_when_a_member_changes(synth_data, members, tmp_path):
    first = ensemble(synth_data, members, tmp_path / "ens")
    checkpoint = (tmp_path / "ens" / "checkpoint.pt").read_bytes()
    again = ensemble(synth_data, members, tmp_path / "ens")
    assert again.pop("reused") is True and again == first
    changed = _teacher(synth_data, tmp_path / "mlp-seed1", "mlp", 1, seed=1)
    with pytest.raises(ReckdError, match=r"other options than requested: .*members"):
        ensemble(synth_data, [members[0], changed], tmp_path / "ens")
    assert (tmp_path / "ens" / "checkpoint.pt").read_bytes() == checkpoint  # nothing lost
    remade = ensemble(synth_data, [members[0], changed], tmp_path / "ens", retrain_changed=True)
    assert "reused" not in remade and remade["test_rmse"] != first["test_rmse"]


def test_ensemble_refuses_one_member_or_ranker_twice_too_few_and_another_split(synth_split, synth_data, members, tmp_path):
    with pytest.raises(ReckdError, match="hold the same teacher"):
        ensemble(synth_data, [members[0], members[0]], tmp_path / "a")
    with pytest.raises(ReckdError, match="at least two teacher folders, found 1"):
        ensemble(synth_data, members[:1], tmp_path / "b")
    other = tmp_path / "split-b"
    split("synth", other, data_dir=synth_split.parent,
          config=SplitConfig(seed=3, holdout_genres=("Romance",), min_test_ratings=20))
    with pytest.raises(ReckdError, match="a teacher from another split has seen its held-out ratings"):
        ensemble(load_split(other), members, tmp_path / "c")
    first_start = _teacher(synth_data, tmp_path / "dcn-one", "dcn", 1)  # restart 0 of members[0], trained again
    with pytest.raises(ReckdError, match=r"ranker 0 of .*dcn and ranker 0 of .*dcn-one have the same weights"):
        ensemble(synth_data, [members[0], members[1], first_start], tmp_path / "d")
    assert not any((tmp_path / name).exists() for name in "abcd")


def test_cli_ensemble_then_distill_from_it(synth_split, synth_data, members, tmp_path, capsys):
    out = tmp_path / "ens"
    teachers = ",".join(str(m) for m in members)
    assert main(["ensemble", str(synth_split), "--teachers", teachers, "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "result.json").read_text())
    assert f"test RMSE {summary['test_rmse']:.4f}" in printed and "the mean of 3 rankers" in printed
    config = DistillConfig(genres="Adventure", methods=("kd",), seeds=(0,))
    config.train = dataclasses.replace(config.train, epochs=1)
    results = distill(synth_data, out, tmp_path / "students", config, progress=False)
    assert len(results) == 1 and 0 < results[0]["test_rmse"] < 2
    assert main(["ensemble", str(synth_split), "--teachers", str(members[0]), "--out", str(tmp_path / "x")]) == 1
    assert "expected at least two teacher folders" in capsys.readouterr().err
