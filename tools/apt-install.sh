#!/usr/bin/env bash
# Install the Debian packages given that are missing (apt-get update first; sudo unless root).
# Usage: tools/apt-install.sh PKG...      (used by tools/run.sh and tools/test.sh)
set -euo pipefail
missing=()
for p in "$@"; do   # "installed", not merely known to dpkg (removed ones keep their config)
  [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null) == installed ]] || missing+=("$p")
done
((${#missing[@]})) || exit 0
SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
echo "installing Debian packages: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends -- "${missing[@]}" >/dev/null
