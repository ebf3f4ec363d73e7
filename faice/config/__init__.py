"""Typed experiment configs: dataclasses with a documented field each, YAML loading, dotted overrides.

Every error names the dotted key and, where there is a fixed set, the valid choices (`ConfigError`).
"""

from faice.config.checks import resolve, validate
from faice.config.files import (
    dump_yaml,
    flatten,
    parse_overrides,
    read_mapping,
    read_tree,
    read_yaml,
    save_config,
    to_dict,
)
from faice.config.load import from_dict, from_tree, load_config
from faice.config.schema import (
    CONFIG_DIR,
    AutoencoderConfig,
    Config,
    ConsistencyConfig,
    DataConfig,
    DiffusionConfig,
    EvalConfig,
    LatentConfig,
    LogConfig,
    ModelConfig,
    SampleConfig,
    TextConfig,
    TrainConfig,
    opt,
)
from faice.config.values import _coerce, _type_name, describe
from faice.errors import ConfigError

__all__ = [
    "ConfigError",
    "AutoencoderConfig",
    "CONFIG_DIR",
    "Config",
    "ConsistencyConfig",
    "DataConfig",
    "DiffusionConfig",
    "EvalConfig",
    "LatentConfig",
    "LogConfig",
    "ModelConfig",
    "SampleConfig",
    "TextConfig",
    "TrainConfig",
    "_coerce",
    "_type_name",
    "describe",
    "dump_yaml",
    "flatten",
    "from_dict",
    "from_tree",
    "load_config",
    "opt",
    "parse_overrides",
    "read_mapping",
    "read_tree",
    "read_yaml",
    "resolve",
    "save_config",
    "to_dict",
    "validate",
]
