"""Model families: `build_model(cfg)` turns a resolved ModelConfig into a torch module."""

from faice.models.build import build_model
from faice.models.registry import MODELS, count_parameters, load_model

__all__ = ["MODELS", "build_model", "count_parameters", "load_model"]
