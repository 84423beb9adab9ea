"""Rating rankers: a torchrec ``EmbeddingBagCollection`` feeding an interaction and an MLP tower, in
three stages, with an optional *wide* channel that rides along the taps to the head:

    KJT ─ EBC ─ interaction ─ lower ─ s_l ─ upper ─ s_h ─ head ─ rating
                     └── wide: b_u + b_i (+ FM) ──┴───────┘   (the last column of s_l and s_h)

The interaction is the architecture (``arch``), each built from torchrec's own modules:

- ``mlp``: the pooled embeddings ‖ user⊙item (NCF's GMF branch beside the MLP);
- ``dlrm``: torchrec's DLRM ``InteractionArch`` — every pairwise dot product of the feature
  embeddings — ‖ the embeddings (there are no dense features: the user embedding takes the dense slot);
- ``dcn``: torchrec's ``LowRankCrossNet`` (DCN-v2) over the concatenated embeddings;
- ``deepfm``: the embeddings feed the deep tower and torchrec's ``FactorizationMachine`` adds the
  second-order term Σ_{f<g} ⟨e_f, e_g⟩ to the wide channel.

``bias=True`` adds user and item bias terms (a second EBC of width-1 tables) to the wide channel. The
wide channel is one more column of s_l and s_h, so every method that reads or runs the taps — and a
teacher and student of different architectures — works unchanged.

Example::

    ranker = Ranker(RankerConfig(arch="dcn", bias=True), features, levels=(1, 2, 3, 4, 5))
    out = ranker(batch.sparse_features)   # Outputs(prediction, lower, upper, logits)
    ranker.dims, ranker.head_spec         # Dims(lower=65, upper=33), HeadSpec('rating', (1.0, …, 5.0))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import torch
from torch import Tensor, nn
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, KeyedJaggedTensor, PoolingType
from torchrec.models.dlrm import InteractionArch
from torchrec.modules.crossnet import LowRankCrossNet
from torchrec.modules.deepfm import FactorizationMachine

from reckd.errors import OptionError
from reckd.models.contract import Dims, HeadSpec, Outputs

ARCHS = ("mlp", "dlrm", "dcn", "deepfm")


@dataclass
class RankerConfig:
    """Sizes of a ranker. ``hidden[0]`` is the lower block's width, ``hidden[-1]`` the last hidden
    layer's (s_l and s_h are one column wider when the model has a wide channel: ``bias`` or
    ``deepfm``). ``head='levels'`` gives a rating-distribution head (logits over levels).
    ``cross_layers``: DCN's cross layers (``dcn`` only)."""

    embedding_dim: int = 16
    hidden: tuple[int, ...] = (64, 32)
    head: Literal["scalar", "levels"] = "scalar"
    dropout: float = 0.0
    input_dropout: float = 0.0
    arch: str = "mlp"
    bias: bool = False
    cross_layers: int = 2

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        if self.arch not in ARCHS:
            raise OptionError(f"arch (--arch): expected one of {', '.join(ARCHS)}, found {self.arch!r}")
        if self.head not in ("scalar", "levels"):
            raise OptionError(f"head: expected 'scalar' or 'levels', found {self.head!r}")
        sizes = {"embedding_dim (--embedding-dim)": self.embedding_dim, "cross_layers": self.cross_layers,
                 **{f"hidden[{k}] (--hidden)": h for k, h in enumerate(self.hidden)}}
        for name, value in sizes.items():
            if int(value) != value or value < 1:
                raise OptionError(f"{name}: expected a whole number ≥ 1, found {value}")
        if not self.hidden:
            raise OptionError("hidden (--hidden): expected at least one layer width, found none")
        for name in ("dropout (--dropout)", "input_dropout"):
            value = getattr(self, name.split()[0])
            if not 0 <= value < 1:
                raise OptionError(f"{name}: expected a probability in [0, 1), found {value}")

    @property
    def wide(self) -> bool:
        """Whether the model has a wide channel (a last column of s_l and s_h)."""
        return self.bias or self.arch == "deepfm"

    @classmethod
    def teacher(cls) -> "RankerConfig":
        """Chosen on ML-100K validation RMSE (README, Teacher architectures)."""
        return cls(arch="dcn", embedding_dim=64, hidden=(256, 128, 64), dropout=0.3, input_dropout=0.5, bias=True)

    @classmethod
    def student(cls) -> "RankerConfig":
        """Chosen on ML-100K validation RMSE with `kd+aug` (README, Students: `benchmarks/student_size.py`):
        a `dcn` + bias student, embedding 48, MLP 256-128 — 364,851 parameters there, 8.4% of the README
        teacher (the mean of 10 rankers)."""
        return cls(arch="dcn", embedding_dim=48, hidden=(256, 128), bias=True)


def _block(sizes: Sequence[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for d_in, d_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(d_in, d_out), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class RatingHead(nn.Module):
    """What every staged rating model shares: ``head`` (``head_layer`` on s_h; a rating, or logits over
    the levels) and ``forward`` (lower → upper → head → ``Outputs``). Subclasses set ``config.head``,
    ``head_layer`` and the ``levels`` buffer, and define ``lower`` and ``upper``."""

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


class Ranker(RatingHead):
    """A staged rating model over the sparse features ``features`` (name, cardinality) pairs.

    ``lower(kjt) -> s_l``, ``upper(s_l) -> s_h``, ``head(s_h) -> rating [B]`` (scalar head) or
    logits ``[B, K]`` (levels head); ``forward(kjt)`` runs all three and returns ``Outputs``.
    """

    def __init__(self, config: RankerConfig, features: Sequence[tuple[str, int]],
                 levels: Sequence[float], device: torch.device | str | None = None) -> None:
        super().__init__()
        self.config = config
        self.feature_names = [name for name, _ in features]
        if "user" not in self.feature_names or "item" not in self.feature_names:
            raise OptionError(f"features: a ranker needs 'user' and 'item', found {', '.join(self.feature_names)}")
        d, n = config.embedding_dim, len(features)
        on = torch.device(device) if device is not None else None
        self.ebc = EmbeddingBagCollection(
            tables=[EmbeddingBagConfig(name=f"t_{name}", embedding_dim=d, num_embeddings=max(card, 1),
                                       feature_names=[name], pooling=PoolingType.MEAN)
                    for name, card in features],
            device=on,
        )
        cards = dict(features)
        self.bias_ebc = EmbeddingBagCollection(
            tables=[EmbeddingBagConfig(name=f"b_{name}", embedding_dim=1, num_embeddings=max(cards[name], 1),
                                       feature_names=[name], pooling=PoolingType.SUM, init_fn=nn.init.zeros_)
                    for name in ("user", "item")],
            device=on,
        ) if config.bias else None
        if config.arch == "dlrm":
            self.interaction: nn.Module | None = InteractionArch(num_sparse_features=n - 1)
            width = d * n + n * (n - 1) // 2
        elif config.arch == "dcn":
            self.interaction = LowRankCrossNet(in_features=d * n, num_layers=config.cross_layers,
                                               low_rank=max(1, d * n // 4))
            width = d * n
        elif config.arch == "deepfm":
            self.interaction = FactorizationMachine()
            width = d * n
        else:
            self.interaction = None
            width = d * (n + 1)
        self.input_dropout = nn.Dropout(config.input_dropout)
        self.lower_block = _block([width, config.hidden[0]], config.dropout)
        self.upper_block = _block(config.hidden, config.dropout) if len(config.hidden) > 1 else nn.Identity()
        self.rating_levels = tuple(float(v) for v in levels)
        self.register_buffer("levels", torch.tensor(self.rating_levels, dtype=torch.float32))
        out = len(levels) if config.head == "levels" else 1
        self.head_layer = nn.Linear(config.hidden[-1] + config.wide, out)
        with torch.no_grad():  # start at the middle of the scale, the wide channel added as it is
            self.head_layer.bias.fill_(0.0 if config.head == "levels" else float(self.levels.mean()))
            if config.wide and config.head == "scalar":
                self.head_layer.weight[:, -1] = 1.0
        if device is not None:
            self.to(device)

    @property
    def dims(self) -> Dims:
        """Widths of s_l and s_h (the wide channel included)."""
        return Dims(self.config.hidden[0] + self.config.wide, self.config.hidden[-1] + self.config.wide)

    @property
    def head_spec(self) -> HeadSpec:
        """A rating head over the rating levels (scalar or levels head alike)."""
        return HeadSpec("rating", self.rating_levels)

    def lower(self, kjt: KeyedJaggedTensor) -> Tensor:
        pooled = self.ebc(kjt)
        # in the model's feature order: a sharded EBC (DistributedModelParallel) groups its keys by shard
        embeddings = (pooled.values() if pooled.keys() == self.feature_names
                      else torch.cat([pooled[name] for name in self.feature_names], dim=1))
        arch = self.config.arch
        if arch == "mlp":
            x = torch.cat([embeddings, pooled["user"] * pooled["item"]], dim=1)
        elif arch == "dlrm":  # the user embedding in the dense slot, the other features as the sparse ones
            stacked = embeddings.view(embeddings.shape[0], -1, self.config.embedding_dim)
            user = self.feature_names.index("user")
            others = torch.cat([stacked[:, :user], stacked[:, user + 1:]], dim=1)
            x = torch.cat([self.interaction(stacked[:, user], others), others.flatten(1)], dim=1)
        elif arch == "dcn":
            x = self.interaction(embeddings)
        else:
            x = embeddings
        s_l = self.lower_block(self.input_dropout(x))
        if not self.config.wide:
            return s_l
        wide = torch.zeros(s_l.shape[0], 1, device=s_l.device, dtype=s_l.dtype)
        if self.bias_ebc is not None:
            wide = wide + self.bias(kjt)
        if arch == "deepfm":  # Σ_{f<g} ⟨e_f, e_g⟩: torchrec's FM pairs scalars, so one row per (sample, dimension)
            per_dim = embeddings.view(embeddings.shape[0], -1, self.config.embedding_dim).transpose(1, 2)
            wide = wide + self.interaction([per_dim.reshape(-1, per_dim.shape[2])]).view(s_l.shape[0], -1).sum(
                dim=1, keepdim=True)
        return torch.cat([s_l, wide], dim=1)

    def bias(self, kjt: KeyedJaggedTensor) -> Tensor:
        """``b_u + b_i`` [B, 1]: the rows of the bias tables at the batch's user and item ids (one of each per
        sample), read straight from the KJT's values rather than by a second pass over all its features."""
        ids, at, keys = kjt.values(), kjt.offset_per_key(), kjt.keys()
        tables = self.bias_ebc.embedding_bags
        return sum(tables[f"b_{name}"].weight[ids[at[k]:at[k + 1]]]
                   for name, k in (("user", keys.index("user")), ("item", keys.index("item"))))

    def upper(self, s_l: Tensor) -> Tensor:
        if not self.config.wide:
            return self.upper_block(s_l)
        return torch.cat([self.upper_block(s_l[:, :-1]), s_l[:, -1:]], dim=1)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
