"""An ensemble of staged rankers that is itself a staged ranker: the members' taps side by side, and
one linear head equal to the mean of the members' heads.

    s_l = [s_l¹ ‖ … ‖ s_lᴷ],   s_h = [upper¹(s_l¹) ‖ … ‖ upperᴷ(s_lᴷ)],
    head(s_h) = Σ_k (W_k s_hᵏ + b_k) / K = [W_1 … W_K]/K · s_h + mean_k b_k

Every member head is linear, so the mean of their outputs is exactly one linear layer over the
concatenated s_h: the prediction is the members' mean rating (the mean of their logits for levels
heads), and every distillation method — Talking Models and MoE-KD included, which run the teacher's
``upper`` and ``head`` on student tensors — sees one teacher of width ``Σ_k dims``.

Example::

    teacher = Ensemble([Ranker(config, features, levels) for _ in range(3)])   # trained members
    out = teacher(batch.sparse_features)    # prediction = mean of the three members' predictions
    teacher.dims                            # Dims(lower=3·257, upper=3·65)
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from torchrec import KeyedJaggedTensor

from reckd.models.contract import Dims, HeadSpec
from reckd.models.ranker import Ranker, RatingHead


class Ensemble(RatingHead):
    """The mean of ``members`` (rankers with one head kind and one rating scale), staged.
    ``head_layer`` is built from the members' heads when the ensemble is made, so make it from
    trained members (or load an ensemble's state dict into one made from untrained ones)."""

    def __init__(self, members: Sequence[Ranker]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        kinds = {(m.config.head, m.rating_levels) for m in members}
        if len(kinds) > 1:
            raise ValueError(f"ensemble members must share the head and the rating levels, found {sorted(kinds)}")
        self.members = nn.ModuleList(members)
        self.config = members[0].config
        self.rating_levels = members[0].rating_levels
        self.register_buffer("levels", members[0].levels.clone())
        self._lower = [m.dims.lower for m in members]
        self._upper = [m.dims.upper for m in members]
        heads = [m.head_layer for m in members]
        self.head_layer = nn.Linear(sum(self._upper), heads[0].out_features, device=heads[0].weight.device)
        with torch.no_grad():
            self.head_layer.weight.copy_(torch.cat([h.weight for h in heads], dim=1) / len(heads))
            self.head_layer.bias.copy_(torch.stack([h.bias for h in heads]).mean(0))

    @property
    def dims(self) -> Dims:
        return Dims(sum(self._lower), sum(self._upper))

    @property
    def head_spec(self) -> HeadSpec:
        return self.members[0].head_spec

    def lower(self, kjt: KeyedJaggedTensor) -> Tensor:
        return torch.cat([m.lower(kjt) for m in self.members], dim=1)

    def upper(self, s_l: Tensor) -> Tensor:
        return torch.cat([m.upper(part) for m, part in zip(self.members, s_l.split(self._lower, dim=1))], dim=1)
