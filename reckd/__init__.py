"""reckd: knowledge distillation for recommender systems, on PyTorch and TorchRec."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("reckd")
except PackageNotFoundError:  # a source tree that was not installed
    __version__ = "unknown"
