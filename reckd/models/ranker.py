"""Rating rankers: a torchrec ``EmbeddingBagCollection`` feeding an MLP tower, in three stages.

    KJT ─ EBC ─ [pooled embeddings ‖ user⊙item] ─ lower ─ s_l ─ upper ─ s_h ─ head ─ rating

The user⊙item product gives the tower the matrix-factorisation interaction directly (as in NCF's
GMF branch), which an MLP on concatenated embeddings learns only slowly.

Example::

    ranker = Ranker(RankerConfig.student(), features, levels=(1, 2, 3, 4, 5))
    out = ranker(batch.sparse_features)   # Outputs(prediction, lower, upper, logits)
    ranker.dims, ranker.head_spec         # Dims(lower=64, upper=32), HeadSpec('rating', (1.0, …, 5.0))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import torch
from torch import Tensor, nn
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, KeyedJaggedTensor, PoolingType

from reckd.models.contract import Dims, HeadSpec, Outputs


@dataclass
class RankerConfig:
    """Sizes of a ranker. ``hidden[0]`` is the lower block's width (s_l), ``hidden[-1]`` the last
    hidden layer (s_h). ``head='levels'`` gives a rating-distribution head (logits over levels)."""

    embedding_dim: int = 16
    hidden: tuple[int, ...] = (64, 32)
    head: Literal["scalar", "levels"] = "scalar"
    dropout: float = 0.0
    input_dropout: float = 0.0

    @classmethod
    def teacher(cls) -> "RankerConfig":
        return cls(embedding_dim=64, hidden=(256, 128, 64), dropout=0.1, input_dropout=0.5)

    @classmethod
    def student(cls) -> "RankerConfig":
        return cls(embedding_dim=16, hidden=(64, 32))


def _block(sizes: Sequence[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for d_in, d_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(d_in, d_out), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class Ranker(nn.Module):
    """A staged rating model over the sparse features ``features`` (name, cardinality) pairs.

    ``lower(kjt) -> s_l``, ``upper(s_l) -> s_h``, ``head(s_h) -> rating [B]`` (scalar head) or
    logits ``[B, K]`` (levels head); ``forward(kjt)`` runs all three and returns ``Outputs``.
    """

    def __init__(self, config: RankerConfig, features: Sequence[tuple[str, int]],
                 levels: Sequence[float], device: torch.device | str | None = None) -> None:
        super().__init__()
        self.config = config
        self.feature_names = [name for name, _ in features]
        d = config.embedding_dim
        self.ebc = EmbeddingBagCollection(
            tables=[EmbeddingBagConfig(name=f"t_{name}", embedding_dim=d, num_embeddings=max(card, 1),
                                       feature_names=[name], pooling=PoolingType.MEAN)
                    for name, card in features],
            device=torch.device(device) if device is not None else None,
        )
        width = d * (len(features) + 1)
        self.input_dropout = nn.Dropout(config.input_dropout)
        self.lower_block = _block([width, config.hidden[0]], config.dropout)
        self.upper_block = _block(config.hidden, config.dropout) if len(config.hidden) > 1 else nn.Identity()
        self.rating_levels = tuple(float(v) for v in levels)
        self.register_buffer("levels", torch.tensor(self.rating_levels, dtype=torch.float32))
        out = len(levels) if config.head == "levels" else 1
        self.head_layer = nn.Linear(config.hidden[-1], out)
        with torch.no_grad():  # start at the middle of the scale
            self.head_layer.bias.fill_(0.0 if config.head == "levels" else float(self.levels.mean()))
        if device is not None:
            self.to(device)

    @property
    def dims(self) -> Dims:
        """Widths of s_l and s_h."""
        return Dims(self.config.hidden[0], self.config.hidden[-1])

    @property
    def head_spec(self) -> HeadSpec:
        """A rating head over the rating levels (scalar or levels head alike)."""
        return HeadSpec("rating", self.rating_levels)

    def lower(self, kjt: KeyedJaggedTensor) -> Tensor:
        pooled = self.ebc(kjt)
        user, item = pooled["user"], pooled["item"]
        return self.lower_block(self.input_dropout(torch.cat([pooled.values(), user * item], dim=1)))

    def upper(self, s_l: Tensor) -> Tensor:
        return self.upper_block(s_l)

    def head(self, s_h: Tensor) -> Tensor:
        out = self.head_layer(s_h)
        return out if self.config.head == "levels" else out.squeeze(1)

    def forward(self, kjt: KeyedJaggedTensor) -> Outputs:
        s_l = self.lower(kjt)
        s_h = self.upper(s_l)
        out = self.head(s_h)
        if self.config.head == "levels":
            return Outputs(torch.softmax(out, dim=1) @ self.levels, s_l, s_h, out)
        return Outputs(out, s_l, s_h, None)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
