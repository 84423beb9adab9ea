"""``moe`` — MoE-KD ("Rethinking Knowledge Distillation: A Mixture-of-Experts Perspective").

The teacher's prediction becomes a latent k ∈ {1..K}: ``P(y|x) = Σ_k P(y|k,x) · π_k(x)``.
- Gating ``π(x) = softmax(g_T(G(s_h)))``: a frozen copy of the teacher's head ``g_T`` on the student's
  state mapped by a learnable 3-layer bottleneck ``G``. A scalar rating head's output goes through
  the Gaussian view over levels (width ``s``) **[recon]**.
- Experts share the student's head and differ by a bias ``e_k = Ψ(μ_k)``, with the prototype
  ``μ_k = Σ_i P_T(k|x_i) t_h(x_i) / Σ_i P_T(k|x_i)`` computed once in ``prepare`` **[recon: schedule]**.
  The bias acts in the head's output space, ``Wᵀ(s_h + e_k) = z_S + b_k``, with ``b_k = Ψ(μ_k)``
  learned directly (so no access to the student's head weights is needed) **[recon]**.
  Rating heads: Gaussian experts ``N(y; ŷ_S + b_k, σ²)`` (default) or categorical over levels.
- The projector is trained to land in the teacher's space, ``w_align · MSE(G(s_h), t_h) / Var(t_h)``,
  so the frozen head reads it as it reads t_h **[recon]** (``w_align=0`` leaves G to the EM loss alone).
- EM: E-step ``q(k) ∝ P(y|k,x) π_k(x)`` (true label, detached); M-step loss
  ``−Σ_k q(k)[log P(y|k,x) + log π_k(x)]``. Plus the task loss on the student's own head [recon].
- Inference: the marginal ``Σ_k π_k(x) P(y|k,x)`` **[recon]** (``predict="student"`` to switch off);
  it needs ``G``, ``Ψ``, the prototypes and the head copy, never the teacher's backbone.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reckd.losses.base import Method, Teacher, register
from reckd.losses.common import (distribution_logits, head_logits, level_index, one_of, state_variance,
                                 task_loss)
from reckd.models.contract import Dims, HeadSpec, Outputs


@dataclass
class MoEConfig:
    """``w_task``/``w_em``/``w_align``: weights of the student's task loss, the M-step loss and the
    projector's alignment to t_h [recon] (3, picked on the synthetic task of the tests).
    ``bottleneck``: width of G (d_S→b→b→d_T); ``psi_hidden``: hidden width of Ψ. ``s``: Gaussian-view
    width for a scalar teacher (ratings). ``rating_experts``: ``gaussian`` (σ = ``sigma``) or
    ``categorical`` (needs a levels head). Ablations: ``gating`` teacher|uniform|scratch,
    ``prototypes`` soft|hard|scratch, ``posterior`` bayes|teacher. ``predict``: mixture|student."""

    w_task: float = 1.0
    w_em: float = 1.0
    w_align: float = 3.0
    bottleneck: int = 32
    psi_hidden: int = 64
    s: float = 0.5
    rating_experts: str = "gaussian"
    sigma: float = 1.0
    gating: str = "teacher"
    prototypes: str = "soft"
    posterior: str = "bayes"
    predict: str = "mixture"

    def __post_init__(self) -> None:
        one_of("rating_experts", self.rating_experts, ("gaussian", "categorical"))
        one_of("gating", self.gating, ("teacher", "uniform", "scratch"))
        one_of("prototypes", self.prototypes, ("soft", "hard", "scratch"))
        one_of("posterior", self.posterior, ("bayes", "teacher"))
        one_of("predict", self.predict, ("mixture", "student"))


@register
class MoEKD(Method):
    name = "moe"
    Config = MoEConfig
    reads_teacher_states = True

    def __init__(self, config: MoEConfig, student: Dims, teacher: Dims, head: HeadSpec) -> None:
        super().__init__(config, student, teacher, head)
        k, b = head.k, config.bottleneck
        self.gaussian = head.kind == "rating" and config.rating_experts == "gaussian"
        self.project = None if config.gating == "uniform" else nn.Sequential(
            nn.Linear(student.upper, b), nn.ReLU(), nn.Linear(b, b), nn.ReLU(), nn.Linear(b, teacher.upper))  # G
        self.psi = nn.Sequential(nn.Linear(teacher.upper, config.psi_hidden), nn.ReLU(),
                                 nn.Linear(config.psi_hidden, 1 if self.gaussian else k))  # Ψ
        if config.prototypes == "scratch":
            self.prototypes = nn.Parameter(0.1 * torch.randn(k, teacher.upper))
        else:
            self.register_buffer("prototypes", torch.zeros(k, teacher.upper))
        self.register_buffer("t_h_var", torch.ones(()))
        self.gate_head = nn.Linear(teacher.upper, k) if config.gating == "scratch" else None

    @classmethod
    def head_for(cls, config: MoEConfig) -> str:
        return "levels" if config.rating_experts == "categorical" else "any"

    @torch.no_grad()
    def prepare(self, teacher_train: Outputs, teacher_head: nn.Module | None) -> None:
        c, device = self.config, self.prototypes.device
        if c.gating == "teacher":
            if teacher_head is None:
                raise ValueError("moe with gating='teacher' needs the teacher's head in prepare()")
            if isinstance(teacher_head, nn.Module):  # a frozen copy: saved with the method, for inference
                self.gate_head = copy.deepcopy(teacher_head).requires_grad_(False).eval().to(device)
            else:  # a plain callable (e.g. a bound method) is kept as given, not copied
                self.gate_head = teacher_head
        t = teacher_train.to(device)
        self.t_h_var.copy_(state_variance(t.upper))
        if c.prototypes != "scratch":
            p = F.softmax(distribution_logits(self.head_spec, t, self.levels, c.s), dim=1)  # P_T(k|x_i)
            if c.prototypes == "hard":
                p = F.one_hot(p.argmax(dim=1), self.head_spec.k).float()
            self.prototypes.copy_(p.t() @ t.upper / p.sum(dim=0).clamp_min(1e-12)[:, None])  # μ_k

    def train(self, mode: bool = True) -> "MoEKD":
        super().train(mode)
        if self.config.gating == "teacher" and isinstance(self.gate_head, nn.Module):
            self.gate_head.eval()  # the teacher's head stays frozen
        return self

    def log_gates(self, s_h: Tensor) -> Tensor:
        """``log π_k(x)``, ``[B, K]``."""
        k = self.head_spec.k
        if self.config.gating == "uniform":
            return s_h.new_full((s_h.shape[0], k), -math.log(k))
        raw = self.gate_head(self.project(s_h))
        return F.log_softmax(head_logits(self.head_spec, raw, self.levels, self.config.s), dim=1)

    def log_experts(self, student: Outputs) -> Tensor:
        """``b_k = Ψ(μ_k)`` then each expert's ``[B, K, ·]``: Gaussian means ``[B, K]`` or
        log-probabilities over the labels ``[B, K, Y]``."""
        bias = self.psi(self.prototypes)
        if self.gaussian:
            return student.prediction[:, None] + bias[:, 0][None, :]
        return F.log_softmax(student.logits[:, None, :] + bias[None, :, :], dim=2)

    def log_likelihood(self, student: Outputs, labels: Tensor) -> Tensor:
        """``log P(y | k, x)`` for every expert, ``[B, K]``."""
        experts = self.log_experts(student)
        if self.gaussian:
            sigma = self.config.sigma
            return -0.5 * ((labels[:, None] - experts) / sigma) ** 2 - math.log(sigma) - 0.5 * math.log(2 * math.pi)
        y = labels if self.head_spec.kind == "class" else level_index(labels, self.levels)
        return experts.gather(2, y[:, None, None].expand(-1, experts.shape[1], 1)).squeeze(2)

    def posterior(self, joint: Tensor, teacher: Teacher | None) -> Tensor:
        """E-step: ``q(k) ∝ P(y|k,x) π_k(x)`` from ``joint = log P(y|k,x) + log π_k(x)``, detached
        (ablation ``posterior='teacher'``: the teacher's prediction P_T(k|x) instead)."""
        if self.config.posterior == "bayes":
            return F.softmax(joint, dim=1).detach()
        return F.softmax(distribution_logits(self.head_spec, teacher.outputs, self.levels, self.config.s), dim=1)

    def forward(self, student: Outputs, teacher: Teacher | None, labels: Tensor) -> dict[str, Tensor]:
        c, head = self.config, self.head_spec
        joint = self.log_likelihood(student, labels) + self.log_gates(student.upper)
        q = self.posterior(joint, teacher)
        terms = {
            "task": c.w_task * task_loss(head, student, labels),
            "em": c.w_em * -(q * joint).sum(dim=1).mean(),  # M-step: −E_q[complete-data log-lik]
        }
        if self.project is not None and c.w_align > 0:
            terms["align"] = c.w_align * F.mse_loss(self.project(student.upper), teacher.outputs.upper) / self.t_h_var
        return terms

    def predict(self, student: Outputs) -> Tensor:
        """The mixture's marginal: class argmax, or the expected rating."""
        if self.config.predict == "student":
            return student.prediction
        log_pi = self.log_gates(student.upper)
        experts = self.log_experts(student)
        if self.gaussian:
            return (log_pi.exp() * experts).sum(dim=1)
        log_marginal = torch.logsumexp(log_pi[:, :, None] + experts, dim=1)  # [B, Y]
        if self.head_spec.kind == "class":
            return log_marginal.argmax(dim=1)
        return log_marginal.exp() @ self.levels
