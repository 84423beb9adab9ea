"""``none``: the student trained on its own data only — the "scratch" row of every table."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from reckd.losses.base import Method, Teacher, register
from reckd.losses.common import task_loss
from reckd.models.contract import Outputs


@dataclass
class NoneConfig:
    """``w_task``: weight of the task loss (MSE for ratings, cross-entropy for classes)."""

    w_task: float = 1.0


@register
class Scratch(Method):
    """``L = w_task · L_task``; the teacher is never used."""

    name = "none"
    Config = NoneConfig
    needs_teacher = False

    def forward(self, student: Outputs, teacher: Teacher | None, labels: Tensor) -> dict[str, Tensor]:
        return {"task": self.config.w_task * task_loss(self.head_spec, student, labels)}
