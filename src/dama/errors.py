"""Errors users can act on: each message names the file (and line) and what to do."""

from __future__ import annotations


class DamaError(Exception):
    """Base class; the CLI prints these without a traceback and exits with status 2."""


class ModelError(DamaError):
    """A model could not be found, fetched, verified or converted."""


class DataError(DamaError):
    """Input data is missing, unreadable or malformed."""


class ChecksumError(ModelError):
    """A downloaded or assembled file does not match its pinned sha256."""
