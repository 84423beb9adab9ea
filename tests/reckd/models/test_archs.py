"""The torchrec architectures (``mlp``, ``dlrm``, ``dcn``, ``deepfm``) with and without bias terms:
shapes, staged forward = plain forward, parameters counted by formula, the wide channel by hand,
every method across every teacher × student pair, distillation across architectures beats scratch on
the planted synthetic task, and checkpoints that reload only into their own architecture."""

from __future__ import annotations

import dataclasses
import json
import re
import statistics

import pytest
import torch

from reckd.errors import OptionError, ReckdError
from reckd.losses import Dims, HeadSpec, get, make_config, names
from reckd.models.ensemble import Ensemble
from reckd.models.ranker import ARCHS, Ranker, RankerConfig, count_parameters
from reckd.train.distill import DistillConfig, distill
from reckd.train.loop import TeacherView, TrainConfig, fit, predict_rows, rmse
from reckd.train.teacher import PretrainConfig, load_teacher, pretrain

pytestmark = pytest.mark.usefixtures("one_thread")


def _features(data):
    return [(f.name, f.cardinality) for f in data.features]


def _expected_parameters(config: RankerConfig, features) -> int:
    """The parameter count written out from each architecture's definition."""
    d, n, (h0, *rest) = config.embedding_dim, len(features), config.hidden
    cards = dict(features)
    count = d * sum(cards.values()) + (cards["user"] + cards["item"] if config.bias else 0)
    width = {"mlp": d * (n + 1), "dlrm": d * n + n * (n - 1) // 2, "dcn": d * n, "deepfm": d * n}[config.arch]
    if config.arch == "dcn":  # per layer: W (N×r), V (r×N), bias (N), r = N // 4
        count += config.cross_layers * (2 * width * (width // 4) + width)
    widths = [width, h0, *rest]
    count += sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
    return count + (config.hidden[-1] + config.wide) + 1  # the scalar head


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("bias", [False, True])
def test_shapes_staged_forward_and_parameters(synth_data, arch, bias):
    torch.manual_seed(0)
    config = RankerConfig(arch=arch, bias=bias)
    model = Ranker(config, _features(synth_data), synth_data.levels).eval()
    kjt = synth_data.batch_rows(torch.arange(64)).sparse_features
    out = model(kjt)
    wide = int(bias or arch == "deepfm")
    assert model.dims == Dims(64 + wide, 32 + wide)
    assert out.prediction.shape == (64,) and out.lower.shape == (64, 64 + wide) and out.upper.shape == (64, 32 + wide)
    torch.testing.assert_close(model.head(model.upper(model.lower(kjt))), out.prediction, rtol=0, atol=0)
    assert count_parameters(model) == _expected_parameters(config, _features(synth_data))
    # a levels head over the same taps
    levels = Ranker(dataclasses.replace(config, head="levels"), _features(synth_data), synth_data.levels).eval()
    assert levels(kjt).logits.shape == (64, 5)


def test_wide_channel_is_the_biases_plus_the_factorisation_machine(synth_data):
    torch.manual_seed(0)
    rows = torch.arange(32)
    kjt = synth_data.batch_rows(rows).sparse_features
    users, items = synth_data.user[rows], synth_data.item[rows]
    model = Ranker(RankerConfig(arch="deepfm", bias=True), _features(synth_data), synth_data.levels).eval()
    tables = model.bias_ebc.embedding_bags
    assert torch.count_nonzero(tables["b_user"].weight) == 0  # biases start at zero
    with torch.no_grad():
        tables["b_user"].weight.copy_(torch.randn_like(tables["b_user"].weight))
        tables["b_item"].weight.copy_(torch.randn_like(tables["b_item"].weight))
    embeddings = model.ebc(kjt).values().view(32, -1, 16)  # by hand: ½ Σ_d ((Σ_f e_f)² − Σ_f e_f²)
    fm = 0.5 * (embeddings.sum(1) ** 2 - (embeddings ** 2).sum(1)).sum(1)
    want = tables["b_user"].weight[users, 0] + tables["b_item"].weight[items, 0] + fm
    s_l = model.lower(kjt)
    torch.testing.assert_close(s_l[:, -1], want)
    torch.testing.assert_close(model.upper(s_l)[:, -1], want)  # carried to s_h unchanged
    # the scalar head starts as: middle of the scale + tower + the wide channel with weight 1
    assert model.head_layer.weight[0, -1].item() == 1.0


def test_bad_sizes_and_names_are_refused():
    for kwargs, words in (({"arch": "transformer"}, "arch (--arch): expected one of mlp, dlrm, dcn, deepfm"),
                          ({"embedding_dim": 0}, "embedding_dim (--embedding-dim): expected a whole number ≥ 1, found 0"),
                          ({"hidden": (64, -2)}, "hidden[1] (--hidden): expected a whole number ≥ 1, found -2"),
                          ({"hidden": ()}, "hidden (--hidden): expected at least one layer width"),
                          ({"cross_layers": 0}, "cross_layers: expected a whole number ≥ 1, found 0"),
                          ({"dropout": 1.0}, "dropout (--dropout): expected a probability in [0, 1), found 1.0")):
        with pytest.raises(OptionError, match=re.escape(words)):
            RankerConfig(**kwargs)


def test_every_method_runs_across_every_architecture_pair(synth_data):
    """A teacher of each architecture, a student of each: every method trains (two steps), stays
    finite and leaves the teacher untouched — the tap regressors map the different widths."""
    features, head = _features(synth_data), HeadSpec("rating", synth_data.levels)
    train_rows, val_rows = synth_data.rows("train")[:128], synth_data.rows("val")[:64]
    config = TrainConfig(epochs=1, batch_size=64, lr=1e-3)
    for t_arch in ARCHS:
        torch.manual_seed(0)
        teacher = Ranker(RankerConfig(arch=t_arch, bias=True, embedding_dim=24, hidden=(48, 24, 12)), features,
                         synth_data.levels).eval().requires_grad_(False)
        before = {k: v.clone() for k, v in teacher.state_dict().items()}
        for s_arch in ARCHS:
            for name in names():
                cfg = make_config(name)
                student_head = "levels" if get(name).head_for(cfg) == "levels" else "scalar"
                student = Ranker(RankerConfig(arch=s_arch, head=student_head), features, synth_data.levels)
                method = get(name)(cfg, Dims(*student.dims), Dims(*teacher.dims), head)
                view = TeacherView(teacher, head=teacher.head_layer) if method.needs_teacher else None
                result = fit(student, method, synth_data, train_rows, val_rows, config, view)
                assert 0 < result.best_val_rmse < 5, (t_arch, s_arch, name)
        assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


@pytest.mark.parametrize("teacher_arch,student_arch", [("dcn", "mlp"), ("deepfm", "dcn"), ("dlrm", "deepfm"),
                                                       ("mlp", "dlrm")])
def test_kd_across_architectures_beats_scratch(synth_data, tmp_path, teacher_arch, student_arch):
    """On the planted synthetic split, a teacher of one architecture distilled into a student of
    another beats the student trained from scratch (mean over two genres and two seeds)."""
    config = PretrainConfig(model=dataclasses.replace(RankerConfig.teacher(), arch=teacher_arch, bias=True), restarts=1)
    config.train = dataclasses.replace(config.train, epochs=8, batch_size=512, lr=3e-3)
    pretrain(synth_data, tmp_path / "teacher", config)
    students = DistillConfig(genres="Action,Comedy", methods=("none", "kd"), seeds=(0, 1),
                             model=dataclasses.replace(RankerConfig.student(), arch=student_arch))
    students.train = dataclasses.replace(students.train, epochs=12, patience=3)
    results = distill(synth_data, tmp_path / "teacher", tmp_path / "students", students, progress=False)
    mean = {m: statistics.mean(r["test_rmse"] for r in results if r["method"] == m) for m in ("none", "kd")}
    assert mean["kd"] < mean["none"], mean
    recorded = json.loads(next((tmp_path / "students").rglob("config.json")).read_text())
    assert recorded["model"]["arch"] == student_arch


def test_checkpoint_reloads_into_its_architecture_only(synth_data, tmp_path):
    config = PretrainConfig(model=RankerConfig(arch="dcn", bias=True, embedding_dim=8, hidden=(16, 8)), restarts=1)
    config.train = dataclasses.replace(config.train, epochs=1, batch_size=1024)
    pretrain(synth_data, tmp_path, config)
    teacher = load_teacher(tmp_path)
    assert teacher.config.arch == "dcn" and teacher.config.bias
    recorded = json.loads((tmp_path / "config.json").read_text())
    for change in ({"arch": "mlp"}, {"bias": False}, {"embedding_dim": 12}):
        (tmp_path / "config.json").write_text(json.dumps({**recorded, "model": {**recorded["model"], **change}}))
        with pytest.raises(ReckdError, match=r"checkpoint.pt: expected the weights of the architecture"):
            load_teacher(tmp_path)


def test_ensemble_is_the_mean_of_its_members_and_staged(synth_data):
    torch.manual_seed(0)
    features = _features(synth_data)
    members = [Ranker(RankerConfig(arch=arch, bias=True), features, synth_data.levels).eval()
               for arch in ("mlp", "dcn", "deepfm")]
    with torch.no_grad():  # members that differ in their heads too
        for k, m in enumerate(members):
            m.head_layer.bias.add_(0.1 * k)
    ensemble = Ensemble(members).eval()
    kjt = synth_data.batch_rows(torch.arange(48)).sparse_features
    out = ensemble(kjt)
    mean = torch.stack([m(kjt).prediction for m in members]).mean(0)
    torch.testing.assert_close(out.prediction, mean)
    torch.testing.assert_close(ensemble.head(ensemble.upper(ensemble.lower(kjt))), out.prediction, rtol=0, atol=0)
    assert ensemble.dims == Dims(3 * 65, 3 * 33) and out.upper.shape == (48, 99)
    assert ensemble.head_spec == members[0].head_spec
    with pytest.raises(ValueError, match="share the head"):
        Ensemble([members[0], Ranker(RankerConfig(head="levels"), features, synth_data.levels)])


def test_ensemble_teacher_pretrains_reloads_and_serves_every_method(synth_data, tmp_path):
    config = PretrainConfig(model=RankerConfig(bias=True, embedding_dim=8, hidden=(16, 8)), restarts=2, combine="mean")
    config.train = dataclasses.replace(config.train, epochs=2, batch_size=1024)
    summary = pretrain(synth_data, tmp_path, config)
    teacher = load_teacher(tmp_path)
    assert isinstance(teacher, Ensemble) and len(teacher.members) == 2
    assert summary["restart"] is None and len(summary["best_epoch"]) == 2
    rows = synth_data.rows("test")
    assert rmse(predict_rows(teacher, None, synth_data, rows), synth_data.rating[rows]) == pytest.approx(
        summary["test_rmse"], abs=1e-6)
    # a teacher folder recorded as one ranker does not load as an ensemble, and the reverse
    recorded = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**recorded, "combine": "best"}))
    with pytest.raises(ReckdError, match="combine best of 2 restarts"):
        load_teacher(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(recorded))
    features, head = _features(synth_data), HeadSpec("rating", synth_data.levels)
    for name in names():
        cfg = make_config(name)
        student = Ranker(RankerConfig(head="levels" if get(name).head_for(cfg) == "levels" else "scalar"), features,
                         synth_data.levels)
        method = get(name)(cfg, Dims(*student.dims), Dims(*teacher.dims), head)
        view = TeacherView(teacher, head=teacher.head_layer) if method.needs_teacher else None
        result = fit(student, method, synth_data, synth_data.rows("train")[:128], synth_data.rows("val")[:64],
                     TrainConfig(epochs=1, batch_size=64), view)
        assert 0 < result.best_val_rmse < 5, name


def test_pretrain_reuses_the_same_teacher_and_refuses_other_options(synth_data, tmp_path):
    config = PretrainConfig(model=RankerConfig(bias=True, embedding_dim=8, hidden=(16, 8)), restarts=1)
    config.train = dataclasses.replace(config.train, epochs=1, batch_size=1024)
    first = pretrain(synth_data, tmp_path, config)
    checkpoint = (tmp_path / "checkpoint.pt").read_bytes()
    again = pretrain(synth_data, tmp_path, config)
    assert again.pop("reused") is True and again == json.loads((tmp_path / "result.json").read_text())
    assert again["test_rmse"] == first["test_rmse"] and (tmp_path / "checkpoint.pt").read_bytes() == checkpoint
    other = dataclasses.replace(config, model=dataclasses.replace(config.model, arch="dcn"))
    with pytest.raises(ReckdError, match=r"other options than requested: model.arch \(recorded 'mlp', requested 'dcn'\)"):
        pretrain(synth_data, tmp_path, other)
    assert (tmp_path / "checkpoint.pt").read_bytes() == checkpoint  # nothing lost
    retrained = pretrain(synth_data, tmp_path, other, retrain_changed=True)
    assert "reused" not in retrained and load_teacher(tmp_path).config.arch == "dcn"
