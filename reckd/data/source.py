"""Batch sources: what the training loop (:mod:`reckd.train.loop`) trains and scores on, for any task.

A source turns row indices into model inputs and labels, and scores predictions on rows with the
task's metric, saying which direction is better. Rows are whatever indexes the source (rating rows
of a split, images of a tensor); the loop only shuffles and slices them.

- :class:`RatingSource`: rating rows of a split → torchrec KeyedJaggedTensor and ratings; clipped RMSE.
- :class:`TensorSource`: rows of in-memory tensors (images, or any input a staged model takes) →
  those rows and their labels; accuracy for class labels, clipped RMSE for ratings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from reckd.data.split import SplitData


class BatchSource(Protocol):
    """``metric``: the metric's name (``rmse``, ``accuracy``; logged as ``val_<metric>``);
    ``lower_is_better``: its direction; ``chunk``: rows per forward pass when predicting."""

    metric: str
    lower_is_better: bool
    chunk: int

    @property
    def device(self) -> torch.device: ...

    def batch(self, rows: Tensor) -> tuple[Any, Tensor]:
        """The model's input for ``rows`` and their labels."""

    def score(self, prediction: Tensor, rows: Tensor) -> float:
        """The metric of ``prediction`` (one per row of ``rows``) against the rows' labels."""


def rmse(prediction: Tensor, rating: Tensor) -> float:
    return math.sqrt(F.mse_loss(prediction, rating).item())


def accuracy(prediction: Tensor, labels: Tensor) -> float:
    return (prediction == labels).float().mean().item()


@dataclass
class RatingSource:
    """The rating rows of a split: ``batch(rows)`` is the rows' KJT and ratings (``SplitData.batch_rows``);
    the metric is the RMSE of predictions clipped to the rating scale."""

    data: SplitData
    chunk: int = 65536
    metric = "rmse"
    lower_is_better = True

    @property
    def device(self) -> torch.device:
        return self.data.rating.device

    def batch(self, rows: Tensor) -> tuple[KeyedJaggedTensor, Tensor]:
        batch = self.data.batch_rows(rows)
        return batch.sparse_features, batch.labels

    def pairs(self, users: Tensor, items: Tensor) -> KeyedJaggedTensor:
        """The model's input for (user, item) pairs that need not be rated (augmentation)."""
        return self.data.batch(users, items).sparse_features

    def score(self, prediction: Tensor, rows: Tensor) -> float:
        return rmse(prediction.clamp(self.data.rating_min, self.data.rating_max), self.data.rating[rows])


@dataclass
class PairSource:
    """(user, item) pairs of a split that need not be rated (ranking candidates): ``batch(rows)`` is the
    KJT of pairs ``rows`` (labels are zeros; nothing scores them)."""

    data: SplitData
    users: Tensor
    items: Tensor
    chunk: int = 65536

    @property
    def device(self) -> torch.device:
        return self.data.rating.device

    def batch(self, rows: Tensor) -> tuple[KeyedJaggedTensor, Tensor]:
        batch = self.data.batch(self.users[rows], self.items[rows])
        return batch.sparse_features, batch.labels


@dataclass
class TensorSource:
    """Rows of in-memory tensors: ``batch(rows)`` is ``(inputs[rows], labels[rows])``. ``scale``:
    ``None`` for class labels (metric: accuracy, higher is better), or the rating scale ``(min, max)``
    (metric: RMSE of predictions clipped to it, lower is better)."""

    inputs: Tensor
    labels: Tensor
    scale: tuple[float, float] | None = None
    chunk: int = 4096

    def __post_init__(self) -> None:
        if len(self.inputs) != len(self.labels):
            raise ValueError(f"TensorSource: expected one label per input, found {len(self.inputs)} inputs "
                             f"and {len(self.labels)} labels")
        self.metric = "accuracy" if self.scale is None else "rmse"
        self.lower_is_better = self.scale is not None

    @property
    def device(self) -> torch.device:
        return self.labels.device

    def batch(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        return self.inputs[rows], self.labels[rows]

    def score(self, prediction: Tensor, rows: Tensor) -> float:
        if self.scale is None:
            return accuracy(prediction, self.labels[rows])
        return rmse(prediction.float().clamp(*self.scale), self.labels[rows].float())
