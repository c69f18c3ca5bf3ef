"""orc: a server for orchestrating AI coding tasks."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("orc")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
