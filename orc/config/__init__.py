"""One settings object, read once per process and passed down.

``registry`` declares every setting (variable, default, parser, meaning), ``parsers`` turns
text into typed values, ``loader`` layers defaults, config files and the environment, and
``settings`` holds the result. Callers import from here.
"""

from orc.config.loader import CONFIG_FILE_NAME, PROJECT_DIR_NAME, find_project_config, load_settings
from orc.config.parsers import format_value, is_loopback, parse_host
from orc.config.registry import METRICS_DIR_ENV, SETTINGS, SETTINGS_BY_NAME, Setting
from orc.config.settings import ConfigError, Settings
from orc.db.url import POSTGRES_URL_OPTIONS, SSL_MODES

__all__ = [
    "CONFIG_FILE_NAME",
    "METRICS_DIR_ENV",
    "POSTGRES_URL_OPTIONS",
    "PROJECT_DIR_NAME",
    "SETTINGS",
    "SETTINGS_BY_NAME",
    "SSL_MODES",
    "ConfigError",
    "Setting",
    "Settings",
    "find_project_config",
    "format_value",
    "is_loopback",
    "load_settings",
    "parse_host",
]
