#!/bin/bash
# bench-readopt.sh [iters]: a user manager killed with SIGKILL while 50 units
# run, then started again on the same directories: how long from its exec to
# every unit taken back (the manager's own count, "took back N of M unit(s)
# ... in X µs", which times the re-adoption pass) and to its ready line
# (--ready-fd: journal opened, units taken back, pipes taken back from the fd
# holder, autostart done). Also checks that every main PID survived.
# Then, with a unit flooding numbered lines besides, `corral daemon-reexec`
# the same number of times: the wall time from the request to the next
# command answered by the new image (`daemon-reexec; is-active`), and that
# every main PID and every flood line (no hole, no duplicate) survived.
# Needs root (cgroups). Everything started here is stopped here by PID.
set -u
IT=${1:-10}
N=${N:-50}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=/tmp/corral-bench-readopt; rm -rf $B; mkdir -p $B/units $B/run $B/state
CG2=$(awk '$9=="cgroup2"{print $5; exit}' /proc/self/mountinfo)
[ -n "$CG2" ] || { echo "no cgroup2 mount" >&2; exit 2; }
CGROOT=$CG2/corral-bench-readopt-$$
(cd $ROOT && cargo build --release --bins -q) || exit 2
CORRAL=$ROOT/target/release/corral; CORRALD=$ROOT/target/release/corrald
export CORRAL_SOCKET=$B/run/corral/control.sock
printf '[Service]\nExecStart=/bin/sh -c "i=0; while :; do i=$((i+1)); echo seq $i; done"\n' > $B/units/flood.service
UNITS=""
for i in $(seq -w 1 $N); do
  printf '[Service]\nExecStart=/bin/sleep infinity\n' > $B/units/idle$i.service
  UNITS="$UNITS idle$i"
done
mkfifo $B/ready
now() { T="${EPOCHREALTIME/./}"; }  # microseconds, set in the current shell
CD=
launch() {
  now; T0=$T
  XDG_RUNTIME_DIR=$B/run setsid $CORRALD --user --units-dir $B/units --runit-dir $B/none \
    --state-dir $B/state --runtime-dir $B/run/corral --cgroup-root $CGROOT --ready-fd 3 \
    3>$B/ready </dev/null >>$B/corrald.log 2>&1 & CD=$!
  read -r _ < $B/ready
  now; READY=$(( T - T0 ))
}
cleanup() {
  [ -n "$CD" ] && { $CORRAL stop $UNITS >/dev/null 2>&1; kill $CD 2>/dev/null; wait $CD 2>/dev/null; }
  if [ -d $CGROOT ]; then echo 1 > $CGROOT/cgroup.kill 2>/dev/null; sleep 0.5; find $CGROOT -depth -type d -exec rmdir {} \; 2>/dev/null; fi
}
trap cleanup EXIT
launch
$CORRAL start $UNITS || exit 1
pids() { for u in $UNITS; do $CORRAL show -p MainPID --value $u; done | sort -n | tr '\n' ' '; }
BEFORE=$(pids)
: > $B/times
for i in $(seq $IT); do
  kill -9 $CD; wait $CD 2>/dev/null
  launch
  TOOK=$(grep -o 'took back [0-9]* of [0-9]* unit(s) a previous manager left, in [0-9]* µs' $B/corrald.log | tail -1)
  US=$(echo "$TOOK" | awk '{print $(NF-1)}')
  echo "$US $READY" >> $B/times
  echo "run $i: $TOOK; exec -> ready ${READY} µs"
done
AFTER=$(pids)
[ "$BEFORE" = "$AFTER" ] && echo "every main PID kept across $IT kill -9s" || { echo "main PIDs changed: $BEFORE / $AFTER"; exit 1; }
sort -n -k1 $B/times | awk -v n=$IT '{a[NR]=$1} END {printf "re-adoption pass, %d units: median %.1f ms, max %.1f ms\n", '"$N"', a[int((n+1)/2)]/1000, a[n]/1000}'
sort -n -k2 $B/times | awk -v n=$IT '{a[NR]=$2} END {printf "exec -> ready: median %.1f ms, max %.1f ms\n", a[int((n+1)/2)]/1000, a[n]/1000}'

$CORRAL start flood || exit 1
BEFORE=$(pids); FLOOD=$($CORRAL show -p MainPID --value flood)
: > $B/rtimes
for i in $(seq $IT); do
  now; T0=$T
  $CORRAL daemon-reexec && $CORRAL is-active -q idle01 || { echo "reexec $i failed"; exit 1; }
  now; echo $(( T - T0 )) >> $B/rtimes
done
AFTER=$(pids)
[ "$BEFORE" = "$AFTER" ] && [ "$FLOOD" = "$($CORRAL show -p MainPID --value flood)" ] \
  && echo "every main PID kept across $IT daemon-reexecs" || { echo "main PIDs changed"; exit 1; }
$CORRAL stop flood
$CORRAL journal --no-pager -u flood -o cat --stream stdout | awk '
  { if ($0 != "seq " NR) { print "flood line " NR " is \"" $0 "\""; bad=1; exit 1 } }
  END { if (!bad) print NR " flood lines, none lost, repeated or cut" }' || exit 1
sort -n $B/rtimes | awk -v n=$IT '{a[NR]=$1} END {printf "daemon-reexec -> next command answered, %d units + a flood: median %.1f ms, max %.1f ms\n", '"$N"', a[int((n+1)/2)]/1000, a[n]/1000}'
