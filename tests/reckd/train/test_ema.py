"""The moving average of the weights (``TrainConfig.ema``): what it averages, what it keeps, how it
resumes, and how it is recorded."""

from __future__ import annotations

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from reckd.errors import ReckdError
from reckd.losses import Dims, HeadSpec, get, make_config
from reckd.cli.main import main
from reckd.models.ranker import Ranker, RankerConfig
from reckd.train.loop import TrainConfig, _averaged, evaluate, fit
from reckd.data.source import RatingSource


def _student(data, seed: int = 0) -> tuple[Ranker, object]:
    torch.manual_seed(seed)
    model = Ranker(RankerConfig(embedding_dim=8, hidden=(16,), bias=True),
                   [(f.name, f.cardinality) for f in data.features], data.levels)
    method = get("none")(make_config("none"), Dims(*model.dims), Dims(*model.dims), HeadSpec("rating", data.levels))
    return model, method


def _rows(data):
    return data.rows("train", "Action"), data.rows("val", "Action")


def test_the_kept_weights_are_the_warmed_up_average_of_every_step(synth_data, one_thread):
    model, method = _student(synth_data)
    train_rows, val_rows = _rows(synth_data)
    steps_per_epoch = 4
    config = TrainConfig(epochs=3, patience=3, batch_size=-(-train_rows.numel() // steps_per_epoch), ema=0.9)
    snapshots = []  # the live weights after every optimiser step
    hook = register_optimizer_step_post_hook(
        lambda *_: snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()}))
    try:
        result = fit(model, method, synth_data, train_rows, val_rows, config)
    finally:
        hook.remove()
    assert len(snapshots) == 3 * steps_per_epoch
    average = dict(snapshots[0])  # the first step's weights are copied, then w̄ ← d·w̄ + (1 − d)·w
    expected = {}
    for n, weights in enumerate(snapshots[1:], start=1):
        d = min(0.9, (1 + n) / (10 + n))
        average = {k: d * average[k] + (1 - d) * weights[k] for k in average}
        if (n + 1) % steps_per_epoch == 0:
            expected[(n + 1) // steps_per_epoch] = average
    kept = model.state_dict()
    for k, v in expected[result.best_epoch].items():
        torch.testing.assert_close(kept[k], v, rtol=1e-5, atol=1e-6)
    # the kept weights are the ones that were validated, and they are not the last step's
    assert evaluate(model, method, RatingSource(synth_data), val_rows) == pytest.approx(result.best_val, abs=1e-6)
    assert any(not torch.allclose(kept[k], snapshots[result.best_epoch * steps_per_epoch - 1][k]) for k in kept)


def test_without_ema_the_run_is_unchanged(synth_data, one_thread):
    """``ema`` at a decay close to 0 follows the live weights: the same validation curve as no average."""
    curves = []
    for ema in (0.0, 1e-9):
        model, method = _student(synth_data)
        train_rows, val_rows = _rows(synth_data)
        records = []
        fit(model, method, synth_data, train_rows, val_rows, TrainConfig(epochs=3, batch_size=256, ema=ema),
            on_epoch=records.append)
        curves.append([r["val_rmse"] for r in records])
    assert curves[1] == pytest.approx(curves[0], abs=1e-6)


class Killed(Exception):
    pass


def test_an_interrupted_run_resumes_its_average(synth_data, tmp_path, one_thread):
    train_rows, val_rows = _rows(synth_data)
    config = TrainConfig(epochs=4, patience=4, batch_size=256, ema=0.8)
    (tmp_path / "whole").mkdir()
    (tmp_path / "cut").mkdir()
    whole, method = _student(synth_data)
    fit(whole, method, synth_data, train_rows, val_rows, config, run_dir=tmp_path / "whole", resumable=True)

    def kill_at_3(record):
        if record["epoch"] == 3:
            raise Killed

    model, method = _student(synth_data)
    with pytest.raises(Killed):
        fit(model, method, synth_data, train_rows, val_rows, config, run_dir=tmp_path / "cut", on_epoch=kill_at_3,
            resumable=True)
    assert "averaged" in torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    model, method = _student(synth_data, seed=1)  # other starting weights: everything comes from last.pt
    epochs = []
    fit(model, method, synth_data, train_rows, val_rows, config, run_dir=tmp_path / "cut", on_epoch=epochs.append,
        resumable=True)
    assert [r["epoch"] for r in epochs] == [3, 4]
    for k, v in whole.state_dict().items():
        torch.testing.assert_close(model.state_dict()[k], v, rtol=1e-5, atol=1e-6)


def test_ema_is_checked_and_recorded_only_when_on(synth_data, synth_split, synth_teacher, tmp_path):
    for bad in (1.0, -0.1):
        with pytest.raises(ReckdError, match=r"ema: expected a decay in \[0, 1\) \(0: off\), found"):
            TrainConfig(ema=bad)
    assert "ema" not in TrainConfig().recorded()  # runs made before the option existed still resume
    assert TrainConfig(ema=0.9).recorded()["ema"] == 0.9
    model, _ = _student(synth_data)
    with pytest.raises(ReckdError, match="ema: expected 0 \\(off\\) for a sharded model under torchrun, found 0.9"):
        _averaged(model, 0.9, world=object())
    assert main(["distill", str(synth_split), "--teacher", str(synth_teacher[0]), "--out", str(tmp_path / "s"),
                 "--ema", "1.5", "--device", "cpu"]) == 1
    assert not (tmp_path / "s").exists()
