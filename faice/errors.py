"""The error every layer raises for a problem a user can fix (a leaf module: it imports nothing of faice)."""


class ConfigError(ValueError):
    """A config problem a user can fix; the message names the key."""
