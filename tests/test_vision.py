"""The image-classification task: staged models, task specs and splits, the frozen teacher, teacher-
free inference, the summary arithmetic, the formats and the ``reckd vision`` subcommand."""

from __future__ import annotations

import argparse
import csv
import io
import json

import numpy as np
import pytest
import torch

from reckd.losses import HeadSpec, get, make_config
from reckd.models.image import ImageClassifier, ImageConfig, TaskView
from reckd.vision import (FitConfig, Report, Row, Task, VisionConfig, evaluate, fit_student, format_report,
                          load_digits_tensors, run, stratified_take, summarize)

QUICK = VisionConfig(tasks=("0-2:8",), teacher_fit=FitConfig(epochs=8, patience=3, batch_size=64, lr=3e-3),
                     student_fit=FitConfig(epochs=15, patience=5))


pytestmark = pytest.mark.usefixtures("one_thread")  # the fixture in conftest.py


def test_staged_models_expose_taps_and_a_task_view():
    torch.manual_seed(0)
    teacher = ImageClassifier(ImageConfig.teacher()).eval()
    student = ImageClassifier(ImageConfig.student(num_classes=3))
    x = torch.rand(5, 1, 8, 8)
    out = teacher(x)
    assert out.lower.shape == (5, 128) and out.upper.shape == (5, 128) and out.logits.shape == (5, 10)
    assert torch.equal(out.prediction, out.logits.argmax(dim=1))
    assert torch.equal(teacher.head(teacher.upper(teacher.lower(x))), out.logits)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(teacher) > 30 * n(student) and student(x).logits.shape == (5, 3)
    view = TaskView(teacher, (1, 4, 7))
    assert torch.equal(view(x).logits, out.logits[:, [1, 4, 7]])
    assert sum(1 for _ in view.parameters()) == sum(1 for _ in teacher.parameters())  # shared, not copied


def test_task_specs_and_stratified_splits():
    assert Task.parse("0-4:10") == Task((0, 1, 2, 3, 4), 10) and Task.parse("0-4:10").name == "0-4:10"
    assert Task.parse("1,3,5:20").classes == (1, 3, 5) and Task.parse("1,3,5:20").name == "1,3,5:20"
    for bad in ("0-4", "a-b:3", "3-3:5", "0-4:1", "0-12:5"):
        with pytest.raises(ValueError, match="--task"):
            Task.parse(bad)
    labels = np.repeat(np.arange(3), 10)
    rng = np.random.default_rng(0)
    taken, rest = stratified_take(labels, np.arange(30), 4, rng)
    assert np.bincount(labels[taken]).tolist() == [4, 4, 4] and len(np.intersect1d(taken, rest)) == 0
    taken, rest = stratified_take(labels, np.arange(30), 0.3, rng)
    assert np.bincount(labels[taken]).tolist() == [3, 3, 3] and len(rest) == 21
    images, digits = load_digits_tensors()
    assert images.shape == (1797, 1, 8, 8) and 0 <= images.min() and images.max() <= 1 and digits.max() == 9


def test_frozen_teacher_and_teacher_free_inference_after_live_distillation():
    torch.manual_seed(0)
    images, labels = load_digits_tensors()
    teacher = ImageClassifier(ImageConfig.teacher()).requires_grad_(False).eval()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    view = TaskView(teacher, (0, 1, 2))
    rows = torch.nonzero(labels <= 2).squeeze(1)
    x, y = images[rows], labels[rows]
    head = HeadSpec("class", num_classes=3)
    for name in ("talking", "moe", "hybrid"):
        student = ImageClassifier(ImageConfig.student(num_classes=3))
        method = get(name)(make_config(name), student.dims, teacher.dims, head)
        fit = fit_student(student, method, view, (x[:60], y[:60]), (x[60:120], y[60:120]),
                          FitConfig(epochs=6, patience=10), seed=0)
        assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
        assert all(p.grad is None for p in teacher.parameters())
        # the restored best epoch predicts exactly what validation scored, without the teacher
        assert evaluate(student, method, x[60:120], y[60:120]) == fit.val_metric
        if name != "moe":
            with torch.no_grad():
                assert torch.equal(method.predict(student(x[60:120])), student(x[60:120]).prediction)


def test_summary_arithmetic():
    rows = [Row("t", "none", s, a, 0, 1, 2.0) for s, a in [(0, 0.80), (1, 0.90)]]
    rows += [Row("t", "kd", s, a, 0, 1, 4.0) for s, a in [(0, 0.90), (1, 0.92)]]
    by = {s["method"]: s for s in summarize(rows)}
    assert by["none"]["accuracy"] == pytest.approx(85.0) and by["none"]["std"] == pytest.approx(np.std([80, 90], ddof=1))
    assert by["kd"]["rel_improvement"] == pytest.approx(100 * (0.91 - 0.85) / 0.85)
    assert by["kd"]["seconds"] == 4.0


def test_run_end_to_end_formats_and_effective_configs():
    report = run(QUICK, ["none", "kd", "talking", "kd+aug"], [0, 1], device="cpu", options={"kd": {"tau": "2"}})
    assert {(r.method, r.seed) for r in report.rows} == {(m, s) for m in ("teacher", "none", "kd", "talking", "kd+aug")
                                                         for s in (0, 1)}
    teacher_acc = [r.accuracy for r in report.rows if r.method == "teacher"]
    assert min(teacher_acc) > 0.9  # three digits are easy for the pre-trained CNN
    assert all(0.3 < r.accuracy <= 1 for r in report.rows)
    data = json.loads(format_report(report, "json"))
    assert data["configs"]["kd"]["tau"] == 2.0 and data["configs"]["kd"]["w_task"] == 0.9
    assert data["setup"]["device"] == "cpu" and len(data["runs"]) == 10
    table = list(csv.DictReader(io.StringIO(format_report(report, "csv"))))
    assert [r["method"] for r in table] == ["teacher", "none", "kd", "talking", "kd+aug"]
    markdown = format_report(report, "markdown").splitlines()
    assert markdown[0].startswith("| task | method |") and len(markdown) == 2 + 5
    with pytest.raises(ValueError, match="--format"):
        format_report(report, "xml")


def test_cli_is_a_thin_layer(capsys):
    from reckd.cli import vision

    parser = argparse.ArgumentParser()
    vision.register(parser.add_subparsers())
    args = parser.parse_args(["vision", "--methods", "none,dist", "--seeds", "3", "--task", "0-1:6", "--epochs", "5",
                              "--device", "cpu", "--format", "csv", "--set", "dist.beta=1"])
    args.func(args)
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["task"], r["method"], r["seeds"]) for r in rows] == [("0-1:6", m, "1") for m in ("teacher", "none", "dist")]
    args = parser.parse_args(["vision", "--methods", "nonsense", "--device", "cpu"])
    with pytest.raises(SystemExit, match="unknown method 'nonsense'"):
        args.func(args)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_cuda():
    report = run(QUICK, ["none", "moe", "talking"], [0], device="cuda")
    assert report.setup["device"].startswith("cuda") and len(report.rows) == 4
