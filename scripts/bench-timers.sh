#!/bin/bash
# bench-timers.sh [seconds] [count]: the cost of loaded timer units, then
# `corral calendar` per expression beside `systemd-analyze calendar`.
# bench-timers.sh calendar [runs]: only the latter.
# Two managers in turn on the same 1000 (count) oneshot services: the first
# without timers, the second with one enabled .timer per service, each at
# its own time of day (`OnCalendar=*-*-* HH:MM:00`, 2 to 19 hours from now,
# so none is due within the window; every third also Persistent=yes, every
# fifth RandomizedDelaySec=), AccuracySec=1min, all started by
# timers.target. Distinct definitions, as a user's timers are: 1000 equal
# ones would share their [Timer] sections and cost less than real ones.
# For each, over `seconds` (default 60) of idleness:
#   wakeups  context switches of every corrald thread (/proc/PID/task/*/status)
#   runs     timeslices run, from /proc/PID/task/*/schedstat
#   rss      VmRSS at the end, KiB
#   anon     RssAnon at the end, KiB (VmRSS without the binary's and the
#            libraries' pages, which move by up to 300 KB from run to run)
#   heap     Rss of the [heap] mapping (the malloc arena) at the end, KiB
# Needs root (cgroups). Everything started here is stopped here by PID.
set -u
ONLY_CALENDAR=0
if [ "${1:-}" = calendar ]; then ONLY_CALENDAR=1; RUNS=${2:-200}; set --; fi
RUNS=${RUNS:-200}
SECS=${1:-60}; N=${2:-1000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=/tmp/corral-bench-timers-$$; mkdir -p $B
CG2=$(awk '$9=="cgroup2"{print $5; exit}' /proc/self/mountinfo)
[ -n "$CG2" ] || { echo "no cgroup2 mount" >&2; exit 2; }
# As scripts/test: thin builds (fat LTO takes minutes per binary).
export CARGO_PROFILE_RELEASE_LTO=${CARGO_PROFILE_RELEASE_LTO:-false} CARGO_PROFILE_RELEASE_CODEGEN_UNITS=${CARGO_PROFILE_RELEASE_CODEGEN_UNITS:-16}
(cd $ROOT && cargo build --release --bins -q) || exit 2
CORRALD=$ROOT/target/release/corrald
CD=
cleanup() {
  [ -n "$CD" ] && kill $CD 2>/dev/null && wait $CD 2>/dev/null
  for d in $B/*/; do
    cg=$CG2/corral-bench-timers-$$-$(basename $d)
    [ -d $cg ] && find $cg -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  rm -rf $B
}
trap cleanup EXIT
counts() { # pid: "switches runs"
  local s=0 r=0 t
  for t in /proc/$1/task/*; do
    s=$((s + $(awk '/ctxt_switches/{n+=$2} END{print n}' $t/status)))
    r=$((r + $(awk '{print $3}' $t/schedstat)))
  done
  echo "$s $r"
}
run() { # name with-timers
  local d=$B/$1; mkdir -p $d/units/timers.target.wants $d/run $d/state
  local h0; h0=$(date +%-H)
  for i in $(seq -w 1 $N); do
    printf '[Service]\nType=oneshot\nExecStart=/bin/true\n' > $d/units/t$i.service
    if [ "$2" = 1 ]; then
      local n=$((10#$i)) extra=
      [ $((n % 3)) = 0 ] && extra+='Persistent=yes\n'
      [ $((n % 5)) = 0 ] && extra+="RandomizedDelaySec=$((n % 50 + 1))min\n"
      printf "[Timer]\nOnCalendar=*-*-* %02d:%02d:00\n$extra[Install]\nWantedBy=timers.target\n" \
        $(((h0 + 2 + n / 60) % 24)) $((n % 60)) > $d/units/t$i.timer
      ln -s ../t$i.timer $d/units/timers.target.wants/t$i.timer
    fi
  done
  XDG_RUNTIME_DIR=$d/run $CORRALD --user --units-dir $d/units --runit-dir $d/none \
    --state-dir $d/state --runtime-dir $d/run/corral --cgroup-root $CG2/corral-bench-timers-$$-$1 \
    </dev/null >$d/corrald.log 2>&1 & CD=$!
  until [ -S $d/run/corral/control.sock ]; do sleep 0.1; done
  sleep 3  # start-up (loading, timers.target) done
  local a b
  a=($(counts $CD)); sleep $SECS; b=($(counts $CD))
  local rss; rss=$(awk '/^VmRSS/{print $2}' /proc/$CD/status)
  local anon; anon=$(awk '/^RssAnon/{print $2}' /proc/$CD/status)
  # The main heap alone (since corrald keeps one malloc arena, nearly all
  # of RssAnon): the code pages and the thread stacks
  # move VmRSS too.
  local heap; heap=$(awk '/^[0-9a-f]/{h=/\[heap\]$/; next} h&&/^Rss:/{print $2}' /proc/$CD/smaps)
  local active; active=$(grep -c "Started t[0-9]*\.timer" $d/corrald.log)
  echo -e "$1\ttimers-started=$active\twakeups=$((b[0]-a[0]))\truns=$((b[1]-a[1]))\trss_kib=$rss\tanon_kib=$anon\theap_kib=$heap"
  kill $CD; wait $CD 2>/dev/null; CD=
}
# The whole CLI per expression (process start, parse, normalise, next
# elapse, print), mean of RUNS runs each, from the same base time; and
# systemd-analyze doing the same where it is installed.
calendar_cli() {
  local exprs=("daily" "Mon..Fri *-*-* 09:00" "Sat,Sun 2026..2030-01,7-1..7 00/6:00"
    "*:0/15" "*-*~01 04:00" "*:*:12.345678" "Mon *-*-* 09:00 Europe/Berlin" "*-02-29 12:00")
  local sa; sa=$(command -v systemd-analyze)
  echo "calendar CLI, mean of $RUNS runs, ms per run (corral / systemd-analyze):"
  for e in "${exprs[@]}"; do
    local t0 t1 t2 c s
    t0=$(date +%s%N)
    for _ in $(seq $RUNS); do $ROOT/target/release/corral calendar --base-time @1796637600 "$e" >/dev/null; done
    t1=$(date +%s%N)
    if [ -n "$sa" ]; then
      for _ in $(seq $RUNS); do $sa calendar --base-time @1796637600 "$e" >/dev/null 2>&1; done
    fi
    t2=$(date +%s%N)
    c=$(( (t1 - t0) / RUNS / 1000 )); s=$(( (t2 - t1) / RUNS / 1000 ))
    printf '  %-40s %d.%03d / %s\n' "$e" $((c / 1000)) $((c % 1000)) \
      "$([ -n "$sa" ] && printf '%d.%03d' $((s / 1000)) $((s % 1000)) || echo n/a)"
  done
}
if [ $ONLY_CALENDAR = 1 ]; then calendar_cli; exit 0; fi
echo "over ${SECS}s idle, $N services:"
run base 0
run timers 1
calendar_cli
