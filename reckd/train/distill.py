"""Distil the frozen teacher into one student per genre × method × seed.

Every run writes its own folder ``OUT/<genre>/<method>/seed<k>/``: ``config.json``, ``metrics.jsonl``
(per epoch), ``checkpoint.pt`` (best validation epoch) and, last, ``result.json`` — whose presence
marks the run finished, so an interrupted ``distill`` resumes by skipping those runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor
from tqdm import tqdm

from reckd.data.split import SplitData, load_split
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
    (so augmentation never touches a validation or test pair). Users and items are drawn in
    proportion to their training ratings (plus one), so the pairs follow the popularity of the
    rated ones rather than the long tail that the teacher knows least."""
    generator = torch.Generator().manual_seed(seed)
    train = data.rows("train").cpu()
    in_genre = data.item_genre[:, data.genre_index(genre)].cpu()
    user_weight = torch.bincount(data.user[train].cpu(), minlength=data.num_users).double() + 1
    item_weight = (torch.bincount(data.item[train].cpu(), minlength=data.num_items).double() + 1) * in_genre
    rated = torch.unique(data.user.cpu() * data.num_items + data.item.cpu())
    free = data.num_users * int(in_genre.sum()) - int(in_genre[rated % data.num_items].sum())
    count = min(count, free)
    keys = torch.empty(0, dtype=torch.int64)
    while keys.numel() < count:
        n = 2 * (count - keys.numel()) + 16
        users = torch.multinomial(user_weight, n, replacement=True, generator=generator)
        items = torch.multinomial(item_weight, n, replacement=True, generator=generator)
        new = users * data.num_items + items
        keys = _first_unique(torch.cat([keys, new[~torch.isin(new, rated)]]))
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


class _Runner:
    """Everything a run needs, built once per process: the split, the frozen teacher, its output
    cache, the method configs, and the augmentation pairs of each genre (made on first use)."""

    def __init__(self, data: SplitData, teacher_dir: Path, out: Path, config: DistillConfig) -> None:
        self.data, self.out, self.config = data, Path(out), config
        self.method_configs = {name: make_config(name, config.options.get(name, {}))
                               for name, _ in map(split_spec, config.methods)}
        self.teacher = load_teacher(teacher_dir, data.rating.device)
        self.cache = cached_teacher_outputs(self.teacher, data, teacher_dir)
        self.augmented: dict[str, Augmentation] = {}

    def augmentation(self, genre: str) -> Augmentation:
        if genre not in self.augmented:
            count = self.config.augment * self.data.rows("train", genre).numel()
            users, items = sample_unrated(self.data, genre, count, seed=self.data.genre_index(genre))
            rating = teacher_outputs(self.teacher, self.data, users, items).prediction
            self.augmented[genre] = Augmentation(users, items, rating, self.config.augment, self.config.aug_weight)
        return self.augmented[genre]

    def __call__(self, run: tuple[str, str, int]) -> dict | str:
        """The run's result, or the message of a non-finite loss (the run is then left unfinished)."""
        genre, spec, seed = run
        name, aug = split_spec(spec)
        run_dir = self.out / slug(genre) / slug(spec) / f"seed{seed}"
        try:
            return run_student(self.data, genre, name, spec, seed, self.method_configs[name], self.teacher,
                               self.cache, HeadSpec("rating", self.data.levels),
                               self.augmentation(genre) if aug else None, self.config, run_dir)
        except NonFiniteLoss as error:
            return f"{run_dir}: {error}"


_WORKER: _Runner | None = None  # one per worker process of the pool (set by its initializer)


def _start_worker(split_dir: str, teacher_dir: str, out: str, config: DistillConfig, threads: int) -> None:
    global _WORKER
    torch.set_num_threads(threads)
    _WORKER = _Runner(load_split(split_dir), Path(teacher_dir), Path(out), config)


def _work(run: tuple[str, str, int]) -> dict | str:
    return _WORKER(run)


def distill(data: SplitData, teacher_dir: Path, out: Path, config: DistillConfig,
            progress: bool = True, workers: int = 1) -> list[dict]:
    """Run every genre × method × seed not finished yet; return all runs' results (finished before
    or now). ``workers`` > 1 trains that many students at once in CPU processes, each with an equal
    share of the cores (faster than threads for models this small). A run whose loss turns
    non-finite is reported on stderr, left unfinished, and named in the error raised at the end."""
    out = Path(out)
    for name in config.options:
        if name not in {split_spec(m)[0] for m in config.methods}:
            raise ValueError(f"--set: options given for {name!r}, which is not in --methods")
    if workers > 1 and data.rating.device.type != "cpu":
        raise ValueError(f"--workers {workers}: parallel workers are for the CPU; on {data.rating.device} use 1")
    genres = select_genres(data, config.genres)
    made_with = {"split": str(Path(data.path).resolve()), "teacher": str(Path(teacher_dir).resolve()),
                 "teacher_sha256": hashlib.sha256((Path(teacher_dir) / "checkpoint.pt").read_bytes()).hexdigest()}
    if (out / "distill.json").is_file():  # resuming: the finished runs must come from this teacher and split
        before = read_json(out / "distill.json")
        for key in ("split", "teacher_sha256"):
            if key in before and before[key] != made_with[key]:
                raise ValueError(f"{out / 'distill.json'}: {key} is {before[key]!r}, but this run has {made_with[key]!r}; "
                                 f"its finished runs belong to another teacher or split — use a new --out")
    runner = _Runner(data, teacher_dir, out, config)  # validates the methods, computes the teacher cache
    write_json(out / "distill.json", {**made_with, "config": dataclasses.asdict(config)})
    runs = [(g, m, s) for g in genres for m in config.methods for s in config.seeds]
    done = lambda run: out / slug(run[0]) / slug(run[1]) / f"seed{run[2]}" / "result.json"
    results = [read_json(done(run)) for run in runs if done(run).is_file()]
    # the largest genres first, so that parallel workers finish together
    size = {genre: data.rows("train", genre).numel() for genre in genres}
    pending = sorted((run for run in runs if not done(run).is_file()), key=lambda run: -size[run[0]])
    bar = tqdm(total=len(runs), initial=len(results), desc="distill", unit="run", disable=not progress,
               file=sys.stderr)
    if workers > 1 and len(pending) > 1:
        threads = max(1, torch.get_num_threads() // workers)
        context = torch.multiprocessing.get_context("spawn")
        with context.Pool(workers, _start_worker, (str(data.path), str(teacher_dir), str(out), config, threads)) as pool:
            outcomes = list(_progress(pool.imap_unordered(_work, pending), bar))
    else:
        outcomes = list(_progress(map(runner, pending), bar))
    bar.close()
    failed = [o for o in outcomes if isinstance(o, str)]
    for message in failed:
        print(f"reckd distill: run {message}", file=sys.stderr)
    if failed:
        raise NonFiniteLoss(f"{len(failed)} run(s) stopped on a non-finite loss:\n" + "\n".join(failed))
    return results + [o for o in outcomes if isinstance(o, dict)]


def _progress(outcomes, bar):
    for outcome in outcomes:
        bar.update()
        yield outcome


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
        method.prepare(teacher_outputs(teacher, data, data.user[train_rows], data.item[train_rows], lower=True)
                       if method_class.needs_live_teacher else cache.index(train_rows), teacher.head_layer)
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
