"""``hybrid``: kd + fitnet together (the strongest baseline reported by Talking Models).

Built from the two pieces rather than re-declared: the options are ``kd``'s and ``fitnet``'s, the
regressor ``r``, its ``prepare`` and the hint term are fitnet's, the distillation term is kd's.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from reckd.losses.base import Teacher, register
from reckd.losses.common import task_loss
from reckd.losses.fitnet import FitNet, FitNetConfig
from reckd.losses.kd import KD, KDConfig, kd_term
from reckd.models.contract import Outputs


@dataclass
class HybridConfig(FitNetConfig, KDConfig):
    """The options of ``kd`` (``w_task``, ``w_kd``, ``tau``, ``rating_loss``, ``s``) and of ``fitnet``
    (``w_hint``, ``normalize``), with their defaults; ``w_task`` is kd's 0.9 (fitnet's is 1.0)."""

    w_task: float = 0.9


@register
class Hybrid(FitNet):
    """``L = w_task · L_task + w_kd · L_kd + w_hint · MSE(r(s_h), t_h)``."""

    name = "hybrid"
    Config = HybridConfig

    @classmethod
    def head_for(cls, config: HybridConfig) -> str:
        return KD.head_for(config)

    def forward(self, student: Outputs, teacher: Teacher | None, labels: Tensor) -> dict[str, Tensor]:
        c = self.config
        return {
            "task": c.w_task * task_loss(self.head_spec, student, labels),
            "kd": c.w_kd * kd_term(c, self.head_spec, student, teacher.outputs, self.levels),
            "hint": self.hint(student, teacher),
        }
