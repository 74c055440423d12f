#!/bin/sh
# Runs the benchmarks and prints tables of ratios (never pass/fail):
#   health  the daemon's health answers against a bare nats.c responder that
#           answers with the same bytes, both on one nats-server, in rounds
#           alternating the two (--rounds; beside them bare-loop, the bare
#           responder reading its socket through nats.c's event loop on one
#           thread): throughput and latency with -k
#           (8) and --k-high (64) in flight, CPU per request at one request
#           every --cpu-interval-us (3000), start to READY=1; once: idle CPU
#           and wakeups, Rss and Pss, server restart to answering again;
#   fanout  N daemons against N bare responders on one nats-server: one
#           request that all N answer, until the N-th reply, for each N of
#           --fanout-leaves (50,100), 2 N processes at the largest;
#   events  events acknowledged by a JetStream stream against plain
#           publishes, on one nats-server with JetStream (-js -sd);
#   spool   the event spool's write cost per event (build/bench/spool-bench);
#   fleet   only when named: N leaf nats-servers with a daemon each behind one
#           hub on this machine, the hub killed and started again (--leaves N);
#   units   only when named, as root: the idle cost of watching N systemd
#           units, in a container booted as tests/system does (the daemon
#           from $CIM_LEAF_BUILDDIR, default build/; --units N).
# Needs cc, pkg-config libnats, nats-server and python3. Binaries:
# $CIM_LEAF_BIN (default build/daemon/cim-leaf), $SPOOL_BENCH_BIN (default
# build/bench/spool-bench). Spools are written under $TMPDIR (default /tmp).
#   bench/run.sh [--only health,fanout,events,spool,fleet,units] [measure.py options, see --help]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
daemon=${CIM_LEAF_BIN:-$root/build/daemon/cim-leaf}
spool_bench=${SPOOL_BENCH_BIN:-$root/build/bench/spool-bench}

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
# bare-libs: the same responder loading every library the daemon loads (the
# daemon's DT_NEEDED, whose own come with them), so that the start's table
# can tell the loader's share from the daemon's own. Without a daemon built,
# the libraries the design names.
if [ -x "$daemon" ]; then
    libs=$(readelf -d "$daemon" | sed -n 's/.*(NEEDED).*\[\(lib[^]]*\)\]$/-l:\1/p')
else
    libs=$(pkg-config --libs yaml-cpp sdbus-c++ libsystemd)
fi
# shellcheck disable=SC2046,SC2086
cc -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -o "$bin/bare_responder_libs" "$here/bare_responder.c" \
    $(pkg-config --cflags libnats) -Wl,--no-as-needed $(pkg-config --libs libnats) $libs -lstdc++ -lpthread

# bare-loop: the same responder reading its socket on one thread (nats.c's event loop).
# shellcheck disable=SC2046
cc -O2 -std=c11 -D_GNU_SOURCE -DSOCKET_LOOP -Wall -Wextra -o "$bin/bare_responder_loop" "$here/bare_responder.c" \
    $(pkg-config --cflags --libs libnats) -lpthread

python3 "$here/measure.py" --bin-dir "$bin" --daemon "$daemon" --spool-bench "$spool_bench" "$@"
