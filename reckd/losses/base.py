"""The one interface every distillation method implements, and the name registry.

A method is an ``nn.Module`` (so its trainable extras — regressors, encoders, experts — are
optimised with the student) whose ``forward`` turns the student's and the teacher's staged
outputs into a dict of **named, already weighted** loss terms. The trainer sums them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Callable, ClassVar, Literal, Mapping

import torch
from torch import Tensor, nn

from reckd.errors import OptionError, UnknownName
from reckd.models.contract import Dims, HeadSpec, Outputs


@dataclass
class Teacher:
    """What a method may see of the frozen teacher on one batch.

    ``outputs`` come from the teacher-output cache or a live forward (no grad). ``upper`` and
    ``head`` are the teacher's frozen stages as callables (``requires_grad=False`` parameters, eval
    mode): gradients flow *through* them to the student's tensors, never *into* them.
    """

    outputs: Outputs
    upper: Callable[[Tensor], Tensor] | None = None
    head: Callable[[Tensor], Tensor] | None = None


class Method(nn.Module):
    """Base of every distillation method.

    Subclasses set ``name`` and ``Config`` (a dataclass with documented defaults) and implement
    ``forward``. Class attributes tell the trainer what the method needs:

    - ``needs_teacher``: False only for ``none``.
    - ``needs_live_teacher``: True if the teacher's ``upper``/``head`` must run at every step on
      student-made tensors (Talking Models); otherwise cached teacher outputs suffice.
    - ``reads_teacher_states``: True if the method reads the teacher's higher state t_h
      (``teacher.outputs.upper``, or in ``prepare``); the teacher-output cache then keeps t_h.
    - ``student_head``: ``"levels"`` if the method needs the student to have a rating-distribution
      head on rating tasks (logits over levels); ``"any"`` otherwise.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type] = object
    needs_teacher: ClassVar[bool] = True
    needs_live_teacher: ClassVar[bool] = False
    reads_teacher_states: ClassVar[bool] = False
    student_head: ClassVar[Literal["any", "levels"]] = "any"

    def __init__(self, config, student: Dims, teacher: Dims, head: HeadSpec) -> None:
        super().__init__()
        self.config = config
        self.student_dims = student
        self.teacher_dims = teacher
        self.head_spec = head
        # the rating levels c_k as a tensor that follows the method's device (empty for class heads)
        self.register_buffer("levels", torch.tensor(head.levels, dtype=torch.float32), persistent=False)

    @classmethod
    def head_for(cls, config) -> Literal["any", "levels"]:
        """The student head this *configuration* needs on rating tasks (default: ``student_head``;
        e.g. ``kd`` with ``rating_loss='kl'`` needs a levels head)."""
        return cls.student_head

    def prepare(self, teacher_train: Outputs, teacher_head: nn.Module | None) -> None:
        """Called once before training with the teacher's outputs on the whole training set
        (MoE-KD computes its prototypes here). Default: nothing."""

    def forward(self, student: Outputs, teacher: Teacher | None, labels: Tensor) -> dict[str, Tensor]:
        """Named, weighted loss terms; ``"task"`` is always present. The total is their sum."""
        raise NotImplementedError

    def predict(self, student: Outputs) -> Tensor:
        """Teacher-free inference: the prediction used for validation and test. Default: the
        student's own prediction (MoE-KD overrides it with its mixture)."""
        return student.prediction


_REGISTRY: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make a method available by its ``name``."""
    if not cls.name or cls.name in _REGISTRY:
        raise OptionError(f"method name {cls.name!r} is empty or already registered")
    _REGISTRY[cls.name] = cls
    return cls


def get(name: str) -> type[Method]:
    """The method class registered as ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownName(f"unknown method {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def names() -> list[str]:
    return sorted(_REGISTRY)


def split_spec(spec: str) -> tuple[str, bool]:
    """``"kd+aug"`` -> ``("kd", True)``; ``"kd"`` -> ``("kd", False)``. The ``+aug`` suffix asks
    the trainer for teacher-labelled augmentation on top of the method."""
    name, plus, suffix = spec.strip().partition("+")
    if plus and suffix != "aug":
        raise OptionError(f"method {spec!r}: expected NAME or NAME+aug, found suffix {suffix!r}")
    get(name)  # raises with the known names
    return name, bool(plus)


def make_config(name: str, overrides: Mapping[str, Any] | None = None):
    """The ``Config`` of method ``name`` with ``overrides`` applied (strings from a command line
    are converted to the field's type). Unknown keys and bad values raise naming the key, the
    expected and the found value. ``dataclasses.asdict`` of the result gives the effective values."""
    cls = get(name)
    config_type = cls.Config
    if not is_dataclass(config_type):
        raise TypeError(f"method {name!r}: Config must be a dataclass, found {config_type!r}")
    known = {f.name: f for f in fields(config_type)}
    values = {}
    for key, value in (overrides or {}).items():
        if key not in known:
            raise UnknownName(f"method {name!r}: unknown option {key!r}; known: {', '.join(sorted(known)) or '(none)'}")
        values[key] = _coerce(name, key, value, getattr(config_type(), key))
        _check_range(name, key, values[key])
    return config_type(**values)


WEIGHTS = {"beta", "gamma"}  # besides every ``w_*``: DIST's relation weights


def _check_range(method: str, key: str, value: Any) -> None:
    """Weights (``w_*``, DIST's beta/gamma) are finite and ≥ 0; every other number (temperatures, widths,
    rounds, eps) is finite and > 0: a negative temperature or a NaN weight is a mistake, not a setting."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    where = f"method {method!r} option {key!r}"
    if not math.isfinite(value):
        raise OptionError(f"{where}: expected a finite number, found {value}")
    if (key.startswith("w_") or key in WEIGHTS) and value < 0:
        raise OptionError(f"{where}: expected a weight ≥ 0, found {value}")
    if not (key.startswith("w_") or key in WEIGHTS) and value <= 0:
        raise OptionError(f"{where}: expected a value > 0, found {value}")


def _coerce(method: str, key: str, value: Any, default: Any) -> Any:
    """``value`` converted to the type of the field's ``default`` (bool, int, float or str)."""
    where = f"method {method!r} option {key!r}"
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
        raise OptionError(f"{where}: expected a boolean (true/false), found {value!r}")
    try:
        if isinstance(default, int):
            number = float(value)
            if isinstance(value, bool) or number != int(number):
                raise ValueError
            return int(number)
        if isinstance(default, float):
            if isinstance(value, bool):
                raise ValueError
            return float(value)
    except (TypeError, ValueError):
        raise OptionError(f"{where}: expected {type(default).__name__}, found {value!r}") from None
    if isinstance(default, str) and not isinstance(value, str):
        raise OptionError(f"{where}: expected str, found {value!r}")
    return value
