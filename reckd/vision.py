"""The image-classification experiment: a teacher pre-trained on all ten digits of scikit-learn's
``load_digits`` (the pre-training distribution, shipped with the package, nothing downloads), small
students on downstream tasks that differ from it (a subset of the classes, few labelled images), one
run per method and seed, accuracy on a held-out test split.

This module only drives the experiment: the data are :mod:`reckd.data.images`, the models
:mod:`reckd.models.image`, and every model trains through the one loop, :func:`reckd.train.loop.train`.

Example::

    report = run(VisionConfig(tasks=("0-4:10",)), methods=["none", "kd", "talking"], seeds=[0, 1])
    print(format_report(report, "markdown"))
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Sequence

import numpy as np
import torch

from data_prep.table import render_table
from reckd.data.images import Task, load_digits_tensors, stratified_take
from reckd.data.source import TensorSource
from reckd.errors import OptionError
from reckd.losses import get, make_config, split_spec
from reckd.models.image import ImageClassifier, ImageConfig, TaskView
from reckd.train.device import resolve_device
from reckd.train.loop import TeacherView, TrainConfig, Unlabelled, evaluate, train


@dataclass(frozen=True)
class VisionConfig:
    """``tasks``: downstream task specs (:meth:`Task.parse`); defaults: digits 0–4 with 10 labels per
    class, and all ten digits with 10 labels per class. ``test_fraction`` of the images is held out
    (seen by neither model); the teacher pre-trains on the rest (``val_fraction`` of it for early
    stopping); each student gets ``labels_per_class`` images of its classes from that rest, of which
    ``val_fraction`` (at least one per class) is its validation split; ``+aug`` methods see the
    remaining images of its classes unlabelled, ``aug_batch`` of them a step, with the weight
    ``aug_weight``. ``teacher_fit``/``student_fit``: the loop's settings (the seed is each run's).
    ``ties``: a tie of validation accuracy keeps the ``later`` epoch: a student's validation split
    holds 15–30 images, so accuracy ties often, and keeping the ``earlier`` epoch stops students and
    teacher after the first plateau (on the benchmark, 2 seeds: up to 10 points lower test accuracy)."""

    tasks: tuple[str, ...] = ("0-4:10", "0-9:10")
    test_fraction: float = 0.3
    val_fraction: float = 0.3
    teacher: ImageConfig = field(default_factory=ImageConfig.teacher)
    student: ImageConfig = field(default_factory=ImageConfig.student)
    teacher_fit: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=100, patience=10, batch_size=64,
                                                                         lr=1e-3))
    student_fit: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=300, patience=30, batch_size=16,
                                                                         lr=3e-3))
    aug_weight: float = 1.0
    aug_batch: int = 128
    ties: str = "later"


@dataclass
class Row:
    """One student (or the teacher, method ``teacher``) on one task and seed."""

    task: str
    method: str
    seed: int
    accuracy: float
    val_accuracy: float
    epochs: int
    seconds: float


@dataclass
class Report:
    rows: list[Row]
    configs: dict[str, dict]  # the effective method configs, by method name
    setup: dict  # the VisionConfig and device


def run(config: VisionConfig, methods: Sequence[str], seeds: Sequence[int], device: str = "auto",
        options: dict[str, dict] | None = None, progress: Callable[[str], None] | None = None) -> Report:
    """Every method × task × seed. Per seed: one test split and one teacher pre-trained on all ten
    digits; per task and method: a student with the same initialisation. ``options``: per-method
    config overrides (``{"kd": {"tau": 2}}``). The teacher's weights are checked bit-identical after
    all students trained with it."""
    dev = resolve_device(device)
    tasks = [Task.parse(spec) for spec in config.tasks]
    specs = [split_spec(spec) for spec in methods]
    configs = {name: make_config(name, (options or {}).get(name)) for name, _ in specs}
    images, digits = load_digits_tensors()
    images, digits = images.to(dev), digits.to(dev)
    all_digits = TensorSource(images, digits)
    y_all = digits.cpu().numpy()
    on_device = lambda idx: torch.as_tensor(idx, device=dev)  # noqa: E731
    rows: list[Row] = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        test, pool = stratified_take(y_all, np.arange(len(y_all)), config.test_fraction, rng)
        teacher_val, teacher_train = stratified_take(y_all, pool, config.val_fraction, rng)
        torch.manual_seed(seed)
        teacher = ImageClassifier(config.teacher).to(dev)
        scratch = get("none")(make_config("none"), teacher.dims, teacher.dims, teacher.head_spec).to(dev)
        result = train(teacher, scratch, all_digits, on_device(teacher_train), on_device(teacher_val),
                       replace(config.teacher_fit, seed=seed), ties=config.ties)
        teacher.requires_grad_(False).eval()
        frozen = {k: v.clone() for k, v in teacher.state_dict().items()}
        if progress:
            progress(f"seed {seed}: teacher val accuracy {result.best_val:.4f} ({result.seconds:.1f}s)")
        for task in tasks:
            labelled, unlabelled = stratified_take(y_all, task.rows(y_all, pool), task.labels_per_class, rng)
            val_rows, train_rows = stratified_take(y_all, labelled, config.val_fraction, rng)
            source = TensorSource(images, task.relabel(digits))
            split = {"train": on_device(train_rows), "val": on_device(val_rows), "test": on_device(task.rows(y_all, test))}
            view = TaskView(teacher, task.classes).to(dev)
            teacher_view = TeacherView(view)
            rows.append(Row(task.name, "teacher", seed, evaluate(view, None, source, split["test"]),
                            evaluate(view, None, source, split["val"]), 0, 0.0))
            for (name, aug), spec in zip(specs, methods):
                torch.manual_seed(seed)
                student = ImageClassifier(replace(config.student, num_classes=len(task.classes))).to(dev)
                method = get(name)(configs[name], student.dims, view.dims, student.head_spec).to(dev)
                augmentation = (Unlabelled(on_device(unlabelled), teacher_view, config.aug_batch, config.aug_weight)
                                if aug else None)
                fit = train(student, method, source, split["train"], split["val"],
                            replace(config.student_fit, seed=seed), teacher_view if method.needs_teacher else None,
                            augmentation, ties=config.ties)
                rows.append(Row(task.name, spec, seed, evaluate(student, method, source, split["test"]), fit.best_val,
                                fit.epochs_run, fit.seconds))
                if progress:
                    progress(f"seed {seed} task {task.name} {spec}: test accuracy {rows[-1].accuracy:.4f}")
        changed = [k for k, v in teacher.state_dict().items() if not torch.equal(v, frozen[k])]
        if changed:
            raise RuntimeError(f"the frozen teacher changed during distillation: {changed}")
    setup = {"vision": asdict(config), "device": str(dev), "seeds": list(seeds)}
    return Report(rows, {name: asdict(cfg) for name, cfg in configs.items()}, setup)


# ---------------------------------------------------------------- summary and formats
def summarize(rows: Sequence[Row]) -> list[dict]:
    """Per task and method: test accuracy mean ± std over seeds (in %), relative improvement of the
    mean over ``none`` (in %), mean training seconds."""
    out = []
    for task in dict.fromkeys(r.task for r in rows):
        by_method: dict[str, list[Row]] = {}
        for r in rows:
            if r.task == task:
                by_method.setdefault(r.method, []).append(r)
        base = statistics.mean(r.accuracy for r in by_method["none"]) if "none" in by_method else math.nan
        for method, group in by_method.items():
            acc = [100 * r.accuracy for r in group]
            mean = statistics.mean(acc)
            out.append({"task": task, "method": method, "seeds": len(group), "accuracy": mean,
                        "std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
                        "rel_improvement": 100 * (mean / 100 - base) / base if base == base else math.nan,
                        "seconds": statistics.mean(r.seconds for r in group)})
    return out


def format_report(report: Report, fmt: str = "table") -> str:
    """``table`` (aligned text), ``markdown``, ``csv`` (one line per task × method) or ``json``
    (summary, every run, and the effective configs)."""
    summary = summarize(report.rows)
    if fmt == "json":
        return json.dumps({"summary": summary, "runs": [asdict(r) for r in report.rows],
                           "configs": report.configs, "setup": report.setup}, indent=2, default=str)
    if fmt == "csv":
        return render_table(list(summary[0]), [[str(v) for v in s.values()] for s in summary], "csv")
    header = ["task", "method", "accuracy % (mean ± std)", "vs none", "train s"]
    lines = [[s["task"], s["method"], f"{s['accuracy']:.2f} ± {s['std']:.2f}",
              "—" if s["method"] in ("none", "teacher") else f"{s['rel_improvement']:+.2f}%",
              "—" if s["method"] == "teacher" else f"{s['seconds']:.1f}"] for s in summary]
    if fmt not in ("table", "markdown"):
        raise OptionError(f"--format: expected table, csv, json or markdown, found {fmt!r}")
    return render_table(header, lines, fmt)
