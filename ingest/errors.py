"""The error hierarchy: one root, one subclass per failure a user can act on."""

from __future__ import annotations


class TiretrackError(Exception):
    """Root of every error Tiretrack raises on purpose; its message is one line for the user."""


class ConfigError(TiretrackError):
    """A setting, CLI option or properties file is wrong."""


class BrokerError(TiretrackError):
    """The Kafka broker cannot be reached, started or used."""


class DatabaseError(TiretrackError):
    """The DuckDB database cannot be opened, migrated or written."""


class DatabaseInUseError(DatabaseError):
    """Another process holds the database file's write lock."""


class ReaderError(TiretrackError):
    """The live database cannot be read (worker not serving and file unavailable)."""


class ExportError(TiretrackError):
    """An export cannot be written."""


class ReferenceDataError(TiretrackError):
    """A reference data file in data/ is missing or malformed."""
