"""aerd: the audio emotion recognition daemon."""

import os

__version__ = "0.1.0"

# onnxruntime (>= 1.29 on Linux) runs telemetry unless ORT_DISABLE_TELEMETRY is set when its
# environment is created: a device id and an event queue under ~/.cache, a session file in
# $TMPDIR, and uploads to Microsoft's collector. A daemon next to a microphone sends nothing
# anywhere it was not told to: opt out before any aerd module imports onnxruntime (a value
# the caller set is left alone).
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
