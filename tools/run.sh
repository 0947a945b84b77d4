#!/usr/bin/env bash
# Install aerd into a virtualenv and run the daemon on the shipped default model.
# Usage: tools/run.sh [aerd run options...]     (README: "Quick start")
# The virtualenv is ~/.aerd (AERD_VENV to change it); Debian packages: PortAudio, venv.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/apt-install.sh libportaudio2 python3-venv
VENV=${AERD_VENV:-$HOME/.aerd}
[[ -x $VENV/bin/python ]] || "${PYTHON:-python3}" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q .
exec "$VENV/bin/aerd" run "$@"
