"""``talking`` — Talking Models (Zhao et al. 2023): the student asks, the teacher interprets with its
own frozen upper block and answers, through a shared message space of width m.

    m_S  = Enc_S(s_l)      t̃_l = Dec_T(m_S)      t̃_h = upper_T(t̃_l)
    m_T  = Enc_T(t̃_h)     s̃_h = Dec_S(m_T)      m_T* = Enc_T(t_h)

``L_interact = d(s_h, s̃_h)``, ``L_MC = d(m_S, m_T*)``, ``L_SC = d(Dec_T(m_S), t_l) + d(Dec_S(m_T*), s_h)``,
d = MSE; ``L = w_task L_task + w1 L_interact + w2 L_MC + w3 L_SC`` with w1 = 1, w2 = w3 = 0.1 **[recon]**.
Messages are layer-normalised (no affine) so their scale cannot collapse **[recon]**. With N rounds
the answer is decoded into the student's lower space by a fifth module ``Dec_S→l`` and re-sent;
``L_interact`` is averaged over rounds **[recon]**. With ``normalize`` (default) the distance to
the teacher's t_l is divided by t_l's mean per-feature variance over the training set (from
``prepare``), so the weights do not depend on the teacher's scale **[recon]**. ``interact=False`` is the paper's "no interaction"
ablation (only L_MC + L_SC). Inference: the student alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reckd.losses.base import Method, Teacher, register
from reckd.losses.common import block, one_of, state_variance, task_loss
from reckd.models.contract import Dims, HeadSpec, Outputs


@dataclass
class TalkingConfig:
    """Weights ``w_interact`` (w1), ``w_mc`` (w2), ``w_sc`` (w3) [recon]; ``message``: width m of the
    message space; ``module``: ``linear`` or ``mlp`` (Dense-ReLU-Dense with ``hidden`` units) for the
    encoders and decoders; ``rounds`` N ≥ 1; ``interact``: False for the "no interaction" ablation;
    ``norm_messages``: layer-normalise messages [recon]; ``normalize``: the distance to t_l in
    units of its variance [recon]."""

    w_task: float = 1.0
    w_interact: float = 1.0
    w_mc: float = 0.1
    w_sc: float = 0.1
    message: int = 64
    module: str = "mlp"
    hidden: int = 64
    rounds: int = 1
    interact: bool = True
    norm_messages: bool = True
    normalize: bool = True

    def __post_init__(self) -> None:
        one_of("module", self.module, ("linear", "mlp"))
        if self.rounds < 1 or self.message < 1:
            raise ValueError(f"talking: expected rounds >= 1 and message >= 1, found {self.rounds}, {self.message}")


@register
class TalkingModels(Method):
    name = "talking"
    Config = TalkingConfig
    needs_live_teacher = True

    def __init__(self, config: TalkingConfig, student: Dims, teacher: Dims, head: HeadSpec) -> None:
        super().__init__(config, student, teacher, head)
        m, kind, h = config.message, config.module, config.hidden

        def encoder(d_in: int) -> nn.Module:
            norm = nn.LayerNorm(m, elementwise_affine=False) if config.norm_messages else nn.Identity()
            return nn.Sequential(block(kind, d_in, m, h), norm)

        self.enc_s, self.dec_s = encoder(student.lower), block(kind, m, student.upper, h)
        self.enc_t, self.dec_t = encoder(teacher.upper), block(kind, m, teacher.lower, h)
        self.dec_s_lower = block(kind, m, student.lower, h) if config.rounds > 1 else None
        self.register_buffer("t_l_var", torch.ones(()))

    @torch.no_grad()
    def prepare(self, teacher_train: Outputs, teacher_head: nn.Module | None) -> None:
        if self.config.normalize:
            self.t_l_var.copy_(state_variance(teacher_train.lower))

    def forward(self, student: Outputs, teacher: Teacher | None, labels: Tensor) -> dict[str, Tensor]:
        c = self.config
        s_l, s_h, t_l, t_h = student.lower, student.upper, teacher.outputs.lower, teacher.outputs.upper
        m_s, m_t_star = self.enc_s(s_l), self.enc_t(t_h)
        terms = {
            "task": c.w_task * task_loss(self.head_spec, student, labels),
            "mc": c.w_mc * F.mse_loss(m_s, m_t_star),
            "sc": c.w_sc * (F.mse_loss(self.dec_t(m_s), t_l) / self.t_l_var + F.mse_loss(self.dec_s(m_t_star), s_h)),
        }
        if c.interact:
            if teacher.upper is None:
                raise ValueError("talking with interact=True needs the teacher's frozen upper block")
            question, interact = m_s, 0.0
            for r in range(c.rounds):
                answer = self.enc_t(teacher.upper(self.dec_t(question)))  # m_T = Enc_T(upper_T(Dec_T(m_S)))
                interact = interact + F.mse_loss(s_h, self.dec_s(answer))  # d(s_h, s̃_h)
                if r + 1 < c.rounds:
                    question = self.enc_s(self.dec_s_lower(answer))  # re-sent from the student's lower space
            terms["interact"] = c.w_interact * interact / c.rounds
        return terms
