"""The project's exceptions: one base, a subclass per concern.

    SuppressorError
     ├── ConfigError      a setting or policy file is invalid (start-up stops; the
     │                    message names the field and the fix)
     ├── InputFileError   a file given on the command line cannot be read
     └── TopicAdminError  (suppressor.adapters.admin) creating or checking topics failed
          ├── BrokerUnavailable
          └── TopicMismatch   an existing topic differs from what is needed

Bad *records* are never exceptions: they become dead-letter records.
Library errors (pydantic, kafka-python, aiokafka) are converted at the boundary.
"""


class SuppressorError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(SuppressorError):
    """Invalid configuration or policy; the message says which field and how to fix it."""


class InputFileError(SuppressorError):
    """An input file (events, catalog, policy) cannot be opened or read."""
