"""``dist`` (Huang et al., NeurIPS 2022): match relations, not values, with Pearson correlation.

``Y_S = softmax(z_S/τ)``, ``Y_T = softmax(z_T/τ)`` over a batch ``[B, K]``;
``inter = 1 − mean_i ρ(Y_S[i,:], Y_T[i,:])`` (per example, across classes),
``intra = 1 − mean_j ρ(Y_S[:,j], Y_T[:,j])`` (per class, across the batch),
``L_dist = τ² (β · inter + γ · intra)``.

Rating heads use the student's levels head (K = rating levels) against the teacher's distribution
(its levels logits, or the Gaussian view of its scalar with width ``s``). Pearson ignores shift and
scale, so an absolute term ``w_match · MSE(ŷ_S, ŷ_T)`` is kept on rating heads **[recon]**
(default ``w_match=1``; 0 switches it off).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from reckd.losses.base import Method, Teacher, register
from reckd.losses.common import distribution_logits, pearson, task_loss
from reckd.models.contract import Outputs


@dataclass
class DISTConfig:
    """Authors' defaults ``beta = gamma = 2``, task weight 1, ``tau = 1`` (ImageNet; 4 on
    CIFAR-100). ``eps`` is added to the product of norms in Pearson. ``s``: Gaussian-view width of
    a scalar teacher (rating units). ``w_match``: the absolute term on rating heads [recon]."""

    w_task: float = 1.0
    beta: float = 2.0
    gamma: float = 2.0
    tau: float = 1.0
    eps: float = 1e-8
    s: float = 0.5
    w_match: float = 1.0


@register
class DIST(Method):
    """``L = w_task · L_task + τ²β · inter + τ²γ · intra (+ w_match · MSE(ŷ_S, ŷ_T) on ratings)``."""

    name = "dist"
    Config = DISTConfig
    student_head = "levels"

    def forward(self, student: Outputs, teacher: Teacher | None, labels: Tensor) -> dict[str, Tensor]:
        c, head = self.config, self.head_spec
        if student.logits is None:
            raise ValueError("dist needs student logits: a class head or a rating levels head")
        y_s = F.softmax(student.logits / c.tau, dim=1)
        y_t = F.softmax(distribution_logits(head, teacher.outputs, self.levels, c.s) / c.tau, dim=1)
        inter = 1.0 - pearson(y_s, y_t, c.eps).mean()
        intra = 1.0 - pearson(y_s.t(), y_t.t(), c.eps).mean()
        terms = {
            "task": c.w_task * task_loss(head, student, labels),
            "inter": c.tau**2 * c.beta * inter,
            "intra": c.tau**2 * c.gamma * intra,
        }
        if head.kind == "rating":
            terms["match"] = c.w_match * F.mse_loss(student.prediction, teacher.outputs.prediction)
        return terms
