"""``fitnet`` (Romero et al. 2015): hint on the higher hidden state, ``MSE(r(s_h), t_h)``.

One-stage variant (hint and task trained jointly, METHODS.md default); the regressor ``r`` is a
Linear from the student's width to the teacher's, a trainable extra not needed at inference.
With ``normalize`` (default) the MSE is divided by the mean per-feature variance of t_h over the
training set (computed in ``prepare``), so ``w_hint`` does not depend on the teacher's scale **[recon]**.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reckd.losses.base import Method, Teacher, register
from reckd.losses.common import state_variance, task_loss
from reckd.models.contract import Dims, HeadSpec, Outputs


@dataclass
class FitNetConfig:
    """``w_task``: task weight; ``w_hint``: weight of the hint MSE; ``normalize``: measure it in
    units of the teacher state's variance [recon]."""

    w_task: float = 1.0
    w_hint: float = 1.0
    normalize: bool = True


@register
class FitNet(Method):
    """``L = w_task · L_task + w_hint · MSE(r(s_h), t_h)``."""

    name = "fitnet"
    reads_teacher_states = True
    Config = FitNetConfig

    def __init__(self, config: FitNetConfig, student: Dims, teacher: Dims, head: HeadSpec) -> None:
        super().__init__(config, student, teacher, head)
        self.regressor = nn.Linear(student.upper, teacher.upper)  # r
        self.register_buffer("t_h_var", torch.ones(()))

    @torch.no_grad()
    def prepare(self, teacher_train: Outputs, teacher_head: nn.Module | None) -> None:
        if self.config.normalize:
            self.t_h_var.copy_(state_variance(teacher_train.upper))

    def hint(self, student: Outputs, teacher: Teacher) -> Tensor:
        """The weighted hint ``w_hint · MSE(r(s_h), t_h)`` (over Var(t_h) with ``normalize``)."""
        return self.config.w_hint * F.mse_loss(self.regressor(student.upper), teacher.outputs.upper) / self.t_h_var

    def forward(self, student: Outputs, teacher: Teacher | None, labels: Tensor) -> dict[str, Tensor]:
        return {"task": self.config.w_task * task_loss(self.head_spec, student, labels),
                "hint": self.hint(student, teacher)}
