#!/bin/bash
# bench-supervisor.sh [iters]: corral beside runit and s6, in the same run, on
# the anchors of issue 3 §7, with ../shared/bench-peers/svlat.c as the probe:
#   up      start -> the service has exec'd `sleep` (child of the supervisor)
#   down    stop  -> the service is reaped
#   kill9   SIGKILL of the service -> a new one has exec'd (corral: RestartSec=0)
#   stop100 stop of a service that forked 100 children: command return time and
#           survivors (runit/s6 leave forked children behind)
#   memory  RSS/PSS of the supervision processes with 50 idle units (corral:
#           40 services and 10 listening sockets, as issue 11 counts them;
#           runit/s6: 50 services), corrald alone and with its fd holder
# Needs root (cgroups), runit, s6, gcc, python3. Everything started here is
# stopped here by PID. Prints a summary with corral/peer ratios.
set -u
IT=${1:-10}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEERS=${PEERS:-$ROOT/../shared/bench-peers}
# The peers: runit (sv, runsvdir) and s6 (s6-svscan, s6-svc), from Debian.
if ! command -v sv >/dev/null || ! command -v s6-svscan >/dev/null; then
  [ "$(id -u)" -eq 0 ] || { echo "bench-supervisor.sh: needs runit and s6 (apt-get install runit s6)" >&2; exit 2; }
  echo "bench-supervisor.sh: installing runit and s6" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends runit s6 >/dev/null || exit 2
fi
B=/tmp/corral-bench; rm -rf $B; mkdir -p $B/units $B/runit $B/s6 $B/run $B/state
OUT=$B/results.tsv; : > $OUT
CG2=$(awk '$9=="cgroup2"{print $5; exit}' /proc/self/mountinfo)
[ -n "$CG2" ] || { echo "no cgroup2 mount" >&2; exit 2; }
CGROOT=$CG2/corral-bench-$$
# svlat's "up" skips PIDs below the highest one seen before t0, which never
# matches after the PID counter wrapped (busy shared machines). The service is
# down before an "up", so no PID needs skipping: build it with that filter off.
sed 's/strcmp(mode, "kill") == 0 ? 0 : maxpid/0/' $PEERS/svlat.c > $B/svlat.c
gcc -O2 -o $B/svlat $B/svlat.c || exit 2
L=$B/svlat
(cd $ROOT && cargo build --release --bins -q) || exit 2
CORRAL=$ROOT/target/release/corral; CORRALD=$ROOT/target/release/corrald
# A stale link/corrald.order (build.rs) costs the manager memory: say how much
# of it this build still has (scripts/symbol-order.sh makes a new one).
ORD=$ROOT/link/corrald.order
if [ -f "$ORD" ]; then
  have=$(comm -12 <(nm --defined-only $CORRALD | awk '{print $3}' | sort -u) <(sort -u "$ORD") | wc -l)
  echo "symbol order: $have of $(wc -l < "$ORD") functions of link/corrald.order are in corrald"
fi
export CORRAL_SOCKET=$B/run/corral/control.sock

# ---- services ----
printf '[Unit]\nStartLimitIntervalSec=0\n[Service]\nExecStart=/bin/sleep infinity\n' > $B/units/sleeper.service
printf '[Unit]\nStartLimitIntervalSec=0\n[Service]\nRestart=always\nRestartSec=0\nExecStart=/bin/sleep infinity\n' > $B/units/phoenix.service
printf "[Unit]\nStartLimitIntervalSec=0\n[Service]\nExecStart=/bin/bash -c 'for i in \$(seq 100); do sleep infinity & done; exec sleep infinity'\n" > $B/units/hundred.service
for i in $(seq -w 1 40); do printf '[Service]\nExecStart=/bin/sleep infinity\n' > $B/units/idle$i.service; done
# Idle sockets: listening, their services not started (no connection comes).
for i in $(seq -w 1 10); do
  printf '[Socket]\nListenStream=%%t/bench-sock%s.sock\n' $i > $B/units/sock$i.socket
  printf '[Service]\nExecStart=/bin/sleep infinity\n' > $B/units/sock$i.service
done
mksvc() { mkdir -p $1; printf '#!/bin/sh\nexec %s\n' "$2" > $1/run; chmod +x $1/run; touch $1/down; }
for s in runit s6; do
  mksvc $B/$s/sleeper "sleep infinity"
  mksvc $B/$s/hundred "bash -c 'for i in \$(seq 100); do sleep infinity & done; exec sleep infinity'"
done

XDG_RUNTIME_DIR=$B/run setsid $CORRALD --user --units-dir $B/units --runit-dir $B/none \
  --state-dir $B/state --runtime-dir $B/run/corral --cgroup-root $CGROOT </dev/null >$B/corrald.log 2>&1 & CD=$!
setsid runsvdir $B/runit </dev/null >/dev/null 2>&1 & RSD=$!
setsid s6-svscan $B/s6 </dev/null >/dev/null 2>&1 & S6=$!
cleanup() {
  $CORRAL stop phoenix hundred sleeper >/dev/null 2>&1
  kill $CD 2>/dev/null; s6-svscanctl -t $B/s6 2>/dev/null; kill -HUP $RSD 2>/dev/null
  sleep 1
  if [ -d $CGROOT ]; then echo 1 > $CGROOT/cgroup.kill 2>/dev/null; sleep 0.5; find $CGROOT -depth -type d -exec rmdir {} \; 2>/dev/null; fi
}
trap cleanup EXIT
sleep 2
kid() { ps -eo pid=,ppid=,args= | awk -v p=$1 -v n="$2" '$2==p && index($0,n){print $1; exit}'; }
RSV=$(kid $RSD "runsv sleeper"); S6S=$(kid $S6 "s6-supervise sleeper")
echo "corrald=$CD runsvdir=$RSD s6-svscan=$S6 runsv=$RSV s6-supervise=$S6S"
rec() { echo -e "$1\t$2\t$3\t$4" >> $OUT; }
now() { T="${EPOCHREALTIME/./}"; }  # microseconds, set in the current shell

for i in $(seq $IT); do
  sleep 0.3; rec corral up $i "$($L up $CD sleep -- $CORRAL start sleeper)"
  sleep 0.3; rec corral down $i "$($L down $CD sleep -- $CORRAL stop sleeper)"
  sleep 1.2; rec runit up $i "$($L up $RSV sleep -- sv up $B/runit/sleeper)"
  sleep 1.2; rec runit down $i "$($L down $RSV sleep -- sv down $B/runit/sleeper)"
  sleep 1.2; rec s6 up $i "$($L up $S6S sleep -- s6-svc -u $B/s6/sleeper)"
  sleep 1.2; rec s6 down $i "$($L down $S6S sleep -- s6-svc -d $B/s6/sleeper)"
done
$CORRAL start phoenix; sv up $B/runit/sleeper; s6-svc -u $B/s6/sleeper; sleep 1.5
for i in $(seq $IT); do
  sleep 0.3; rec corral kill9 $i "$($L kill $CD sleep)"
  sleep 1.2; rec runit kill9 $i "$($L kill $RSV sleep)"
  sleep 1.2; rec s6 kill9 $i "$($L kill $S6S sleep)"
done
$CORRAL stop phoenix; sv down $B/runit/sleeper; s6-svc -d $B/s6/sleeper

# stop of a unit with 100 forked children: time until the stop command returns
# (corral stop, sv stop and s6-svc -wd all wait for the service to be down),
# then the children left alive. Survivors (runit/s6 leave them) are ours and
# are killed by PID.
sleepers() { pgrep -x -f 'sleep infinity' | sort; }
survivors() { comm -13 $B/base.txt <(sleepers); }
stop100() { # peer up-cmd... -- stop-cmd...
  local peer=$1; shift; local up=() ; while [ "$1" != -- ]; do up+=("$1"); shift; done; shift
  sleepers > $B/base.txt
  "${up[@]}" >/dev/null
  while [ "$(survivors | wc -l)" -lt 101 ]; do sleep 0.01; done
  now; local t0=$T; "$@" >/dev/null; now; local t1=$T
  sleep 0.3; local left; left=$(survivors | wc -l)
  rec $peer stop100 $i "$(awk -v a=$t0 -v b=$t1 'BEGIN{printf "%.3f", (b-a)/1000}') $left"
  survivors | xargs -r kill 2>/dev/null
}
for i in $(seq $IT); do
  stop100 corral $CORRAL start hundred -- $CORRAL stop hundred
  stop100 runit sv up $B/runit/hundred -- sv stop $B/runit/hundred
  stop100 s6 s6-svc -u $B/s6/hundred -- s6-svc -wd -d $B/s6/hundred
done

# memory with 50 idle units
memsum() { local r=0 p=0 x; for x in "$@"; do [ -r /proc/$x/status ] || continue
  r=$((r+$(awk '/^VmRSS/{print $2}' /proc/$x/status))); p=$((p+$(awk '/^Pss:/{print $2}' /proc/$x/smaps_rollup))); done
  echo "$r $p"; }
$CORRAL start $(cd $B/units && ls idle*.service sock*.socket) >/dev/null; sleep 2
rec corral mem50 1 "$(memsum $CD)"
# The fd holder (corrald --fd-holder, its own process) belongs to the manager
# too: the same sums with it (RSS counts the binary's pages twice, PSS once).
rec corral mem50h 1 "$(memsum $CD $(kid $CD fd-holder))"
for i in $(seq -w 1 50); do mksvc $B/runit/idle$i "sleep infinity"; rm $B/runit/idle$i/down; mksvc $B/s6/idle$i "sleep infinity"; rm $B/s6/idle$i/down; done
s6-svscanctl -a $B/s6; sleep 8
kids() { ps -eo pid=,ppid=,args= | awk -v p=$1 '$2==p && /idle/{print $1}'; }
rec runit mem50 1 "$(memsum $RSD $(kids $RSD))"
rec s6 mem50 1 "$(memsum $S6 $(kids $S6))"
$CORRAL stop $(cd $B/units && ls idle*.service sock*.socket) >/dev/null
for i in $(seq -w 1 50); do sv down $B/runit/idle$i; s6-svc -d $B/s6/idle$i; done

python3 - $OUT <<'PY' | tee $B/summary.txt
import sys, statistics as st
rows = {}
for l in open(sys.argv[1]):
    p, op, i, v = l.rstrip('\n').split('\t')
    rows.setdefault((op, p), []).append(v.split())
def med(op, p, k=0):
    vs = [float(v[k]) for v in rows.get((op, p), []) if len(v) > k and v[k] not in ('timeout', 'nochild', '-')]
    return st.median(vs) if vs else float('nan')
names = {'up': 'start -> running (ms)', 'down': 'stop -> reaped (ms)',
         'kill9': 'restart after kill -9 (ms)', 'stop100': 'stop, 100 children (ms)'}
print(f"{'measure':32s} {'corral':>9s} {'runit':>9s} {'s6':>9s}  corral/runit corral/s6")
for op, label in names.items():
    c, r, s = med(op, 'corral'), med(op, 'runit'), med(op, 's6')
    print(f"{label:32s} {c:9.2f} {r:9.2f} {s:9.2f}  {c/r:12.2f} {c/s:9.2f}")
for op in ('up', 'down'):
    c, r, s = med(op, 'corral', 1), med(op, 'runit', 1), med(op, 's6', 1)
    print(f"{op+': command returns (ms)':32s} {c:9.2f} {r:9.2f} {s:9.2f}")
print(f"{'stop, 100 children: survivors':32s} {med('stop100','corral',1):9.0f} {med('stop100','runit',1):9.0f} {med('stop100','s6',1):9.0f}")
c, r, s = med('mem50', 'corral'), med('mem50', 'runit'), med('mem50', 's6')
print(f"{'RSS, 50 idle units (MB)':32s} {c/1024:9.2f} {r/1024:9.2f} {s/1024:9.2f}  {c/r:12.2f} {c/s:9.2f}")
c, r, s = med('mem50', 'corral', 1), med('mem50', 'runit', 1), med('mem50', 's6', 1)
print(f"{'PSS, 50 idle units (MB)':32s} {c/1024:9.2f} {r/1024:9.2f} {s/1024:9.2f}  {c/r:12.2f} {c/s:9.2f}")
c, r, s = med('mem50h', 'corral'), med('mem50', 'runit'), med('mem50', 's6')
print(f"{'RSS, the same + fd holder (MB)':32s} {c/1024:9.2f} {r/1024:9.2f} {s/1024:9.2f}  {c/r:12.2f} {c/s:9.2f}")
c, r, s = med('mem50h', 'corral', 1), med('mem50', 'runit', 1), med('mem50', 's6', 1)
print(f"{'PSS, the same + fd holder (MB)':32s} {c/1024:9.2f} {r/1024:9.2f} {s/1024:9.2f}  {c/r:12.2f} {c/s:9.2f}")
PY
