"""``hybrid``: kd + fitnet together (the strongest baseline reported by Talking Models)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reckd.losses.base import Dims, HeadSpec, Method, Teacher, register
from reckd.losses.common import one_of, task_loss
from reckd.losses.fitnet import FitNet
from reckd.losses.kd import kd_term
from reckd.models.outputs import Outputs


@dataclass
class HybridConfig:
    """The options of ``kd`` (``w_task``, ``w_kd``, ``tau``, ``rating_loss``, ``s``) plus ``w_hint``
    and ``normalize`` of ``fitnet``, with the same defaults."""

    w_task: float = 0.9
    w_kd: float = 1.0
    tau: float = 4.0
    rating_loss: str = "mse"
    s: float = 0.5
    w_hint: float = 1.0
    normalize: bool = True

    def __post_init__(self) -> None:
        one_of("rating_loss", self.rating_loss, ("mse", "kl"))


@register
class Hybrid(Method):
    """``L = w_task · L_task + w_kd · L_kd + w_hint · MSE(r(s_h), t_h)``."""

    name = "hybrid"
    Config = HybridConfig

    def __init__(self, config: HybridConfig, student: Dims, teacher: Dims, head: HeadSpec) -> None:
        super().__init__(config, student, teacher, head)
        self.regressor = nn.Linear(student.upper, teacher.upper)  # r of fitnet
        self.register_buffer("t_h_var", torch.ones(()))

    prepare = FitNet.prepare

    @classmethod
    def head_for(cls, config: HybridConfig) -> str:
        return "levels" if config.rating_loss == "kl" else "any"

    def forward(self, student: Outputs, teacher: Teacher | None, labels: Tensor) -> dict[str, Tensor]:
        c = self.config
        return {
            "task": c.w_task * task_loss(self.head_spec, student, labels),
            "kd": c.w_kd * kd_term(c, self.head_spec, student, teacher.outputs, self.levels),
            "hint": c.w_hint * F.mse_loss(self.regressor(student.upper), teacher.outputs.upper) / self.t_h_var,
        }
