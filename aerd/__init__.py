"""aerd: the audio emotion recognition daemon."""

__version__ = "0.1.0"
