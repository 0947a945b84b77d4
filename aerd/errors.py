"""The one exception type that reaches the user as a single line."""


class AerdError(Exception):
    """A user-facing error: printed as one line naming the thing at fault; exit non-zero."""


class ConfigError(AerdError):
    """A bad option or config field; the message names the field."""


class ModelError(AerdError):
    """A missing, corrupt or mismatched model bundle."""


class AudioError(AerdError):
    """An unreadable, empty or too short audio input, or an unusable device."""
