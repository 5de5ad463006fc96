"""Exceptions with messages that name the culprit (a config key, a file, a run)."""


class SecretMoeError(Exception):
    """Base class: bad input detected before expensive work, or a failed run."""


class ConfigError(SecretMoeError):
    pass


class CorpusError(SecretMoeError):
    pass


class ModelSourceError(SecretMoeError):
    pass


class StoreMismatchError(SecretMoeError):
    pass


class NonFiniteLossError(SecretMoeError):
    pass


class ScanArgumentError(SecretMoeError):
    """A command-line argument of `secret-moe scan` that cannot work, found before anything runs."""


class StoreDamagedError(SecretMoeError):
    """A finished store whose chunks differ from what was written (missing, truncated, other bytes): the message
    names the store, the array, the chunk and the command that rebuilds it (store_check.py)."""


class CacheError(SecretMoeError):
    """A cache folder or file that is not private to this user (another owner, or others may write to it)."""
