#!/usr/bin/env bash
# Installs the Debian 12 packages pasm needs to build and test (only those
# missing). Uses sudo when not run as root.
set -euo pipefail
pkgs=(build-essential pkg-config libopenblas-openmp-dev libjpeg-dev libpng-dev zlib1g-dev
      libcjson-dev libcmocka-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present"
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install-deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
