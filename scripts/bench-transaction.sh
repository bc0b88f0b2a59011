#!/bin/bash
# bench-transaction.sh [SERVICES] [TIMERS] [CYCLES]: the manager's CPU per
# start and per stop of one service, as instructions under
# `valgrind --tool=callgrind`, with SERVICES services (default 51) and TIMERS
# timers (default 0, each triggering a service of its own, loaded, not
# started) loaded. A job
# should cost what it touches, not what is loaded (docs/ARCHITECTURE.md,
# "Start → running through the CLI": the transaction's reverse edges).
#
# Prints the inclusive instructions per job of `Manager::job` (the request:
# lookup, transaction, the spawn or the stop signal) and of `graph::build`
# (the transaction alone). CORRALD and CORRAL pick other binaries (to
# compare builds); by default the release binaries are built and used.
# Needs root (cgroups), valgrind (callgrind_control, callgrind_annotate).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/scripts/valgrind-corrald.sh"
SERVICES=${1:-51}; TIMERS=${2:-0}; CYCLES=${3:-20}
command -v valgrind >/dev/null || { echo "bench-transaction.sh: needs valgrind (apt-get install valgrind)" >&2; exit 2; }
if [ -z "${CORRALD:-}" ]; then
  (cd "$ROOT" && cargo build --release --bins -q)
  TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
  CORRALD=$TARGET/release/corrald; CORRAL=${CORRAL:-$TARGET/release/corral}
fi
B=$(mktemp -d /tmp/corral-txbench.XXXXXX)
CG2=$(awk '$9=="cgroup2"{print $5; exit}' /proc/self/mountinfo)
[ -n "$CG2" ] || { echo "bench-transaction.sh: no cgroup2 mount" >&2; exit 2; }
CGROOT=$CG2/corral-txbench-$$
mkdir -p "$B/units" "$B/run" "$B/state"
export CORRAL_SOCKET=$B/run/corral/control.sock

for i in $(seq -w 1 "$SERVICES"); do
  printf '[Unit]\nStartLimitIntervalSec=0\n[Service]\nExecStart=/bin/sleep infinity\n' > "$B/units/s$i.service"
done
for i in $(seq -w 1 "$TIMERS"); do
  printf '[Service]\nType=oneshot\nExecStart=/bin/true\n' > "$B/units/t$i.service"
  printf '[Timer]\nOnCalendar=daily\n' > "$B/units/t$i.timer"
done

XDG_RUNTIME_DIR=$B/run setsid valgrind --tool=callgrind --dump-instr=no \
  --trace-children=yes --trace-children-skip='/bin/*,/usr/*' \
  --callgrind-out-file="$B/callgrind.%p" "$CORRALD" --user --units-dir "$B/units" \
  --runit-dir "$B/none" --state-dir "$B/state" --runtime-dir "$B/run/corral" \
  --cgroup-root "$CGROOT" </dev/null >"$B/corrald.log" 2>&1 &
CD=$!
first=$(printf 's%0*d.service' "${#SERVICES}" 1)
cleanup() { stop_corrald "$CD" "$CGROOT"; }
trap 'cleanup; rm -rf "$B"' EXIT
# The socket file is there a moment before the manager listens (valgrind is slow).
up() { "$CORRAL" show "$first" -p Id >/dev/null 2>&1; }
for _ in $(seq 1200); do up && break; sleep 0.1; done
up || { echo "bench-transaction.sh: corrald did not start" >&2; cat "$B/corrald.log" >&2; exit 1; }

# Only the cycles count: loading and the manager's own start-up jobs do not.
callgrind_control -z "$CD" >/dev/null 2>&1
for _ in $(seq "$CYCLES"); do
  "$CORRAL" start "$first" >/dev/null
  "$CORRAL" stop "$first" >/dev/null
done
cleanup
trap '[ -n "${KEEP:-}" ] || rm -rf "$B"' EXIT

# The manager's profile is the biggest file (the fd holder's is small).
OUT=$(ls -S "$B"/callgrind.* | head -1)
JOBS=$((2 * CYCLES))
callgrind_annotate --inclusive=yes "$OUT" 2>/dev/null | python3 -c '
import re, sys
jobs, services, timers = int(sys.argv[1]), sys.argv[2], sys.argv[3]
want = {"Manager::job": "corral::supervisor::manager::requests::<impl corral::supervisor::manager::Manager>::job ",
        "graph::build": "corral::supervisor::graph::build "}
got = {}
for line in sys.stdin:
    m = re.match(r"\s*([\d,]+)\s+\([^)]*\)\s+[^:\s]*:(\S.*)$", line)
    if not m:
        continue
    for k, sym in want.items():
        if m.group(2).startswith(sym) and k not in got:
            got[k] = int(m.group(1).replace(",", ""))
print(f"{services} services, {timers} timers, {jobs} jobs:")
for k in want:
    v = got.get(k)
    print(f"  {k:14} " + (f"{v // jobs:>12,} instructions per job" if v else "not in the profile (inlined?)"))
' "$JOBS" "$SERVICES" "$TIMERS"
