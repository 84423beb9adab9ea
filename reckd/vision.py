"""Image classification with the same loss objects: a teacher pre-trained on all ten digits of
scikit-learn's ``load_digits`` (the pre-training distribution, shipped with the package, nothing
downloads), small students on downstream tasks that differ from it (a subset of the classes, few
labelled images), one run per method and seed, accuracy on a held-out test split.

Example::

    report = run(VisionConfig(tasks=("0-4:10",)), methods=["none", "kd", "talking"], seeds=[0, 1])
    print(format_report(report, "markdown"))

``fit_student`` is the one mini-batch loop (Adam, early stopping on a validation split carved from
the student's own labelled data); it works for any staged model returning ``Outputs`` and any
head kind, which is how the tests also train small rating models.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from reckd.losses import HeadSpec, Method, Outputs, Teacher, get, make_config, split_spec
from reckd.losses.common import task_metric, teacher_label_loss
from reckd.models.image import ImageClassifier, ImageConfig, TaskView
from reckd.train.device import resolve_device


# ---------------------------------------------------------------- the training loop
@dataclass(frozen=True)
class FitConfig:
    """``epochs``: at most this many passes; ``patience``: stop after this many epochs without a
    better validation metric (the best epoch's weights are restored; on ties the later epoch wins,
    as tiny validation splits tie often). ``w_aug``: weight of the
    teacher-labelled augmentation term (``NAME+aug`` methods), ``aug_batch`` unlabelled inputs a step."""

    epochs: int = 300
    patience: int = 30
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 0.0
    w_aug: float = 1.0
    aug_batch: int = 128


@dataclass
class FitResult:
    """``val_metric``: validation accuracy (classes) or RMSE (ratings) of the restored epoch."""

    val_metric: float
    best_epoch: int
    epochs: int
    seconds: float


@torch.no_grad()
def predict(student: nn.Module, method: Method, x: Tensor, batch: int = 4096) -> Tensor:
    """Teacher-free inference: ``method.predict`` on the student's outputs, in eval mode."""
    student.eval()
    method.eval()
    return torch.cat([method.predict(student(x[i : i + batch])) for i in range(0, len(x), batch)])


def evaluate(student: nn.Module, method: Method, x: Tensor, y: Tensor) -> float:
    """Accuracy (class heads) or clipped RMSE (rating heads) of the teacher-free prediction."""
    return task_metric(method.head_spec, predict(student, method, x), y)


@torch.no_grad()
def teacher_outputs(teacher: nn.Module, x: Tensor, batch: int = 4096) -> Outputs:
    """The frozen teacher's outputs on ``x`` (the teacher-output cache)."""
    parts = [teacher(x[i : i + batch]) for i in range(0, len(x), batch)]
    cat = lambda name: None if getattr(parts[0], name) is None else torch.cat([getattr(p, name) for p in parts])  # noqa: E731
    return Outputs(cat("prediction"), cat("lower"), cat("upper"), cat("logits"))


def fit_student(student: nn.Module, method: Method, teacher: nn.Module | None, train: tuple[Tensor, Tensor],
                val: tuple[Tensor, Tensor], config: FitConfig, seed: int, aug: Tensor | None = None) -> FitResult:
    """Train ``student`` and ``method``'s extras on ``train`` with Adam, minimising the sum of the
    method's terms; keep the epoch with the best validation metric. ``teacher``: a frozen staged
    model (``lower``/``upper``/``head``) or None for ``none``. ``aug``: unlabelled inputs for
    teacher-labelled augmentation. Shuffling uses a generator seeded with ``seed``."""
    start = time.perf_counter()
    (x, y), (x_val, y_val) = train, val
    head = method.head_spec
    lower_is_better = head.kind == "rating"
    cache = None
    if teacher is not None:
        cache = teacher_outputs(teacher, x)
        method.prepare(cache, teacher.head)
    aug_cache = None if aug is None else teacher_outputs(teacher, aug)
    params = list(student.parameters()) + [p for p in method.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    best, best_epoch, best_state = None, 0, None
    epoch = 0
    for epoch in range(1, config.epochs + 1):
        student.train()
        method.train()
        order = torch.randperm(len(x), generator=generator).to(x.device)
        for i in range(0, len(x), config.batch_size):
            rows = order[i : i + config.batch_size]
            t = None
            if teacher is not None:
                if method.needs_live_teacher:
                    with torch.no_grad():
                        live = teacher(x[rows])
                    t = Teacher(live, upper=teacher.upper, head=teacher.head)
                else:
                    t = Teacher(cache.index(rows), upper=teacher.upper, head=teacher.head)
            terms = method(student(x[rows]), t, y[rows])
            if aug_cache is not None:
                pick = torch.randint(len(aug), (config.aug_batch,), generator=generator).to(x.device)
                terms["aug"] = config.w_aug * teacher_label_loss(head, student(aug[pick]), aug_cache.index(pick))
            optimizer.zero_grad(set_to_none=True)
            sum(terms.values()).backward()
            optimizer.step()
        score = evaluate(student, method, x_val, y_val)
        if best is None or (score <= best if lower_is_better else score >= best):  # ties: the later epoch
            best, best_epoch = score, epoch
            best_state = (copy.deepcopy(student.state_dict()), copy.deepcopy(method.state_dict()))
        elif epoch - best_epoch >= config.patience:
            break
    student.load_state_dict(best_state[0])
    method.load_state_dict(best_state[1])
    return FitResult(best, best_epoch, epoch, time.perf_counter() - start)


# ---------------------------------------------------------------- the digits experiment
@dataclass(frozen=True)
class Task:
    """A downstream task: the digits ``classes`` (relabelled 0..n−1), ``labels_per_class``
    labelled images of each for the student (training + validation)."""

    classes: tuple[int, ...]
    labels_per_class: int

    @classmethod
    def parse(cls, spec: str) -> "Task":
        """``"0-4:10"`` (classes 0..4, 10 labels each) or ``"1,3,5,7:20"``."""
        try:
            classes_text, n_text = spec.split(":")
            if "-" in classes_text:
                lo, hi = (int(v) for v in classes_text.split("-"))
                classes = tuple(range(lo, hi + 1))
            else:
                classes = tuple(int(v) for v in classes_text.split(","))
            task = cls(classes, int(n_text))
        except ValueError:
            raise ValueError(f"--task {spec!r}: expected CLASSES:LABELS_PER_CLASS, e.g. 0-4:10 or 1,3,5:20") from None
        if len(set(classes)) < 2 or not all(0 <= c <= 9 for c in classes) or task.labels_per_class < 2:
            raise ValueError(f"--task {spec!r}: expected ≥ 2 distinct digits in 0..9 and ≥ 2 labels per class")
        return task

    @property
    def name(self) -> str:
        c = self.classes
        text = f"{c[0]}-{c[-1]}" if c == tuple(range(c[0], c[-1] + 1)) else ",".join(map(str, c))
        return f"{text}:{self.labels_per_class}"


@dataclass(frozen=True)
class VisionConfig:
    """``tasks``: downstream task specs (:meth:`Task.parse`); defaults: digits 0–4 with 10 labels per
    class, and all ten digits with 10 labels per class. ``test_fraction`` of the images is held out
    (seen by neither model); the teacher pre-trains on the rest (``val_fraction`` of it for early
    stopping); each student gets ``labels_per_class`` images of its classes from that rest, of which
    ``val_fraction`` (at least one per class) is its validation split; ``+aug`` methods see the
    remaining images of its classes unlabelled."""

    tasks: tuple[str, ...] = ("0-4:10", "0-9:10")
    test_fraction: float = 0.3
    val_fraction: float = 0.3
    teacher: ImageConfig = field(default_factory=ImageConfig.teacher)
    student: ImageConfig = field(default_factory=ImageConfig.student)
    teacher_fit: FitConfig = FitConfig(epochs=100, patience=10, batch_size=64, lr=1e-3)
    student_fit: FitConfig = FitConfig()


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


def load_digits_tensors() -> tuple[Tensor, Tensor]:
    """scikit-learn's 1,797 8×8 digit images scaled to [0, 1], ``[N, 1, 8, 8]``, and their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    return images, torch.tensor(digits.target, dtype=torch.long)


def stratified_take(labels: np.ndarray, rows: np.ndarray, fraction_or_count: float, rng: np.random.Generator,
                    min_count: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Split ``rows`` per class: a fraction (float < 1) or a count (≥ 1) of each class, at least
    ``min_count``; returns (taken, rest)."""
    taken = []
    for c in np.unique(labels[rows]):
        members = rng.permutation(rows[labels[rows] == c])
        n = int(fraction_or_count) if fraction_or_count >= 1 else round(fraction_or_count * len(members))
        taken.append(members[: min(len(members) - 1, max(min_count, n))])
    taken = np.sort(np.concatenate(taken))
    return taken, np.setdiff1d(rows, taken)


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
    images, labels = load_digits_tensors()
    images, labels = images.to(dev), labels.to(dev)
    y_all = labels.cpu().numpy()
    rows: list[Row] = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        test, pool = stratified_take(y_all, np.arange(len(y_all)), config.test_fraction, rng)
        teacher_val, teacher_train = stratified_take(y_all, pool, config.val_fraction, rng)
        torch.manual_seed(seed)
        teacher = ImageClassifier(config.teacher).to(dev)
        pick = lambda idx: (images[torch.as_tensor(idx, device=dev)], labels[torch.as_tensor(idx, device=dev)])  # noqa: E731
        result = fit_student(teacher, get("none")(make_config("none"), teacher.dims, teacher.dims,
                                                  HeadSpec("class", num_classes=10)).to(dev),
                             None, pick(teacher_train), pick(teacher_val), config.teacher_fit, seed)
        teacher.requires_grad_(False).eval()
        frozen = {k: v.clone() for k, v in teacher.state_dict().items()}
        if progress:
            progress(f"seed {seed}: teacher val accuracy {result.val_metric:.4f} ({result.seconds:.1f}s)")
        for task in tasks:
            remap = torch.full((10,), -1, dtype=torch.long, device=dev)
            remap[list(task.classes)] = torch.arange(len(task.classes), device=dev)
            in_task = lambda idx: idx[np.isin(y_all[idx], task.classes)]  # noqa: E731
            labelled, unlabelled = stratified_take(y_all, in_task(pool), task.labels_per_class, rng)
            val, train = stratified_take(y_all, labelled, config.val_fraction, rng)
            data = {k: (x, remap[y]) for k, (x, y) in
                    {"train": pick(train), "val": pick(val), "test": pick(in_task(test))}.items()}
            view = TaskView(teacher, task.classes).to(dev)
            head = HeadSpec("class", num_classes=len(task.classes))
            teacher_method = get("none")(make_config("none"), teacher.dims, teacher.dims, head).to(dev)
            rows.append(Row(task.name, "teacher", seed, evaluate(view, teacher_method, *data["test"]),
                            evaluate(view, teacher_method, *data["val"]), 0, 0.0))
            for (name, aug), spec in zip(specs, methods):
                torch.manual_seed(seed)
                student = ImageClassifier(replace(config.student, num_classes=len(task.classes))).to(dev)
                method = get(name)(configs[name], student.dims, teacher.dims, head).to(dev)
                uses_teacher = method.needs_teacher or aug
                fit = fit_student(student, method, view if uses_teacher else None, data["train"], data["val"],
                                  config.student_fit, seed, images[torch.as_tensor(unlabelled, device=dev)] if aug else None)
                rows.append(Row(task.name, spec, seed, evaluate(student, method, *data["test"]), fit.val_metric,
                                fit.epochs, fit.seconds))
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
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(summary[0]))
        writer.writeheader()
        writer.writerows(summary)
        return buffer.getvalue()
    header = ["task", "method", "accuracy % (mean ± std)", "vs none", "train s"]
    lines = [[s["task"], s["method"], f"{s['accuracy']:.2f} ± {s['std']:.2f}",
              "—" if s["method"] in ("none", "teacher") else f"{s['rel_improvement']:+.2f}%",
              "—" if s["method"] == "teacher" else f"{s['seconds']:.1f}"] for s in summary]
    if fmt == "markdown":
        return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                         + ["| " + " | ".join(line) + " |" for line in lines])
    if fmt != "table":
        raise ValueError(f"--format: expected table, csv, json or markdown, found {fmt!r}")
    widths = [max(len(str(v)) for v in column) for column in zip(header, *lines)]
    return "\n".join("  ".join(str(v).ljust(w) for v, w in zip(line, widths)) for line in [header, *lines])
