"""The one place for what several methods share: the task loss per head kind, the Gaussian
view of a scalar rating, the temperature KL, Pearson, and the small Linear / Dense-ReLU-Dense blocks.
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from reckd.models.contract import HeadSpec, Outputs

Kind = Literal["linear", "mlp"]


def one_of(key: str, value: str, choices: tuple[str, ...]) -> None:
    """Config check: ``value`` must be one of ``choices`` (the error names the option)."""
    if value not in choices:
        raise ValueError(f"option {key!r}: expected one of {', '.join(choices)}, found {value!r}")


def task_loss(head: HeadSpec, student: Outputs, labels: Tensor) -> Tensor:
    """Rating head: MSE of the (expected) rating. Class head: cross-entropy of the logits."""
    if head.kind == "rating":
        return F.mse_loss(student.prediction, labels)
    return F.cross_entropy(student.logits, labels)


def gaussian_logits(rating: Tensor, levels: Tensor, s: float) -> Tensor:
    """Log of the Gaussian view of a scalar rating over the levels, up to a constant:
    ``q(k) ∝ exp(-(c_k - ŷ)² / 2s²)`` (METHODS.md); softmax of the result is the distribution."""
    return -((levels - rating.reshape(-1, 1)) ** 2) / (2.0 * s * s)


def distribution_logits(head: HeadSpec, out: Outputs, levels: Tensor, s: float) -> Tensor:
    """``[B, K]`` logits of a model's distribution over classes or rating levels: its own logits,
    or for a scalar rating head the Gaussian view of its prediction with width ``s``."""
    if out.logits is not None:
        return out.logits
    if head.kind == "class":
        raise ValueError("class head: the teacher's outputs carry no logits")
    return gaussian_logits(out.prediction, levels, s)


def head_logits(head: HeadSpec, raw: Tensor, levels: Tensor, s: float) -> Tensor:
    """``[B, K]`` logits from the output of a (frozen) head: class logits as they are, a scalar
    rating ``[B]`` or ``[B, 1]`` through the Gaussian view (a ``[B, K]`` levels head as it is)."""
    if head.kind == "rating" and (raw.dim() == 1 or raw.shape[-1] == 1):
        return gaussian_logits(raw.reshape(-1), levels, s)
    return raw


def soft_kl(student_logits: Tensor, teacher_logits: Tensor, tau: float) -> Tensor:
    """Hinton et al.: ``τ² · KL(softmax(z_T/τ) ‖ softmax(z_S/τ))``, averaged over the batch."""
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"KD needs logits of one shape: student {tuple(student_logits.shape)}, "
                         f"teacher {tuple(teacher_logits.shape)}")
    log_p_s = F.log_softmax(student_logits / tau, dim=1)
    log_p_t = F.log_softmax(teacher_logits / tau, dim=1)
    return tau * tau * F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)


def teacher_label_loss(head: HeadSpec, student: Outputs, teacher: Outputs) -> Tensor:
    """Teacher-labelled augmentation on unlabelled inputs: ``MSE(ŷ_S, ŷ_T)`` for ratings, the
    KL to the teacher's class distribution (τ = 1) for classes."""
    if head.kind == "rating":
        return F.mse_loss(student.prediction, teacher.prediction)
    return soft_kl(student.logits, teacher.logits, tau=1.0)


def pearson(a: Tensor, b: Tensor, eps: float = 1e-8) -> Tensor:
    """Row-wise Pearson correlation of ``[N, D]`` tensors: the cosine of the row-centred vectors,
    with ``eps`` added to the product of the norms (DIST)."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def state_variance(states: Tensor) -> Tensor:
    """Mean per-feature variance of a tap over rows (a scalar, at least 1e-8): the unit in which
    hidden-state MSEs are measured when a method's ``normalize`` option is on [recon], so one
    weight suits models whose hidden states have any scale."""
    return states.detach().float().var(dim=0, unbiased=False).mean().clamp_min(1e-8)


def block(kind: Kind, d_in: int, d_out: int, hidden: int) -> nn.Module:
    """``linear``: one Linear. ``mlp``: Dense-ReLU-Dense with ``hidden`` units."""
    one_of("module", kind, ("linear", "mlp"))
    if kind == "linear":
        return nn.Linear(d_in, d_out)
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, d_out))


def level_index(labels: Tensor, levels: Tensor) -> Tensor:
    """The index of the rating level nearest to each (float) rating label."""
    return (labels.reshape(-1, 1) - levels).abs().argmin(dim=1)
