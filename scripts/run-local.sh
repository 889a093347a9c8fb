#!/usr/bin/env bash
# The README's first command: installs what Meridian needs, builds it, and
# starts a local multi-region cluster (deploy/local-cluster.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/release -j"$(nproc)" --target meridian
exec ./deploy/local-cluster.sh "$PWD/build/release/cmd/meridian"
