"""Stack configuration: models, compatibility tables, validation and sources."""

from cluster.config.load import ConfigError, LoadedConfig, Problem, load_config
from cluster.config.models import PASSWORD_KEYS, ClusterConfig

__all__ = ["PASSWORD_KEYS", "ClusterConfig", "ConfigError", "LoadedConfig", "Problem", "load_config"]
