#!/bin/bash
# symbol-order.sh: regenerates link/corrald.order, the list of functions the
# manager runs in everyday use, which build.rs hands to the linker (lld's
# --symbol-ordering-file) so that they lie side by side at the start of .text. Why: the kernel maps a binary's text 64 KiB
# around each page that faults (fault-around), so code that runs scattered
# over 6 MB of text keeps nearly all of it resident; grouped, the manager's
# idle RSS drops by ~1.9 MB (docs/ARCHITECTURE.md, "Memory, 50 idle units").
# The CLI has a list of its own, link/corral.order: what its quick verbs
# (start, stop, restart, status, is-active, is-failed, reset-failed: the
# ones scripts call in loops) run, so that they fault in a few pages of
# text instead of one per function (docs/ARCHITECTURE.md).
#
# How: builds the release binaries (the shipped profile: symbol names differ
# between profiles), runs corrald under `valgrind --tool=callgrind`
# through a workload that touches what a user's manager does (start-up with
# units, start/stop/restart, a restart after SIGKILL, a oneshot, output into
# the journal, a socket activated by a connection, a timer elapsing,
# 200 calendar timers loaded and started by timers.target, as a user's
# timers are (issue 12: their loading, calendar parsing and next elapses
# lay scattered in .text, 0.33 MB more resident with 1000 timers),
# daemon-reload, status and list verbs), and writes the
# functions that ran, the most-run first. Names missing from a later build are
# skipped by the linker, so a stale list costs memory, never correctness.
# Needs root (cgroups), valgrind, python3.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/scripts/valgrind-corrald.sh"
command -v valgrind >/dev/null || { echo "symbol-order.sh: needs valgrind (apt-get install valgrind)" >&2; exit 2; }
(cd "$ROOT" && cargo build --release --bins -q)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
CORRAL=$TARGET/release/corral; CORRALD=$TARGET/release/corrald
B=$(mktemp -d /tmp/corral-order.XXXXXX)
CG2=$(awk '$9=="cgroup2"{print $5; exit}' /proc/self/mountinfo)
[ -n "$CG2" ] || { echo "symbol-order.sh: no cgroup2 mount" >&2; exit 2; }
CGROOT=$CG2/corral-order-$$
mkdir -p "$B/units" "$B/run" "$B/state" "$B/cg"
export CORRAL_SOCKET=$B/run/corral/control.sock

for i in $(seq -w 1 50); do printf '[Service]\nExecStart=/bin/sleep infinity\n' > "$B/units/idle$i.service"; done
printf '[Service]\nExecStart=/bin/sh -c "for i in $(seq 300); do echo line $i; echo err $i >&2; done; exec sleep infinity"\n' > "$B/units/chatty.service"
printf '[Service]\nType=oneshot\nExecStart=/bin/true\nExecStart=/bin/echo done\n' > "$B/units/once.service"
printf '[Service]\nRestart=always\nRestartSec=0\nExecStart=/bin/sleep infinity\n' > "$B/units/phoenix.service"
printf '[Socket]\nListenStream=%%t/order-echo.sock\n[Install]\nWantedBy=sockets.target\n' > "$B/units/echo.socket"
printf '[Service]\nExecStart=/bin/sleep infinity\n' > "$B/units/echo.service"
printf '[Timer]\nOnActiveSec=1s\nAccuracySec=1ms\nUnit=once.service\n[Install]\nWantedBy=timers.target\n' > "$B/units/tick.timer"
# Enabled calendar timers (the usual kinds of expression, a zone, Persistent=,
# a random delay), none due during the run.
mkdir -p "$B/units/timers.target.wants"
cal=("daily" "weekly" "Mon..Fri *-*-* 09:00" "*-*-01 03:30:00" "Sat,Sun 04:00 Europe/Berlin" "*-*~01 23:00")
for i in $(seq -w 1 200); do
  printf '[Timer]\nOnCalendar=%s\nPersistent=%s\nRandomizedDelaySec=%s\n[Install]\nWantedBy=timers.target\n' \
    "${cal[$((10#$i % ${#cal[@]}))]}" "$([ $((10#$i % 2)) = 0 ] && echo yes || echo no)" "$((10#$i % 3))m" > "$B/units/cal$i.timer"
  printf '[Service]\nType=oneshot\nExecStart=/bin/true\n' > "$B/units/cal$i.service"
  ln -s ../cal$i.timer "$B/units/timers.target.wants/cal$i.timer"
done

cli() { "$CORRAL" "$@" >/dev/null 2>&1 || true; }
# The CLI under callgrind, for link/corral.order.
vcli() {
  valgrind --tool=callgrind --dump-instr=no --compress-strings=no --demangle=no \
    --callgrind-out-file="$B/cg/cli.%p" "$CORRAL" "$@" >/dev/null 2>&1 || true
}

XDG_RUNTIME_DIR=$B/run setsid valgrind --tool=callgrind --dump-instr=no --compress-strings=no \
  --demangle=no --trace-children=yes --trace-children-skip='/bin/*,/usr/*' \
  --callgrind-out-file="$B/cg/daemon.%p" "$CORRALD" --user --units-dir "$B/units" \
  --runit-dir "$B/none" --state-dir "$B/state" --runtime-dir "$B/run/corral" \
  --cgroup-root "$CGROOT" </dev/null >"$B/corrald.log" 2>&1 &
CD=$!
cleanup() { stop_corrald "$CD" "$CGROOT"; }
trap cleanup EXIT
for _ in $(seq 300); do [ -S "$CORRAL_SOCKET" ] && break; sleep 0.1; done
[ -S "$CORRAL_SOCKET" ] || { echo "symbol-order.sh: corrald did not start" >&2; cat "$B/corrald.log" >&2; exit 1; }

cli start $(cd "$B/units" && ls idle*.service) chatty.service phoenix.service echo.socket tick.timer
sleep 3
for _ in 1 2 3; do cli restart idle01; cli stop idle02; cli start idle02; done
pid=$("$CORRAL" show phoenix -p MainPID --value 2>/dev/null || true)
[ -n "$pid" ] && [ "$pid" != 0 ] && kill -9 "$pid"
python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])' "$B/run/order-echo.sock" || true
cli start once.service
sleep 3
vcli start idle03; vcli is-active idle03; vcli is-failed idle03; vcli status idle03
vcli restart idle03; vcli stop idle03; vcli reset-failed idle03
cli status; cli status chatty; cli status echo.socket; cli status tick.timer; cli status cal001.timer
cli list-units; cli list-timers; cli list-sockets
cli daemon-reload
cli stop $(cd "$B/units" && ls -p | grep -v /)
sleep 2
cleanup
trap - EXIT

# In callgrind's files: "fn=(id) name" defines a name; the
# lines below it until the next fn= are its costs ("line cost", or calls=).
python3 - "$B/cg" "$ROOT/link" "$CORRALD" "$CORRAL" <<'PY'
import os, re, subprocess, sys
cg, outdir = sys.argv[1], sys.argv[2]
bins = {'corrald': sys.argv[3], 'corral': sys.argv[4]}
def defined(path):
    out = subprocess.run(['nm', '--defined-only', path], capture_output=True, text=True, check=True).stdout
    return {l.split(' ', 2)[2] for l in out.splitlines() if len(l.split(' ', 2)) == 3 and l.split(' ', 2)[1] in 'tTwW'}
os.makedirs(outdir, exist_ok=True)
for name, path in bins.items():
    syms = defined(path)
    cost = {}
    # One file per process: the manager's, its fd holder's, each CLI run's.
    for f in os.listdir(cg):
        obj, fn = None, None
        for line in open(os.path.join(cg, f), errors='replace'):
            if line.startswith('ob='):
                obj = line[3:].strip()
            elif line.startswith('fn='):
                fn = line[3:].strip() if obj and obj.endswith('/' + name) else None
            elif fn and line[:1].isdigit():
                parts = line.split()
                if len(parts) >= 2:
                    cost[fn] = cost.get(fn, 0) + int(parts[1])
    hot = [f for f, _ in sorted(cost.items(), key=lambda kv: -kv[1]) if f in syms]
    with open(os.path.join(outdir, name + '.order'), 'w') as o:
        o.write('\n'.join(hot) + '\n')
    print(f"link/{name}.order: {len(hot)} functions (of {len(syms)} in the binary)")
PY
rm -rf "$B"
