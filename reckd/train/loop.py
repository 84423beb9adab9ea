"""The one training loop, for the teacher and every student, ratings and images alike: Adam over the
model and the method's extras, early stopping on the source's validation metric (ties keep the earlier
epoch unless the caller asks for the later one), best-epoch weights, per-epoch metrics, optional
plateau halving of the learning rate, an optional moving average of the weights, and a clean stop on
a non-finite loss.

What it trains on is a batch source (:mod:`reckd.data.source`: rows → inputs and labels, a metric and
its direction); the frozen teacher comes in as a :class:`TeacherView` (cached outputs or a live
forward), and the loop is the one place that calls ``method.prepare``; teacher-labelled
augmentation is an :class:`Augmenter` (:class:`Augmentation` for rating pairs, :class:`Unlabelled`
for unlabelled rows of the source).

Example::

    source = TensorSource(images, labels)
    result = train(student, method, source, train_rows, val_rows, TrainConfig(seed=0), TeacherView(teacher))
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchrec import EmbeddingBagCollection

from reckd.data.source import BatchSource, PairSource, RatingSource, rmse
from reckd.data.split import SplitData
from reckd.errors import EveryRankError, ReckdError
from reckd.losses.base import Method, Teacher
from reckd.losses.common import teacher_label_loss
from reckd.models.contract import Outputs
from reckd.train.distributed import check_embedding_optimizer
from reckd.train.io import append_jsonl, write_torch, write_with

if TYPE_CHECKING:
    from reckd.train.distributed import World

__all__ = ["Augmentation", "Augmenter", "FitResult", "NonFiniteLoss", "TeacherView", "TrainConfig", "Unlabelled",
           "clear_last", "evaluate", "fit", "predict", "predict_rows", "rmse", "scaled", "train"]


class NonFiniteLoss(ReckdError):
    """A loss became NaN or inf; the run stops and its last good checkpoint stays on disk."""


@dataclass
class TrainConfig:
    """Optimisation settings. ``patience``: epochs without a better validation metric before stopping."""

    epochs: int = 40
    batch_size: int = 1024
    lr: float = 2e-3
    weight_decay: float = 0.0
    patience: int = 4
    seed: int = 0
    lr_patience: int = 0  # halve the learning rate after this many epochs without improvement (0: never)
    ema: float = 0.0  # decay of an exponential moving average of the weights, per step (0: off; see train)

    def __post_init__(self) -> None:
        """Every option in range, each error naming its flag."""
        for flag, value in (("--epochs", self.epochs), ("--batch-size", self.batch_size), ("patience", self.patience)):
            if value < 1:
                raise ReckdError(f"{flag}: expected at least 1, found {value}")
        if not (0 < self.lr < math.inf):
            raise ReckdError(f"--lr: expected a finite learning rate > 0, found {self.lr}")
        if not (0 <= self.weight_decay < math.inf):
            raise ReckdError(f"weight_decay (--weight-decay): expected a finite value ≥ 0, found {self.weight_decay}")
        if self.lr_patience < 0:
            raise ReckdError(f"lr_patience: expected 0 (never) or more epochs, found {self.lr_patience}")
        if not (0 <= self.ema < 1):
            raise ReckdError(f"ema: expected a decay in [0, 1) (0: off), found {self.ema}")

    def recorded(self) -> dict:
        """The options as a run's ``config.json`` records them: ``ema`` only when on, so runs made before
        it existed (all without it) keep matching a request that leaves it off."""
        out = dataclasses.asdict(self)
        if not self.ema:
            del out["ema"]
        return out


def scaled(config: TrainConfig, rows: int, lr: bool = True, per_epoch: int = 1_000_000,
           most: int = 65536) -> TrainConfig:
    """``config`` for a training set of ``rows`` ratings: the batch doubles for each doubling of the set
    beyond ``per_epoch`` ratings, up to ``most``, so an epoch of a large set takes about as many steps
    as one of ``per_epoch`` ratings; with ``lr``, the learning rate grows with the square root of the
    batch (the square-root scaling rule for Adam). Sets of at most ``per_epoch`` ratings (ML-100K's,
    where the defaults were chosen) keep ``config`` as it is."""
    factor = 1
    while rows > per_epoch * factor and config.batch_size * factor * 2 <= most:
        factor *= 2
    return dataclasses.replace(config, batch_size=config.batch_size * factor,
                               lr=config.lr * math.sqrt(factor) if lr else config.lr)


@dataclass
class FitResult:
    """``best_val``: the validation metric (``metric``: ``rmse`` or ``accuracy``) of the restored epoch."""

    best_epoch: int
    best_val: float
    epochs_run: int
    seconds: float
    state: dict  # best-epoch state dicts: {"model": ..., "method": ...}
    metric: str = "rmse"

    @property
    def best_val_rmse(self) -> float:
        if self.metric != "rmse":
            raise AttributeError(f"best_val_rmse: this run's validation metric is {self.metric}; use best_val")
        return self.best_val


# ---------------------------------------------------------------- the frozen teacher
@dataclass
class TeacherView:
    """The frozen teacher as the loop shows it to a method. ``model``: a staged model (``upper``,
    ``head``, forward → ``Outputs``) with ``requires_grad=False`` and in eval mode. ``cache``: its
    outputs on every row of the source, if already computed (e.g. the teacher-output cache on disk);
    without one the loop computes them on the training rows once. ``head``: the head handed to
    ``method.prepare`` (default ``model.head``; MoE-KD keeps a copy of it)."""

    model: nn.Module
    cache: Outputs | None = None
    head: nn.Module | None = None

    @torch.no_grad()
    def outputs(self, source: BatchSource, rows: Tensor, live: bool = False) -> Outputs:
        """The teacher's outputs on ``rows``: from the cache, or (``live``, or no cache) a forward pass."""
        if self.cache is not None and not live:
            return self.cache.index(rows)
        return Outputs.cat([self.model(source.batch(rows[start:start + source.chunk])[0])
                            for start in range(0, rows.numel(), source.chunk)])

    def on(self, outputs: Outputs) -> Teacher:
        """What a method sees on one batch: these outputs and the teacher's frozen upper block and head."""
        return Teacher(outputs, upper=self.model.upper, head=self.model.head)

    @torch.no_grad()
    def live(self, inputs: Any) -> Teacher:
        return self.on(self.model(inputs))


# a teacher for one step, (rows, inputs) -> Teacher, from a caller that has run method.prepare() itself
StepTeacher = Callable[[Tensor, Any], Teacher]


def _step_teacher(teacher: TeacherView | StepTeacher, method: Method, source: BatchSource,
           train_rows: Tensor) -> Callable[[Tensor, Tensor, Any], Teacher]:
    """Prepare ``method`` with the teacher's outputs on the training rows and return the teacher of a
    step, ``(rows, positions in train_rows, inputs) -> Teacher``: live for methods that run the
    teacher's blocks on student tensors (Talking Models), else those outputs at the positions."""
    if not isinstance(teacher, TeacherView):
        return lambda rows, at, inputs: teacher(rows, inputs)
    live = method.needs_live_teacher
    seen = teacher.outputs(source, train_rows, live=live)
    method.prepare(seen, teacher.head if teacher.head is not None else teacher.model.head)
    if live:
        return lambda rows, at, inputs: teacher.live(inputs)
    return lambda rows, at, inputs: teacher.on(seen.index(at))


# ---------------------------------------------------------------- teacher-labelled augmentation
class Augmenter(Protocol):
    """Teacher-labelled augmentation: one more weighted loss term per step, on inputs without labels."""

    def start(self, model: nn.Module, method: Method, source: BatchSource,
              generator: torch.Generator) -> Callable[[Tensor], Tensor]:
        """Called once before the first epoch (it may draw from ``generator``); returns the function
        that gives the step's ``aug`` term from the step's rows."""


@dataclass
class Augmentation:
    """Teacher-labelled augmentation on ratings: unrated (user, item) pairs with the teacher's ratings,
    and the weight of ``MSE(ŷ_S, ŷ_T)`` on them. ``ratio``: pairs per rated pair in each step; the
    pairs are taken in the order of one shuffle, from the start again when they run out."""

    users: Tensor
    items: Tensor
    teacher_rating: Tensor
    ratio: int
    weight: float = 1.0

    def start(self, model: nn.Module, method: Method, source: RatingSource,
              generator: torch.Generator) -> Callable[[Tensor], Tensor]:
        order = torch.randperm(self.users.numel(), generator=generator).to(source.device)
        position = 0

        def term(rows: Tensor) -> Tensor:
            nonlocal position
            take = rows.numel() * self.ratio
            if position + take > order.numel():
                position = 0
            pick = order[position:position + take]
            position += take
            student = model(source.pairs(self.users[pick], self.items[pick]))
            return self.weight * F.mse_loss(student.prediction, self.teacher_rating[pick])

        return term


@dataclass
class Unlabelled:
    """Teacher-labelled augmentation on rows of the source whose labels are not used (the unlabelled
    images of a task): each step ``count`` of ``rows`` drawn at random with replacement, and the term
    ``weight · teacher_label_loss`` against the teacher's outputs on them (computed once, at start)."""

    rows: Tensor
    teacher: TeacherView
    count: int = 128
    weight: float = 1.0

    def start(self, model: nn.Module, method: Method, source: BatchSource,
              generator: torch.Generator) -> Callable[[Tensor], Tensor]:
        labelled_by_teacher = self.teacher.outputs(source, self.rows, live=True)

        def term(rows: Tensor) -> Tensor:
            pick = torch.randint(self.rows.numel(), (self.count,), generator=generator).to(source.device)
            student = model(source.batch(self.rows[pick])[0])
            return self.weight * teacher_label_loss(method.head_spec, student, labelled_by_teacher.index(pick))

        return term


# ---------------------------------------------------------------- inference
@torch.no_grad()
def predict(model: nn.Module, method: Method | None, source: BatchSource, rows: Tensor,
            world: "World | None" = None) -> Tensor:
    """Teacher-free predictions on ``rows``: ``method.predict`` on the model's outputs (the model's own
    prediction when ``method`` is None), in eval mode, ``source.chunk`` rows at a time. With ``world``
    (a sharded model), every rank predicts its part of ``rows`` and every rank gets all predictions."""
    if world is not None:
        part = world.part(rows)
        # every rank runs the same number of forward passes (the sharded lookups are collective)
        chunks = max(1, math.ceil(math.ceil(rows.numel() / world.size) / source.chunk))
        out = [predict(model, method, source, piece) for piece in part.tensor_split(chunks)]
        return world.gather(torch.cat(out))
    modes = [(m, m.training) for top in (model, method) if top is not None for m in top.modules()]
    for m, _ in modes:
        m.training = False
    out = []
    try:
        for start in range(0, rows.numel(), source.chunk):
            s = model(source.batch(rows[start:start + source.chunk])[0])
            out.append(method.predict(s) if method is not None else s.prediction)
    finally:
        for m, mode in modes:  # every module back in the mode it was in (a frozen teacher's stays in eval)
            m.training = mode
    return torch.cat(out)


def evaluate(model: nn.Module, method: Method | None, source: BatchSource, rows: Tensor,
             world: "World | None" = None) -> float:
    """The source's metric of the teacher-free predictions on ``rows``."""
    return source.score(predict(model, method, source, rows, world), rows)


def predict_rows(model: nn.Module, method: Method | None, data: SplitData, rows: Tensor,
                 chunk: int = 65536) -> Tensor:
    """Teacher-free predictions for rating rows, clipped to the rating scale."""
    return predict(model, method, RatingSource(data, chunk), rows).clamp(data.rating_min, data.rating_max)


def pair_scorer(model: nn.Module, method: Method | None, data: SplitData) -> Callable[[Tensor, Tensor], Tensor]:
    """``score(users, items)``: teacher-free predictions for (user, item) pairs, rated or not, clipped to
    the rating scale (what the ranking metrics rank)."""
    def score(users: Tensor, items: Tensor) -> Tensor:
        rows = torch.arange(users.numel(), device=users.device)
        return predict(model, method, PairSource(data, users, items), rows).clamp(data.rating_min, data.rating_max)
    return score


# ---------------------------------------------------------------- the loop
def _optimizers(model: nn.Module, method: Method, config: TrainConfig, device: torch.device,
                embedding_optimizer: str) -> list[torch.optim.Optimizer]:
    """Adam over every trainable parameter — or, with ``embedding_optimizer="adagrad"``, Adagrad over
    the embedding tables (what fbgemm's sharded CPU tables support, so one process can train the model
    that ``torchrun`` trains) and Adam over the rest. Tables whose optimiser is fused into the backward
    pass (sharded by ``DistributedModelParallel``) are left out."""
    params = [p for p in itertools.chain(model.parameters(), method.parameters())
              if p.requires_grad and not hasattr(p, "_in_backward_optimizers")]
    # the fused kernel on CUDA (one launch for all parameters). On the CPU it made a student's step about 15%
    # faster but a torchrun teacher's peak memory 11% larger at 3M ratings (README, Speed): the default there
    fused = True if device.type == "cuda" else None
    check_embedding_optimizer(embedding_optimizer)
    if embedding_optimizer == "adam":
        return [torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay, fused=fused)]
    tables = {id(p) for m in model.modules() if isinstance(m, EmbeddingBagCollection) for p in m.parameters()}
    dense = [p for p in params if id(p) not in tables]
    embeddings = [p for p in params if id(p) in tables]
    return [torch.optim.Adam(dense, lr=config.lr, weight_decay=config.weight_decay, fused=fused),
            *([torch.optim.Adagrad(embeddings, lr=config.lr, weight_decay=config.weight_decay)] if embeddings else [])]


def _averaged(model: nn.Module, decay: float, world: "World | None") -> nn.Module | None:
    """The exponential moving average of ``model``'s weights (and buffers), kept by torch's
    :class:`~torch.optim.swa_utils.AveragedModel`: after the ``n``-th step ``w̄ ← d·w̄ + (1 − d)·w`` with
    ``d = min(decay, (1 + n) / (10 + n))`` — the warm-up of TensorFlow's ExponentialMovingAverage, so that
    the first epochs' average is not mostly the initial weights. None when ``decay`` is 0. Not for a
    sharded model: its tables live on several ranks and are updated inside the backward pass."""
    if not decay:
        return None
    if world is not None:
        raise ReckdError(f"ema: expected 0 (off) for a sharded model under torchrun, found {decay}; "
                         f"the averaged copy of its tables is not supported")
    from torch.optim.swa_utils import AveragedModel

    @torch.no_grad()
    def update(averaged: list[Tensor], current: list[Tensor], n: Tensor) -> None:
        steps = float(n)  # AveragedModel reads its count on the host anyway (whether to copy)
        torch._foreach_lerp_(averaged, current, 1 - min(decay, (1 + steps) / (10 + steps)))

    return AveragedModel(model, multi_avg_fn=update, use_buffers=True)


def clear_last(run_dir: Path, keep: str | None = None) -> None:
    """Remove a run's resumable training state (``last.pt``, and the ``last<epoch>/`` folders of
    ``torchrun``); with ``keep``, only the sharded folders other than that one."""
    if keep is None:
        (run_dir / "last.pt").unlink(missing_ok=True)
    for folder in run_dir.glob("last*/"):
        if folder.name != keep:
            shutil.rmtree(folder, ignore_errors=True)


def _rng_state(world: "World | None", generator: torch.Generator) -> list[dict]:
    """Every rank's random states, in rank order: the shuffling ``generator`` and the global state (what
    draws the dropout masks)."""
    mine = {"shuffle": generator.get_state(), "cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}
    return [mine] if world is None else world.all_objects(mine)


def _save_last(run_dir: Path, state: tuple, best: FitResult, world: "World | None", epoch: int, seconds: float,
               stopped: bool) -> None:
    """The training state after ``epoch`` (see :func:`train`'s ``resumable``). Under ``world`` the sharded
    part goes first, into ``last<epoch>/``, and the older one is removed only once ``last.pt`` names the
    new one: a kill at any point leaves a ``last.pt`` and the weights it names."""
    model, method, optimizers, plateau, generator, averaged = state
    last = {"epoch": epoch, "stopped": stopped, "seconds": seconds, "best_epoch": best.best_epoch,
            "best_val": best.best_val, "best_method": best.state.get("method"), "method": method.state_dict(),
            "optimizers": [o.state_dict() for o in optimizers],
            "plateau": plateau.state_dict() if plateau is not None else None, "rng": _rng_state(world, generator),
            **({"averaged": averaged.state_dict()} if averaged is not None else {})}
    if world is None:
        write_torch(run_dir / "last.pt", {**last, "model": model.state_dict()})
        return
    from reckd.train.distributed import save_sharded

    save_sharded(model, run_dir / f"last{epoch}", world, {"epoch": epoch}, optimizer=True)
    if world.main:
        write_torch(run_dir / "last.pt", {**last, "sharded": f"last{epoch}"})
        clear_last(run_dir, keep=f"last{epoch}")
    world.barrier()


def _resume(run_dir: Path, state: tuple, best: FitResult, world: "World | None") -> dict | None:
    """Load ``run_dir``'s last training state into ``state`` and ``best`` and return it (None if there
    is none); the metrics of epochs after it are dropped."""
    model, method, optimizers, plateau, generator, averaged = state
    if not (run_dir / "last.pt").is_file():
        return None
    last = torch.load(run_dir / "last.pt", weights_only=True, map_location="cpu")
    if world is None:
        model.load_state_dict(last["model"])
        best_model = torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"]
    else:  # each rank its own shards, refused if they were cut for another plan or world
        from reckd.train.distributed import describe, load_sharded_into, sharded_state

        made_with = describe(model, world)
        now = load_sharded_into(sharded_state(model, optimizer=True), run_dir / last["sharded"],
                                {**made_with, "epoch": last["epoch"]})
        model.load_state_dict(now["model"])
        model.fused_optimizer.load_state_dict(now["optimizer"])
        best_model = load_sharded_into(copy.deepcopy(model.state_dict()), run_dir / "checkpoint",
                                       {**made_with, "epoch": last["best_epoch"]})
    method.load_state_dict(last["method"])
    for optimizer, saved in zip(optimizers, last["optimizers"], strict=True):
        optimizer.load_state_dict(saved)
    if plateau is not None:
        plateau.load_state_dict(last["plateau"])
    if averaged is not None:
        averaged.load_state_dict(last["averaged"])
    rng = last["rng"][world.rank if world is not None else 0]
    generator.set_state(rng["shuffle"])
    torch.set_rng_state(rng["cpu"])
    if rng["cuda"] is not None:
        torch.cuda.set_rng_state_all(rng["cuda"])
    best.best_epoch, best.best_val, best.epochs_run = last["best_epoch"], last["best_val"], last["epoch"]
    best.state = {"model": best_model, "method": last["best_method"]}
    metrics = run_dir / "metrics.jsonl"
    if (world is None or world.main) and metrics.is_file():  # epochs logged after the state are trained again
        kept = [line for line in metrics.read_text().splitlines(keepends=True)
                if json.loads(line)["epoch"] <= last["epoch"]]
        write_with(metrics, lambda tmp: tmp.write_text("".join(kept)))
    return last


def train(model: nn.Module, method: Method, source: BatchSource, train_rows: Tensor, val_rows: Tensor,
          config: TrainConfig, teacher: TeacherView | StepTeacher | None = None,
          augmentation: Augmenter | None = None, run_dir: Path | None = None,
          on_epoch: Callable[[dict], None] | None = None,
          ties: Literal["earlier", "later"] = "earlier", world: "World | None" = None,
          embedding_optimizer: str = "adam", resumable: bool = False) -> FitResult:
    """Train ``model`` (and ``method``'s extras) on ``train_rows`` of ``source``; keep the epoch with
    the best validation metric. ``ties``: which epoch a tie keeps — ``earlier`` (a new best must be
    strictly better; ratings, where RMSE hardly ever ties) or ``later`` (a tie is a new best and
    restarts the patience count; coarse metrics such as accuracy on a few images). ``teacher``: a
    :class:`TeacherView` (the loop prepares the method with the teacher's outputs on ``train_rows``),
    or a function ``(rows, inputs) -> Teacher`` whose caller has run ``method.prepare``. With
    ``run_dir``, every epoch appends to ``metrics.jsonl`` and each new best writes ``checkpoint.pt``
    atomically. Shuffling and augmentation draws use a generator seeded with ``config.seed``.
    ``world``: ``model`` is sharded (:func:`reckd.train.distributed.shard`) over the ranks of
    ``torchrun``; ``train_rows`` are this rank's own (its share of the training ratings), of which it
    shuffles as many per epoch as the rank holding the fewest and computes ``config.batch_size /
    world.size`` rows of every step (the batch a multiple of the world size); the method's extras are
    replicated, their gradients averaged; validation is reduced over the ranks, rank 0 writes the
    metrics and the best epoch is a sharded checkpoint ``checkpoint/``. ``embedding_optimizer``: see
    :func:`_optimizers`. With ``config.ema``, what is validated, kept and returned is the moving average
    of the weights (:func:`_averaged`), not the last step's; the method's extras stay as trained.

    ``resumable`` (with ``run_dir``): every epoch also leaves the whole training state in ``last.pt`` —
    optimiser and scheduler states, every rank's shuffling generator and random state, the best epoch so
    far, the weights (under ``world`` the sharded weights and embedding optimiser go to ``last<epoch>/``) — and a
    call that finds it goes on after its epoch, so an interrupted run ends as the uninterrupted one would.
    Whether the state belongs to this run (the same options) is the caller's to check: it calls
    :func:`clear_last` otherwise."""
    if ties not in ("earlier", "later"):
        raise ValueError(f"ties: expected 'earlier' or 'later', found {ties!r}")
    device = source.device
    # under world each rank its own draws: the same permutation of every share would batch neighbouring rows
    stream = config.seed if world is None else config.seed * world.size + world.rank  # (the seed keeps 32 bits)
    generator = torch.Generator(device="cpu").manual_seed(stream)
    step_teacher = _step_teacher(teacher, method, source, train_rows) if teacher is not None else None
    rows_per_epoch, batch_size = train_rows.numel(), config.batch_size
    if world is not None:  # each rank its own training rows; every rank as many steps, of as many rows
        world.check_batch(config.batch_size)
        rows_per_epoch, batch_size = min(world.all_objects(rows_per_epoch)), config.batch_size // world.size
        if rows_per_epoch == 0:
            raise EveryRankError(f"a rank of {world.size} holds no training rows: expected a share of the "
                                 f"training ratings on every rank")
        # the method's extras, replicated: rank 0's (prepared on its share), their gradients averaged
        method.load_state_dict(world.from_main(lambda: method.state_dict()))
    extras = [p for p in method.parameters() if p.requires_grad]
    optimizers = _optimizers(model, method, config, device, embedding_optimizer)
    lower = source.lower_is_better
    plateau = (torch.optim.lr_scheduler.ReduceLROnPlateau(optimizers[0], mode="min" if lower else "max",
                                                          factor=0.5, patience=config.lr_patience - 1)
               if config.lr_patience > 0 else None)
    main = world is None or world.main  # the process that writes and reports
    best = FitResult(0, math.inf if lower else -math.inf, 0, 0.0, {}, source.metric)
    started = time.perf_counter()
    aug_term = augmentation.start(model, method, source, generator) if augmentation is not None else None
    averaged = _averaged(model, config.ema, world)
    kept = averaged.module if averaged is not None else model  # what is validated and kept: the average, if any
    state = (model, method, optimizers, plateau, generator, averaged)
    done = _resume(run_dir, state, best, world) if resumable and run_dir is not None else None
    first = 1
    if done is not None:
        first = config.epochs + 1 if done["stopped"] else done["epoch"] + 1
        started -= done["seconds"]
    model.train()
    method.train()
    for epoch in range(first, config.epochs + 1):
        # under world, a rank holding more rows than the fewest leaves its last few for another epoch
        positions = torch.randperm(train_rows.numel(), generator=generator).to(device)[:rows_per_epoch]
        order = train_rows[positions]
        # the step never waits for the device: loss terms are kept as tensors and read once per epoch
        history: list[dict[str, Tensor]] = []
        for start in range(0, rows_per_epoch, batch_size):
            rows, at = order[start:start + batch_size], positions[start:start + batch_size]
            inputs, labels = source.batch(rows)
            student = model(inputs)
            terms = method(student, step_teacher(rows, at, inputs) if step_teacher is not None else None, labels)
            if aug_term is not None:
                terms["aug"] = aug_term(rows)
            loss = sum(terms.values())
            for optimizer in optimizers:
                optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if world is not None:
                world.average_gradients(extras)
            for optimizer in optimizers:
                optimizer.step()
            if averaged is not None:
                averaged.update_parameters(model)
            history.append({k: v.detach() for k, v in terms.items()})
        per_step = {k: torch.stack([h[k] for h in history]) for k in history[0]}
        if world is not None:  # the ranks' mean loss per step: every rank sees (and stops on) the same
            per_step = {k: world.mean(v) for k, v in per_step.items()}
        finite = torch.isfinite(torch.stack(list(per_step.values())).sum(0))
        if not bool(finite.all()):  # the first bad step, reported once the epoch is over
            step = int((~finite).nonzero()[0])
            raise NonFiniteLoss(
                f"epoch {epoch}, step {step + 1}: loss is {sum(v[step] for v in per_step.values()).item()} "
                f"({', '.join(f'{k}={v[step].item():.4g}' for k, v in per_step.items())}); "
                f"the best checkpoint so far (epoch {best.best_epoch}) is kept")
        val = evaluate(kept, method, source, val_rows, world)
        if not math.isfinite(val):
            raise NonFiniteLoss(f"epoch {epoch}: validation {source.metric} is {val}; the best checkpoint so far "
                                f"(epoch {best.best_epoch}) is kept")
        record = {"epoch": epoch, f"val_{source.metric}": val, "seconds": time.perf_counter() - started,
                  **{f"loss_{k}": float(v.sum()) / len(v) for k, v in per_step.items()}}
        if run_dir is not None and main:
            append_jsonl(run_dir / "metrics.jsonl", record)
        if on_epoch is not None and main:
            on_epoch(record)
        best.epochs_run = epoch
        if plateau is not None:
            plateau.step(val)
        better = (val < best.best_val) if lower else (val > best.best_val)
        if better or (ties == "later" and val == best.best_val):
            best.best_epoch, best.best_val = epoch, val
            best.state = {"model": copy.deepcopy(kept.state_dict()), "method": copy.deepcopy(method.state_dict())}
            if world is not None and run_dir is not None:
                from reckd.train.distributed import save_sharded

                save_sharded(model, run_dir / "checkpoint", world, {"epoch": epoch, f"val_{source.metric}": val})
            elif run_dir is not None:
                write_torch(run_dir / "checkpoint.pt", {**best.state, "epoch": epoch, f"val_{source.metric}": val})
        stop = not better and epoch - best.best_epoch >= config.patience
        if resumable and run_dir is not None:
            _save_last(run_dir, state, best, world, epoch, time.perf_counter() - started, stop)
        if stop:
            break
    best.seconds = time.perf_counter() - started
    model.load_state_dict(best.state["model"])
    method.load_state_dict(best.state["method"])
    return best


def fit(model: nn.Module, method: Method, data: SplitData, train_rows: Tensor, val_rows: Tensor,
        config: TrainConfig, teacher: TeacherView | None = None, augmentation: Augmentation | None = None,
        run_dir: Path | None = None, on_epoch: Callable[[dict], None] | None = None,
        world: "World | None" = None, embedding_optimizer: str = "adam", resumable: bool = False) -> FitResult:
    """:func:`train` on the rating rows of a split (validation metric: RMSE)."""
    return train(model, method, RatingSource(data), train_rows, val_rows, config, teacher, augmentation,
                 run_dir, on_epoch, world=world, embedding_optimizer=embedding_optimizer, resumable=resumable)
