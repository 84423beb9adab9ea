"""Staged models (``lower`` → s_l, ``upper`` → s_h, ``head``) and their contract with the losses.

>>> from reckd.models import Dims, HeadSpec, ImageClassifier, ImageConfig
>>> model = ImageClassifier(ImageConfig.student(num_classes=3))
>>> model.dims, model.head_spec
(Dims(lower=32, upper=32), HeadSpec(kind='class', levels=(), num_classes=3))
"""

from reckd.models.contract import Dims, HeadSpec, Outputs
from reckd.models.ensemble import Ensemble
from reckd.models.image import ClassSubset, ImageClassifier, ImageConfig, TaskView
from reckd.models.ranker import ARCHS, Ranker, RankerConfig, count_parameters

__all__ = ["ARCHS", "ClassSubset", "Dims", "Ensemble", "HeadSpec", "ImageClassifier", "ImageConfig", "Outputs",
           "Ranker", "RankerConfig", "TaskView", "count_parameters"]
