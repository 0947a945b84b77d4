#!/usr/bin/env bash
# Install aerd into a virtualenv and run the daemon on the shipped default model.
# Usage: tools/run.sh [aerd run options...]     (README: "Quick start")
# The virtualenv is ~/.aerd (AERD_VENV to change it); Debian packages: PortAudio, venv.
# Relative paths in the options are taken from the directory you run it in.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
"$REPO/tools/apt-install.sh" libportaudio2 python3-venv
VENV=${AERD_VENV:-$HOME/.aerd}
if [[ ! -x $VENV/bin/python ]]; then
  "${PYTHON:-python3}" -m venv "$VENV" || {
    echo "tools/run.sh: could not make the virtualenv $VENV (Debian: apt-get install python3-venv)" >&2
    exit 1; }
fi
"$VENV/bin/python" -m pip --version >/dev/null 2>&1 || {
  echo "tools/run.sh: $VENV has no pip (left by a failed python3 -m venv?): remove it and run again" >&2
  exit 1; }
# Reinstall only when the checkout's installed files changed since the last install by this
# script (a fingerprint kept in the virtualenv), so a restart works offline and starts at once.
STAMP=$VENV/.aerd-source
SOURCE=$("$REPO/tools/source-fingerprint.sh")
if [[ -x $VENV/bin/aerd && -f $STAMP && $(<"$STAMP") == "$SOURCE" ]]; then
  echo "tools/run.sh: aerd in $VENV is up to date with $REPO"
else
  # setuptools builds in the checkout (build/, aerd.egg-info/): a build/ left by an earlier
  # install can carry modules that no longer exist into this one, and either one left by a
  # `sudo pip install .` (the service install) makes this pip install fail
  for d in build aerd.egg-info; do
    rm -rf "${REPO:?}/$d" 2>/dev/null || {
      echo "tools/run.sh: cannot remove $REPO/$d (left by a pip install as root?): sudo rm -rf it" >&2
      exit 1; }
  done
  echo "tools/run.sh: installing aerd from $REPO into $VENV"
  rm -f "$STAMP"
  "$VENV/bin/python" -m pip install -q "$REPO"
  printf '%s\n' "$SOURCE" >"$STAMP"
fi
exec "$VENV/bin/aerd" run "$@"
