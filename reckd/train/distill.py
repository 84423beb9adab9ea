"""Distil the frozen teacher into one student per genre × method × seed.

Every run writes its own folder ``OUT/<genre>/<method>/seed<k>/`` (see :mod:`reckd.train.plan`):
``config.json`` (its full effective configuration), ``metrics.jsonl`` (per epoch), ``checkpoint.pt``
(best validation epoch) and, last, ``result.json``. ``OUT/distill.json`` records the split and
teacher fingerprints and every run ever requested into the folder (what ``report`` expects to find).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tqdm import tqdm

from data_prep.folder import claim
from reckd import __version__
from reckd.data.split import SplitData
from reckd.errors import ReckdError
from reckd.losses import make_config, split_spec
from reckd.models.ranker import RankerConfig
from reckd.train.io import read_json, write_json
from reckd.train.loop import NonFiniteLoss, TrainConfig
from reckd.train.plan import Plan, Run, make_plan, select_genres, unique
from reckd.train.pool import run_in_workers
from reckd.train.student import StudentRuns, student_runs, tuned_value
from reckd.train.teacher import teacher_ref

if TYPE_CHECKING:
    from reckd.train.distributed import World


@dataclass
class DistillConfig:
    """What ``reckd distill`` runs. ``genres``: ``all``, ``dense``, ``sparse`` or a comma list.
    ``methods``: names from the loss registry, each optionally ``+aug`` (teacher-labelled
    augmentation with ``augment`` unrated pairs per rated pair, weight ``aug_weight``).
    ``scale``: the batch (and the learning rate, by its square root) grow with a genre's training set
    beyond 1M ratings (:func:`reckd.train.loop.scaled`; off when ``--batch-size`` or ``--lr`` is given).
    ``options``: per-method config overrides, ``{"kd": {"tau": "2"}}``.
    ``min_steps``: the batch shrinks (down to ``min_batch``) so that a small genre still takes at
    least this many optimiser steps per epoch; a requested batch below ``min_batch`` is kept as it is.
    ``tuned``: values chosen by ``reckd tune`` per method spec and genre class,
    ``{"kd": {"dense": {"train.lr": 0.001}}}``, applied over ``model`` and ``train`` (empty: untuned; see
    :func:`reckd.train.tune.load_tuned`). ``embedding_optimizer``: as the teacher's
    (:class:`reckd.train.teacher.PretrainConfig`); ``shard_students``: under ``torchrun``, every run is
    trained by all ranks together, its student sharded like the teacher, instead of each run by one rank."""

    genres: str = "all"
    methods: tuple[str, ...] = ("none", "kd")
    seeds: tuple[int, ...] = (0, 1, 2)
    augment: int = 16  # chosen on ML-100K validation (README, Students)
    aug_weight: float = 1.0
    options: dict[str, dict[str, str]] = field(default_factory=dict)
    model: RankerConfig = field(default_factory=RankerConfig.student)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=60, batch_size=1024, lr=3e-3, weight_decay=0.0, patience=5))
    min_steps: int = 16
    min_batch: int = 64
    tuned: dict[str, dict[str, dict[str, object]]] = field(default_factory=dict)
    scale: bool = True  # a genre of over 1M training ratings gets a larger batch and lr (loop.scaled)
    embedding_optimizer: str = "adam"
    shard_students: bool = False

    def check(self) -> None:
        """Every option in range, each error naming its flag."""
        from reckd.train.distributed import check_embedding_optimizer

        check_embedding_optimizer(self.embedding_optimizer)
        unique(tuple(self.methods), "--methods")
        unique(tuple(self.seeds), "--seeds")
        names = {split_spec(m)[0] for m in self.methods}  # raises on an unknown method
        for name in self.options:
            if name not in names:
                raise ReckdError(f"--set: options given for {name!r}, which is not in --methods")
        for name in names:
            try:
                make_config(name, self.options.get(name, {}))
            except (KeyError, ValueError, TypeError) as error:
                raise ReckdError(f"--set: {error.args[0] if error.args else error}") from None
        if any(split_spec(m)[1] for m in self.methods) and self.augment < 1:
            raise ReckdError(f"--augment: expected at least 1 unrated pair per rated pair for NAME+aug, found {self.augment}")
        if not (self.aug_weight >= 0 and math.isfinite(self.aug_weight)):
            raise ReckdError(f"aug_weight: expected a finite weight ≥ 0, found {self.aug_weight}")
        for method, by_class in self.tuned.items():
            if not (isinstance(by_class, dict) and all(isinstance(v, dict) for v in by_class.values())):
                raise ReckdError(f"--tuned: expected {{class or genre: {{KEY: VALUE}}}} for method {method!r}, "
                                 f"found {by_class!r}")
            for genre_class, values in by_class.items():
                for key, value in values.items():
                    tuned_value(key, value, f"--tuned ({method}, {genre_class})")

    def recorded(self) -> dict:
        """The options as ``distill.json`` and ``reckd tune``'s document record them (``train``: as
        :meth:`TrainConfig.recorded` records it)."""
        return {**dataclasses.asdict(self), "train": self.train.recorded()}


GPU_WORKERS = 8


def default_workers(device: torch.device) -> int:
    """One student process per core on the CPU (faster than threads for models this small). On a GPU,
    students this small leave it idle while the host prepares each step, so several processes share it:
    one per core up to :data:`GPU_WORKERS` (chosen by measurement, README "Speed"). Under ``torchrun``
    the machine's cores are split between its ranks (``LOCAL_WORLD_SIZE``)."""
    cores = max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return cores if device.type == "cpu" else max(1, min(cores, GPU_WORKERS))


def distill(data: SplitData, teacher_dir: Path, out: Path, config: DistillConfig, progress: bool = True,
            workers: int | None = None, retrain_changed: bool = False, world: World | None = None) -> list[dict]:
    """Run every requested genre × method × seed not finished yet; return all runs' results (finished
    before or now). ``workers`` > 1 trains that many students at once in worker processes, each with an
    equal share of the cores (and, on a GPU, sharing it). A run whose loss turns non-finite is reported
    on stderr, left unfinished, and named in the error raised at the end. ``retrain_changed``: retrain
    runs recorded with other options instead of refusing them.

    ``world`` (under ``torchrun``): rank 0 holds the folder, plans the runs and builds the teacher-output
    cache; the pending runs are dealt out over the ranks of all nodes (each run trained by exactly one
    rank, into the shared ``out``), and every rank returns all results. With ``config.shard_students``,
    every run is trained by all ranks together instead, one after another, its student sharded
    (:meth:`StudentRuns.train`)."""
    (results, failed), = distill_each(data, teacher_dir, [(out, config)], progress, workers, retrain_changed, world)
    if failed:
        raise NonFiniteLoss(f"{len(failed)} run(s) stopped on a non-finite loss:\n" + "\n".join(failed))
    return results


def distill_each(data: SplitData, teacher_dir: Path, requests: list[tuple[Path, DistillConfig]],
                 progress: bool = True, workers: int | None = None, retrain_changed: bool = False,
                 world: World | None = None) -> list[tuple[list[dict], list[str]]]:
    """:func:`distill` of several requests — (folder, options) pairs of the same split and teacher, such
    as ``reckd tune``'s grid points — at once: one pool of workers trains the pending runs of all of them,
    the largest genres first, so that no core waits for one request's last run while another's are
    pending, and the teacher, its cache and the augmentation pairs are made once per process. Returns,
    per request, its results and the messages of its runs that stopped on a non-finite loss (printed
    on stderr too); the caller decides whether that is an error."""
    for _, config in requests:
        config.check()
    sharded = {config.shard_students for _, config in requests}
    if True in sharded and world is None:
        raise ReckdError("--shard-students: expected a launch by torchrun with at least 2 processes (the "
                         "students are sharded over its ranks), found a single process")
    if len(sharded) > 1:
        raise ReckdError("--shard-students: expected it for every request of one launch or for none, found both")
    together = world is not None and sharded == {True}
    device = data.rating.device
    workers = default_workers(device) if workers is None else workers
    if workers < 1:
        raise ReckdError(f"--workers: expected at least 1, found {workers}")
    ref = teacher_ref(teacher_dir, data)
    if world is not None:
        world.agree("the split's fingerprint", data.fingerprint)
        world.agree("the teacher's checkpoint (SHA-256)", ref.sha256)
    first = StudentRuns(data, ref, requests[0][1], world if together else None)
    students = [first] + [first.sharing(config) for _, config in requests[1:]]
    runs = [[Run(g, m, s) for g in select_genres(data, config.genres) for m in config.methods for s in config.seeds]
            for _, config in requests]
    # a run without tuned values stops here
    requested = [{run: each.config_of(run) for run in mine} for each, mine in zip(students, runs)]

    def planned(k: int, out: Path) -> Plan:
        header = _header(out, data, ref, requests[k][1], runs[k])
        plan = make_plan(out, runs[k], requested[k].__getitem__, first.rows, retrain_changed)
        write_json(out / "distill.json", header)
        return plan

    with contextlib.ExitStack() as stack:
        if world is None:
            outs = [stack.enter_context(claim(out, "reckd distill")) for out, _ in requests]
            plans = [planned(k, out) for k, out in enumerate(outs)]
        else:  # rank 0 holds the folders, plans and builds the cache; its errors stop every rank
            outs = world.from_main(lambda: [stack.enter_context(claim(out, "reckd distill")) for out, _ in requests])
            plans = world.from_main(lambda: [planned(k, out) for k, out in enumerate(outs)])
        # the largest genres first, over all requests (each plan's pending runs are in that order already)
        pending = sorted(((k, run) for k, plan in enumerate(plans) for run in plan.pending),
                         key=lambda task: -first.rows(task[1].genre))
        if world is not None:
            if world.main:
                _build_caches(students, pending)
            world.barrier()
        mine = pending if world is None or together else pending[world.rank::world.size]
        main = world is None or world.main
        bar = tqdm(total=sum(map(len, runs)), initial=sum(len(plan.finished) for plan in plans), desc="distill",
                   unit="run", disable=not (progress and main), file=sys.stderr)
        if workers > 1 and len(mine) > 1 and not together:
            threads = max(1, torch.get_num_threads() // workers)
            _build_caches(students, pending)  # built once here, before the workers read them
            recipe = functools.partial(_worker, str(data.path), str(device), ref, [c for _, c in requests], threads,
                                       outs)
            outcomes = run_in_workers(recipe, mine, min(workers, len(mine)))
        else:
            outcomes = ((k, students[k](run, outs[k])) for k, run in mine)
        done = []
        for outcome in outcomes:
            done.append(outcome)
            bar.update(world.size if world is not None and not together else 1)  # rank 0's stands for all
        bar.close()
        if world is not None and not together:  # every rank's outcomes, on every rank
            done = [outcome for outcomes in world.all_objects(done) for outcome in outcomes]
    for _, outcome in done:
        if isinstance(outcome, str):
            print(f"reckd distill: run {outcome}", file=sys.stderr)
    return [(list(plan.finished.values()) + [o for j, o in done if j == k and isinstance(o, dict)],
             [o for j, o in done if j == k and isinstance(o, str)]) for k, plan in enumerate(plans)]


def _build_caches(students: list[StudentRuns], pending: list[tuple[int, Run]]) -> None:
    """The teacher-output caches that the requests with pending runs read, each built once: the one holding
    the teacher's states first, so that a request without them reads it from the file instead of
    building it again (requests with other methods would otherwise have each worker rebuild it)."""
    for each in sorted({id(students[k]): students[k] for k, _ in pending}.values(), key=lambda s: not s.reads_states):
        each.cache


def _worker(split_dir: str, device: str, ref, configs: list[DistillConfig], threads: int, outs: list[Path]):
    first = student_runs(split_dir, device, ref, configs[0], threads)
    students = [first] + [first.sharing(config) for config in configs[1:]]
    return lambda task: (task[0], students[task[0]](task[1], outs[task[0]]))


def _header(out: Path, data: SplitData, ref, config: DistillConfig, runs: list[Run]) -> dict:
    """``distill.json``: what made the folder, and every run requested into it so far. A folder made
    from another split or teacher is refused before anything is written."""
    made_with = {"split": str(Path(data.path).resolve()), "split_fingerprint": data.fingerprint,
                 "teacher": str(ref.path.resolve()), "teacher_sha256": ref.sha256}
    requested: list[list] = []
    if (out / "distill.json").is_file():
        before = read_json(out / "distill.json", "a distill header")
        for key in ("split_fingerprint", "teacher_sha256"):
            if before.get(key) != made_with[key]:
                raise ReckdError(f"{out / 'distill.json'}: {key} is {before.get(key)!r}, but this run has "
                                 f"{made_with[key]!r}; its finished runs belong to another teacher or split — "
                                 f"use a new --out")
        requested = before.get("runs", [])
    requested += [[r.genre, r.method, r.seed] for r in runs if [r.genre, r.method, r.seed] not in requested]
    return {**made_with, "reckd_version": __version__, "runs": requested, "config": config.recorded()}
