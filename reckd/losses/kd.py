"""``kd`` (Hinton et al. 2015): match the teacher's softened outputs.

Class head: ``τ² · KL(softmax(z_T/τ) ‖ softmax(z_S/τ))``, batchmean. Rating head: ``MSE(ŷ_S, ŷ_T)``
(METHODS.md), or with ``rating_loss="kl"`` the τ² KL over the rating levels between the student's
levels head and the teacher's distribution (its levels logits, or the Gaussian view of its scalar).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from reckd.losses.base import Method, Teacher, register
from reckd.losses.common import distribution_logits, one_of, soft_kl, task_loss
from reckd.models.contract import HeadSpec, Outputs


@dataclass
class KDConfig:
    """``w_task`` 0.9 / ``w_kd`` 1.0 and ``tau`` 4 as common practice. ``rating_loss``: ``"mse"``
    (to the teacher's rating) or ``"kl"`` (over levels; needs a levels head). ``s``: width of the
    Gaussian view of a scalar teacher, in rating units (used by ``"kl"`` only)."""

    w_task: float = 0.9
    w_kd: float = 1.0
    tau: float = 4.0
    rating_loss: str = "mse"
    s: float = 0.5

    def __post_init__(self) -> None:
        one_of("rating_loss", self.rating_loss, ("mse", "kl"))


def kd_term(config: KDConfig, head: HeadSpec, student: Outputs, teacher: Outputs, levels: Tensor) -> Tensor:
    """The unweighted KD term; ``config`` is any config with ``tau``, ``rating_loss`` and ``s``
    (shared with ``hybrid``)."""
    if head.kind == "rating" and config.rating_loss == "mse":
        return F.mse_loss(student.prediction, teacher.prediction)
    if student.logits is None:
        raise ValueError("kd with rating_loss='kl' needs a student with a levels head (logits over levels)")
    return soft_kl(student.logits, distribution_logits(head, teacher, levels, config.s), config.tau)


@register
class KD(Method):
    """``L = w_task · L_task + w_kd · L_kd``."""

    name = "kd"
    Config = KDConfig

    @classmethod
    def head_for(cls, config: KDConfig) -> str:
        return "levels" if config.rating_loss == "kl" else "any"

    def forward(self, student: Outputs, teacher: Teacher | None, labels: Tensor) -> dict[str, Tensor]:
        c = self.config
        return {
            "task": c.w_task * task_loss(self.head_spec, student, labels),
            "kd": c.w_kd * kd_term(c, self.head_spec, student, teacher.outputs, self.levels),
        }
