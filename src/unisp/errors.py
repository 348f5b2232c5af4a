"""Errors that the CLI turns into one clear line and exit status 2."""

from __future__ import annotations


class UnispError(Exception):
    """Base class for every error a user can cause (bad file, bad flag, bad config)."""


class RawFormatError(UnispError):
    """A RAW file that cannot be read or whose contents do not make sense."""


class ConfigError(UnispError):
    """A configuration value that is missing, of the wrong type or out of range."""


class OutputError(UnispError):
    """An output that cannot be written (unwritable folder, disk full)."""
