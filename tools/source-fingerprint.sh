#!/usr/bin/env bash
# The fingerprint of the checkout's files that `pip install` takes (pyproject.toml, README.md,
# LICENSE, aerd/, models/). tools/run.sh and tools/test.sh keep it in their virtualenv and reinstall
# only when it changed, so a re-run starts at once and works offline.
set -euo pipefail
cd "$(dirname "$0")/.."
find pyproject.toml README.md LICENSE aerd models -type f ! -path '*/__pycache__/*' -print0 |
  LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum
