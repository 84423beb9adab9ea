"""The README's ML-100K split and teacher, made where missing: shared by the benchmark scripts.

Split: random 80/10/10, seed 0 (`data_prep fetch` — GroupLens, else the PyPI mirror — then prepare and
split). Teacher (README "Teacher architectures", chosen on validation RMSE): `reckd ensemble` of two
`reckd pretrain` teachers — 5 `dcn` starts and 5 `dlrm` starts (pretrain's defaults otherwise) — the mean
of their 10 rankers. A finished teacher of the same options is reused, one of other options is refused
(`pretrain` and `ensemble` name the keys).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from data_prep import api as data_prep
from reckd.data.split import SplitData, load_split


def readme_split(root: Path, device: torch.device | str = "cpu") -> SplitData:
    """``ROOT/split``, made first if missing, loaded onto ``device``."""
    if not (root / "split" / "manifest.json").is_file():
        data_prep.fetch("ml-100k")
        data_prep.prepare("ml-100k")
        data_prep.split("ml-100k", root / "split", seed=0)
    return load_split(root / "split").to(device)


# The README's students' method options (`reckd distill --set …`; the Makefile's DISTILL says the same):
# kd's task weight, chosen on validation (README, Students).
README_STUDENT_SET = ("kd.w_task=0.1",)


def readme_student_options(methods) -> dict[str, dict[str, str]]:
    """The README students' method options (:data:`README_STUDENT_SET`, as ``DistillConfig.options``) when
    kd is among ``methods`` (``kd`` or ``kd+aug``), else none."""
    from reckd.cli.flags import method_options
    from reckd.losses import split_spec

    return method_options(README_STUDENT_SET) if "kd" in {split_spec(m)[0] for m in methods} else {}


def readme_members() -> dict[str, "PretrainConfig"]:
    """The README teacher's members: folder name under ROOT → the `reckd pretrain` options that make it
    (`reckd pretrain SPLIT --out ROOT/teacher-dlrm5 --arch dlrm`)."""
    from reckd.train.teacher import PretrainConfig

    base = PretrainConfig()
    dlrm = dataclasses.replace(base, model=dataclasses.replace(base.model, arch="dlrm"))
    return {"teacher-dcn5": base, "teacher-dlrm5": dlrm}


def readme_teacher(root: Path, data: SplitData) -> Path:
    """``ROOT/teacher-mix``: the members (:func:`readme_members`) pre-trained where missing, then their
    ensemble (`reckd ensemble`), made unless it holds the same one."""
    from reckd.train.teacher import ensemble, pretrain

    members = readme_members()
    for name, config in members.items():
        pretrain(data, root / name, config)
    ensemble(data, [root / name for name in members], root / "teacher-mix")
    return root / "teacher-mix"
