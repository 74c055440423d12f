#!/bin/sh
# Installs the pinned npm dependencies of tests/js (from package-lock.json)
# unless they are already there. CI calls this before the integration tests.
set -eu
cd "$(dirname "$0")"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
    npm ci --no-audit --no-fund
fi
