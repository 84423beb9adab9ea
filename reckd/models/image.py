"""Staged image classifiers (METHODS.md taps): ``lower`` (stem + dense → s_l), ``upper`` (→ s_h),
``head`` (→ logits). A convolutional teacher and a small MLP student share the one class.

Example::

    teacher = ImageClassifier(ImageConfig.teacher())
    out = teacher(images)          # Outputs(prediction=argmax, lower=s_l, upper=s_h, logits)
    teacher.dims                   # Dims(lower=128, upper=128)
    view = TaskView(teacher, (0, 1, 2))   # the same teacher speaking a 3-class task
    view.head_spec                 # HeadSpec(kind='class', num_classes=3)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from reckd.models.contract import Dims, HeadSpec, Outputs


@dataclass(frozen=True)
class ImageConfig:
    """``channels``: 3×3 conv layers of the stem (then a 2×2 max-pool); ``()`` makes the stem a plain
    flatten, i.e. an MLP on pixels. ``lower``/``upper``: widths of s_l / s_h. ``image_size`` and
    ``in_channels`` describe the input (8×8 grey for scikit-learn's digits)."""

    num_classes: int = 10
    channels: tuple[int, ...] = ()
    lower: int = 32
    upper: int = 32
    dropout: float = 0.0
    image_size: int = 8
    in_channels: int = 1

    @classmethod
    def teacher(cls, num_classes: int = 10) -> "ImageConfig":
        """A larger CNN (≈150k parameters on 8×8 digits)."""
        return cls(num_classes=num_classes, channels=(32, 64), lower=128, upper=128, dropout=0.1)

    @classmethod
    def student(cls, num_classes: int = 10) -> "ImageConfig":
        """A small MLP on pixels (≈3.5k parameters)."""
        return cls(num_classes=num_classes, channels=(), lower=32, upper=32)


class ImageClassifier(nn.Module):
    """``lower(x) -> s_l [B, lower]``, ``upper(s_l) -> s_h [B, upper]``, ``head(s_h) -> logits [B, K]``;
    ``forward(x)`` runs all three and returns ``Outputs`` with ``prediction = argmax``."""

    def __init__(self, config: ImageConfig) -> None:
        super().__init__()
        self.config = config
        stem: list[nn.Module] = []
        width = config.in_channels
        for channels in config.channels:
            stem += [nn.Conv2d(width, channels, 3, padding=1), nn.ReLU()]
            width = channels
        side = config.image_size
        if config.channels:
            stem.append(nn.MaxPool2d(2))
            side //= 2
        stem.append(nn.Flatten())
        self.lower = nn.Sequential(*stem, nn.Linear(width * side * side, config.lower), nn.ReLU(),
                                   nn.Dropout(config.dropout))
        self.upper = nn.Sequential(nn.Linear(config.lower, config.upper), nn.ReLU(), nn.Dropout(config.dropout))
        self.head = nn.Linear(config.upper, config.num_classes)

    @property
    def dims(self) -> Dims:
        return Dims(self.config.lower, self.config.upper)

    @property
    def head_spec(self) -> HeadSpec:
        return HeadSpec("class", num_classes=self.config.num_classes)

    def forward(self, x: Tensor) -> Outputs:
        s_l = self.lower(x)
        s_h = self.upper(s_l)
        logits = self.head(s_h)
        return Outputs(logits.argmax(dim=1), s_l, s_h, logits)


class ClassSubset(nn.Module):
    """A head restricted to a downstream task's classes: ``head(s_h)[:, classes]``, so a teacher
    pre-trained on the full label set speaks the task's label space."""

    def __init__(self, head: nn.Module, classes: tuple[int, ...]) -> None:
        super().__init__()
        self.head = head
        self.register_buffer("classes", torch.tensor(classes, dtype=torch.long), persistent=False)

    def forward(self, s_h: Tensor) -> Tensor:
        return self.head(s_h).index_select(1, self.classes)


class TaskView(nn.Module):
    """A classifier seen through a subset of its classes: the same ``lower`` and ``upper`` modules
    (shared, not copied) and a :class:`ClassSubset` head."""

    def __init__(self, model: ImageClassifier, classes: tuple[int, ...]) -> None:
        super().__init__()
        self.lower, self.upper = model.lower, model.upper
        self.head = ClassSubset(model.head, classes)
        self.dims = model.dims

    @property
    def head_spec(self) -> HeadSpec:
        return HeadSpec("class", num_classes=len(self.head.classes))

    def forward(self, x: Tensor) -> Outputs:
        s_l = self.lower(x)
        s_h = self.upper(s_l)
        logits = self.head(s_h)
        return Outputs(logits.argmax(dim=1), s_l, s_h, logits)
