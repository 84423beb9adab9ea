"""Distil the frozen teacher into one student per genre × method × seed.

Every run writes its own folder ``OUT/<genre>/<method>/seed<k>/``: ``config.json``, ``metrics.jsonl``
(per epoch), ``checkpoint.pt`` (best validation epoch) and, last, ``result.json`` — whose presence
marks the run finished, so an interrupted ``distill`` resumes by skipping those runs.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor
from tqdm import tqdm

from reckd.data.split import SplitData
from reckd.losses import Dims, HeadSpec, Outputs, Teacher, get, make_config, split_spec
from reckd.models.ranker import Ranker, RankerConfig, count_parameters
from reckd.train.io import read_json, write_json
from reckd.train.loop import Augmentation, NonFiniteLoss, TrainConfig, fit, predict_rows, rmse
from reckd.train.teacher import cached_teacher_outputs, load_teacher, ranker_features, teacher_outputs


@dataclass
class DistillConfig:
    """What ``reckd distill`` runs. ``genres``: ``all``, ``dense``, ``sparse`` or a comma list.
    ``methods``: names from the loss registry, each optionally ``+aug`` (teacher-labelled
    augmentation with ``augment`` unrated pairs per rated pair, weight ``aug_weight``).
    ``options``: per-method config overrides, ``{"kd": {"tau": "2"}}``.
    ``min_steps``: the batch shrinks (down to ``min_batch``) so that a small genre still takes at
    least this many optimiser steps per epoch."""

    genres: str = "all"
    methods: tuple[str, ...] = ("none", "kd")
    seeds: tuple[int, ...] = (0, 1, 2)
    augment: int = 4
    aug_weight: float = 1.0
    options: dict[str, dict[str, str]] = field(default_factory=dict)
    model: RankerConfig = field(default_factory=RankerConfig.student)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=60, batch_size=1024, lr=3e-3, weight_decay=0.0, patience=5))
    min_steps: int = 16
    min_batch: int = 64


def slug(name: str) -> str:
    """A folder-safe name: ``Children's`` -> ``Children_s``."""
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", name)


def select_genres(data: SplitData, spec: str) -> list[str]:
    """Genres named by ``--genres``; ``excluded`` genres are never selected by a class word."""
    classes = {g: info["class"] for g, info in data.manifest["genres"].items()}
    if spec in ("all", "dense", "sparse"):
        return [g for g in data.genres if classes[g] != "excluded" and spec in ("all", classes[g])]
    chosen = [g.strip() for g in spec.split(",") if g.strip()]
    for genre in chosen:
        data.genre_index(genre)  # raises, naming the known genres
        if data.rows("train", genre).numel() == 0:
            raise ValueError(f"--genres: genre {genre!r} has no training ratings in {data.path}")
    return chosen


def sample_unrated(data: SplitData, genre: str, count: int, seed: int) -> tuple[Tensor, Tensor]:
    """``count`` distinct (user, item) pairs with the item in ``genre`` and no rating in any split
    (so augmentation never touches a validation or test pair)."""
    generator = torch.Generator().manual_seed(seed)
    items = data.item_genre[:, data.genre_index(genre)].nonzero().squeeze(1).cpu()
    rated = torch.unique(data.user.cpu() * data.num_items + data.item.cpu())
    count = min(count, data.num_users * items.numel() - int(torch.isin(
        rated % data.num_items, items).sum()))
    keys = torch.empty(0, dtype=torch.int64)
    while keys.numel() < count:
        n = 2 * (count - keys.numel()) + 16
        u = torch.randint(data.num_users, (n,), generator=generator)
        i = items[torch.randint(items.numel(), (n,), generator=generator)]
        new = u * data.num_items + i
        new = new[~torch.isin(new, rated)]
        keys = _first_unique(torch.cat([keys, new]))
    keys = keys[:count]
    device = data.rating.device
    return (keys // data.num_items).to(device), (keys % data.num_items).to(device)


def _first_unique(keys: Tensor) -> Tensor:
    """``keys`` without repeats, keeping the first occurrence and the order (deterministic)."""
    unique, inverse = torch.unique(keys, return_inverse=True)
    first = torch.full((unique.numel(),), keys.numel(), dtype=torch.int64).scatter_reduce(
        0, inverse, torch.arange(keys.numel()), reduce="amin")
    return keys[torch.sort(first).values]


def student_batch_size(config: DistillConfig, rows: int) -> int:
    return max(config.min_batch, min(config.train.batch_size, rows // config.min_steps))


def distill(data: SplitData, teacher_dir: Path, out: Path, config: DistillConfig,
            progress: bool = True) -> list[dict]:
    """Run every genre × method × seed not finished yet; return all runs' results (finished before
    or now). A run whose loss turns non-finite is reported on stderr and skipped."""
    out = Path(out)
    device = data.rating.device
    specs = [split_spec(m) for m in config.methods]  # validates names before any work
    method_configs = {name: make_config(name, config.options.get(name, {})) for name, _ in specs}
    for name in config.options:
        if name not in method_configs:
            raise ValueError(f"--set: options given for {name!r}, which is not in --methods")
    genres = select_genres(data, config.genres)
    teacher = load_teacher(teacher_dir, device)
    cache = cached_teacher_outputs(teacher, data, teacher_dir)
    write_json(out / "distill.json", {"split": str(Path(data.path).resolve()),
                                      "teacher": str(Path(teacher_dir).resolve()),
                                      "config": dataclasses.asdict(config)})
    head = HeadSpec("rating", data.levels)
    augmented: dict[str, Augmentation] = {}
    results, failed = [], []
    runs = [(g, m, s) for g in genres for m in config.methods for s in config.seeds]
    for genre, spec, seed in tqdm(runs, desc="distill", unit="run", disable=not progress, file=sys.stderr):
        run_dir = out / slug(genre) / slug(spec) / f"seed{seed}"
        if (run_dir / "result.json").is_file():
            results.append(read_json(run_dir / "result.json"))
            continue
        name, aug = split_spec(spec)
        augmentation = None
        if aug:
            if genre not in augmented:
                train_count = data.rows("train", genre).numel()
                users, items = sample_unrated(data, genre, config.augment * train_count,
                                              seed=data.genre_index(genre))
                rating = teacher_outputs(teacher, data, users, items).prediction
                augmented[genre] = Augmentation(users, items, rating, config.augment, config.aug_weight)
            augmentation = augmented[genre]
        try:
            results.append(run_student(data, genre, name, spec, seed, method_configs[name], teacher, cache,
                                       head, augmentation, config, run_dir))
        except NonFiniteLoss as error:
            failed.append(f"{genre}/{spec}/seed{seed}: {error}")
            print(f"reckd distill: run {run_dir} stopped: {error}", file=sys.stderr)
    if failed:
        raise NonFiniteLoss(f"{len(failed)} run(s) stopped on a non-finite loss:\n" + "\n".join(failed))
    return results


def run_student(data: SplitData, genre: str, name: str, spec: str, seed: int, method_config,
                teacher: Ranker, cache: Outputs, head: HeadSpec, augmentation: Augmentation | None,
                config: DistillConfig, run_dir: Path) -> dict:
    """One student: train on the genre's training ratings, keep the best validation epoch, and
    record its test RMSE."""
    if run_dir.exists():  # an interrupted run starts over
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    method_class = get(name)
    model_config = dataclasses.replace(config.model, head="levels" if method_class.head_for(method_config)
                                       == "levels" else config.model.head)
    train_rows, val_rows, test_rows = (data.rows(s, genre) for s in ("train", "val", "test"))
    train_config = dataclasses.replace(config.train, seed=seed,
                                       batch_size=student_batch_size(config, train_rows.numel()))
    torch.manual_seed(seed)
    model = Ranker(model_config, ranker_features(data), data.levels, device=data.rating.device)
    method = method_class(method_config, Dims(*model.dims), Dims(*teacher.dims), head).to(data.rating.device)
    teacher_fn = None
    if method_class.needs_teacher:
        method.prepare(cache.index(train_rows), teacher.head)
        if method_class.needs_live_teacher:
            def teacher_fn(rows, batch):
                with torch.no_grad():
                    outputs = teacher(batch.sparse_features)
                return Teacher(outputs, upper=teacher.upper, head=teacher.head)
        else:
            def teacher_fn(rows, batch):
                return Teacher(cache.index(rows), upper=teacher.upper, head=teacher.head)
    write_json(run_dir / "config.json", {
        "genre": genre, "method": spec, "seed": seed, "method_config": dataclasses.asdict(method_config),
        "model": dataclasses.asdict(model_config), "train": dataclasses.asdict(train_config),
        "augment": augmentation.ratio if augmentation else 0,
        "aug_weight": augmentation.weight if augmentation else 0.0})
    result = fit(model, method, data, train_rows, val_rows, train_config, teacher_fn, augmentation, run_dir)
    test = rmse(predict_rows(model, method, data, test_rows), data.rating[test_rows])
    summary = {"genre": genre, "method": spec, "seed": seed, "best_epoch": result.best_epoch,
               "val_rmse": result.best_val_rmse, "test_rmse": test, "test_ratings": int(test_rows.numel()),
               "train_ratings": int(train_rows.numel()), "epochs_run": result.epochs_run,
               "seconds": result.seconds, "seconds_per_epoch": result.seconds / result.epochs_run,
               "parameters": count_parameters(model),
               "extra_parameters": sum(p.numel() for p in method.parameters())}
    write_json(run_dir / "result.json", summary)
    return summary
