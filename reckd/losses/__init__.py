"""The loss core: every distillation method, registered by name behind one interface.

The model ↔ loss contract (``Dims``, ``HeadSpec``, ``Outputs``) is owned by :mod:`reckd.models` and
re-exported here, so a method is built from one import:

>>> from reckd.losses import get, make_config, Dims, HeadSpec
>>> head = HeadSpec("class", num_classes=10)
>>> method = get("kd")(make_config("kd", {"tau": 2}), Dims(32, 32), Dims(128, 128), head)
"""

from reckd.losses import dist, fitnet, hybrid, kd, moe, none, talking  # noqa: F401  (registers them)
from reckd.losses.base import Method, Teacher, get, make_config, names, register, split_spec
from reckd.models.contract import Dims, HeadSpec, Outputs

__all__ = ["Dims", "HeadSpec", "Method", "Outputs", "Teacher", "get", "make_config", "names", "register", "split_spec"]
