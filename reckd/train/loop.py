"""The training loop shared by the teacher and every student: Adam, early stopping on validation
RMSE, best-epoch weights, per-epoch metrics, and a clean stop on a non-finite loss."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reckd.data.split import SplitData
from reckd.losses.base import Method, Teacher
from reckd.models.contract import Outputs
from reckd.models.ranker import Ranker
from reckd.train.io import append_jsonl, write_torch


class NonFiniteLoss(RuntimeError):
    """A loss became NaN or inf; the run stops and its last good checkpoint stays on disk."""


@dataclass
class TrainConfig:
    """Optimisation settings. ``patience``: epochs without a better validation RMSE before stopping."""

    epochs: int = 40
    batch_size: int = 1024
    lr: float = 2e-3
    weight_decay: float = 0.0
    patience: int = 4
    seed: int = 0
    lr_patience: int = 0  # halve the learning rate after this many epochs without improvement (0: never)


@dataclass
class Augmentation:
    """Teacher-labelled augmentation: unrated (user, item) pairs with the teacher's ratings, and the
    weight of ``MSE(ŷ_S, ŷ_T)`` on them. ``ratio``: pairs per rated pair in each step."""

    users: Tensor
    items: Tensor
    teacher_rating: Tensor
    ratio: int
    weight: float = 1.0


@dataclass
class FitResult:
    best_epoch: int
    best_val_rmse: float
    epochs_run: int
    seconds: float
    state: dict  # best-epoch state dicts: {"model": ..., "method": ...}


TeacherFn = Callable[[Tensor, object], Teacher]


@torch.no_grad()
def predict_rows(model: nn.Module, method: Method | None, data: SplitData, rows: Tensor,
                 chunk: int = 65536) -> Tensor:
    """Teacher-free predictions for rating rows, clipped to the rating scale."""
    model.eval()
    out = []
    for start in range(0, rows.numel(), chunk):
        s = model(data.batch_rows(rows[start:start + chunk]).sparse_features)
        out.append(method.predict(s) if method is not None else s.prediction)
    model.train()
    return torch.cat(out).clamp(data.rating_min, data.rating_max)


def rmse(prediction: Tensor, rating: Tensor) -> float:
    return math.sqrt(F.mse_loss(prediction, rating).item())


def fit(model: Ranker, method: Method, data: SplitData, train_rows: Tensor, val_rows: Tensor,
        config: TrainConfig, teacher: TeacherFn | None = None, augmentation: Augmentation | None = None,
        run_dir: Path | None = None, on_epoch: Callable[[dict], None] | None = None) -> FitResult:
    """Train ``model`` (and ``method``'s extras) on ``train_rows``; keep the epoch with the best
    validation RMSE. ``teacher(rows, batch)`` gives the frozen teacher on a batch (cached or live).
    With ``run_dir``, every epoch appends to ``metrics.jsonl`` and each new best writes
    ``checkpoint.pt`` atomically."""
    device = data.rating.device
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    params = list(model.parameters()) + list(method.parameters())
    optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    plateau = (torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=config.lr_patience - 1)
               if config.lr_patience > 0 else None)
    best = FitResult(0, math.inf, 0, 0.0, {})
    started = time.perf_counter()
    aug_order = None
    if augmentation is not None:
        aug_order = torch.randperm(augmentation.users.numel(), generator=generator).to(device)
        aug_pos = 0
    model.train()
    method.train()
    for epoch in range(1, config.epochs + 1):
        order = train_rows[torch.randperm(train_rows.numel(), generator=generator).to(device)]
        sums: dict[str, float] = {}
        steps = 0
        for start in range(0, order.numel(), config.batch_size):
            rows = order[start:start + config.batch_size]
            batch = data.batch_rows(rows)
            student = model(batch.sparse_features)
            terms = method(student, teacher(rows, batch) if teacher is not None else None, batch.labels)
            if augmentation is not None:
                take = rows.numel() * augmentation.ratio
                if aug_pos + take > aug_order.numel():
                    aug_pos = 0
                pick = aug_order[aug_pos:aug_pos + take]
                aug_pos += take
                aug = model(data.batch(augmentation.users[pick], augmentation.items[pick]).sparse_features)
                terms["aug"] = augmentation.weight * F.mse_loss(aug.prediction, augmentation.teacher_rating[pick])
            loss = sum(terms.values())
            if not torch.isfinite(loss):
                raise NonFiniteLoss(
                    f"epoch {epoch}, step {steps + 1}: loss is {loss.item()} "
                    f"({', '.join(f'{k}={v.item():.4g}' for k, v in terms.items())}); "
                    f"the best checkpoint so far (epoch {best.best_epoch}) is kept")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v.item()
            steps += 1
        val = rmse(predict_rows(model, method, data, val_rows), data.rating[val_rows])
        if not math.isfinite(val):
            raise NonFiniteLoss(f"epoch {epoch}: validation RMSE is {val}; the best checkpoint so far "
                                f"(epoch {best.best_epoch}) is kept")
        record = {"epoch": epoch, "val_rmse": val, "seconds": time.perf_counter() - started,
                  **{f"loss_{k}": v / steps for k, v in sums.items()}}
        if run_dir is not None:
            append_jsonl(run_dir / "metrics.jsonl", record)
        if on_epoch is not None:
            on_epoch(record)
        best.epochs_run = epoch
        if plateau is not None:
            plateau.step(val)
        if val < best.best_val_rmse:
            best.best_epoch, best.best_val_rmse = epoch, val
            best.state = {"model": copy.deepcopy(model.state_dict()), "method": copy.deepcopy(method.state_dict())}
            if run_dir is not None:
                write_torch(run_dir / "checkpoint.pt", {**best.state, "epoch": epoch, "val_rmse": val})
        elif epoch - best.best_epoch >= config.patience:
            break
    best.seconds = time.perf_counter() - started
    model.load_state_dict(best.state["model"])
    method.load_state_dict(best.state["method"])
    return best
