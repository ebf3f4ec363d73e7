"""Model families: `build_model(cfg)` turns a resolved ModelConfig into a torch module.

The names below are imported on first use (PEP 562): `faice.models.presets` is plain data that config
checks read in processes that never build a model (a search's trial actors, `faice --help`), and importing
it must not load torch and diffusers through this package."""

from __future__ import annotations

__all__ = ["MODELS", "build_model", "count_parameters", "load_model"]


def __getattr__(name: str):
    """`build_model` from faice.models.build (which imports, so registers, every family); the registry's
    names from faice.models.registry."""
    if name not in __all__:
        raise AttributeError(f"module 'faice.models' has no attribute {name!r}")
    from faice.models import build, registry

    return getattr(build if name == "build_model" else registry, name)
