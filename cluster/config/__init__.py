"""Stack configuration: models, compatibility tables, validation and sources."""

from cluster.config.load import ConfigError, LoadedConfig, Problem, load_config
from cluster.config.models import ClusterConfig
from cluster.secrets import PASSWORD_KEYS

__all__ = ["PASSWORD_KEYS", "ClusterConfig", "ConfigError", "LoadedConfig", "Problem", "load_config"]
