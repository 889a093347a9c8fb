#!/usr/bin/env bash
# Installs everything Meridian needs to build, test and run its local
# cluster, from Debian's packages.  Idempotent; called by run-local.sh and
# test.sh, so a fresh Debian 12 machine needs nothing else.
set -euo pipefail

packages=(
	build-essential cmake pkg-config clang libclang-rt-14-dev
	libuv1-dev libmsgpack-dev libsodium-dev libjansson-dev libhttp-parser-dev
	libpq-dev postgresql postgresql-client
	check jq curl procps iproute2 nftables python3
)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null || { echo "deps.sh: need root (or sudo) to install: ${missing[*]}" >&2; exit 2; }
	sudo=sudo
fi
echo "deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
