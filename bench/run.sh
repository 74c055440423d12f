#!/bin/sh
# Benchmarks the cim-leaf daemon against a bare nats.c responder and prints
# a table of ratios (never pass/fail). Needs cc, pkg-config libnats,
# nats-server and python3. Binary: $CIM_LEAF_BIN (default build/daemon/cim-leaf).
#   bench/run.sh [measure.py options: -n N -k K --repeat R --settle S --idle S --json FILE]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
daemon=${CIM_LEAF_BIN:-$root/build/daemon/cim-leaf}

for tool in cc pkg-config nats-server python3; do
    command -v "$tool" >/dev/null || { echo "bench: $tool not found" >&2; exit 1; }
done
pkg-config --exists libnats || { echo "bench: pkg-config cannot find libnats (apt-get install libnats-dev)" >&2; exit 1; }

bin=$(mktemp -d "${TMPDIR:-/tmp}/cim-leaf-bench-bin.XXXXXX")
trap 'rm -rf "$bin"' EXIT INT TERM
for prog in health_bench bare_responder; do
    # shellcheck disable=SC2046  # pkg-config output is meant to split
    cc -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -o "$bin/$prog" "$here/$prog.c" \
        $(pkg-config --cflags --libs libnats) -lpthread
done

python3 "$here/measure.py" --bin-dir "$bin" --daemon "$daemon" "$@"
