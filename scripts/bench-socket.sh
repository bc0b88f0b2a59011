#!/bin/bash
# bench-socket.sh [iters]: socket activation latency of corrald:
#   first   connect() on the listening socket of a stopped service -> the
#           first byte written back by the service that connection started
#   warm    the same exchange with that service already running
#   accept  Accept=yes: connect() -> the first byte written back by the
#           instance of the template started for that connection
#           (sequential connections, each instance exits after answering)
# The service is a small C program accepting on fd 3; the instance writes
# on the connection at fd 3. Needs root (cgroups), gcc, python3. Everything
# started here is stopped here by PID.
set -u
IT=${1:-20}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=/tmp/corral-bench-socket; rm -rf $B; mkdir -p $B/units $B/run $B/state
CG2=$(awk '$9=="cgroup2"{print $5; exit}' /proc/self/mountinfo)
[ -n "$CG2" ] || { echo "no cgroup2 mount" >&2; exit 2; }
CGROOT=$CG2/corral-bench-socket-$$
cat > $B/srv.c <<'C'
#include <sys/socket.h>
#include <unistd.h>
int main(void) {
  for (;;) {
    int c = accept(3, 0, 0);
    if (c < 0) return 1;
    if (write(c, "x", 1) != 1) return 1;
    close(c);
  }
}
C
gcc -O2 -o $B/srv $B/srv.c || exit 2
cat > $B/inst.c <<'C'
#include <unistd.h>
int main(void) { return write(3, "x", 1) == 1 ? 0 : 1; }
C
gcc -O2 -o $B/inst $B/inst.c || exit 2
(cd $ROOT && cargo build --release --bins -q) || exit 2
CORRAL=$ROOT/target/release/corral; CORRALD=$ROOT/target/release/corrald
export CORRAL_SOCKET=$B/run/corral/control.sock
printf '[Socket]\nListenStream=%s\n' $B/run/echo.sock > $B/units/echo.socket
printf '[Unit]\nStartLimitIntervalSec=0\n[Service]\nExecStart=%s\n' $B/srv > $B/units/echo.service
printf '[Socket]\nListenStream=%s\nAccept=yes\n' $B/run/acc.sock > $B/units/acc.socket
printf '[Service]\nExecStart=%s\n' $B/inst > $B/units/acc@.service

XDG_RUNTIME_DIR=$B/run setsid $CORRALD --user --units-dir $B/units --runit-dir $B/none \
  --state-dir $B/state --runtime-dir $B/run/corral --cgroup-root $CGROOT </dev/null >$B/corrald.log 2>&1 & CD=$!
cleanup() {
  $CORRAL stop echo.service echo.socket acc.socket >/dev/null 2>&1
  kill $CD 2>/dev/null
  sleep 1
  if [ -d $CGROOT ]; then echo 1 > $CGROOT/cgroup.kill 2>/dev/null; sleep 0.5; find $CGROOT -depth -type d -exec rmdir {} \; 2>/dev/null; fi
}
trap cleanup EXIT
for _ in $(seq 100); do [ -S $CORRAL_SOCKET ] && break; sleep 0.05; done
$CORRAL start echo.socket acc.socket || exit 1
python3 - $IT $B/run/echo.sock $CORRAL $B/run/acc.sock <<'PY'
import socket, statistics, subprocess, sys, time
it, path, corral, acc = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
def once(p=path):
    s = socket.socket(socket.AF_UNIX)
    t0 = time.perf_counter()
    s.connect(p)
    b = s.recv(1)
    t1 = time.perf_counter()
    s.close()
    assert b == b"x", b
    return (t1 - t0) * 1e6
first, warm = [], []
for _ in range(it):
    subprocess.run([corral, "stop", "echo.service"], check=True, stdout=subprocess.DEVNULL)
    time.sleep(0.2)
    first.append(once())
    time.sleep(0.2)
    warm.append(once())
accept = [once(acc) for _ in range(it * 5)]
def show(name, xs):
    xs = sorted(xs)
    p90 = xs[max(0, int(len(xs) * 0.9) - 1)]
    print(f"{name}: median {statistics.median(xs):.0f} us, p90 {p90:.0f} us, "
          f"min {xs[0]:.0f} us, max {xs[-1]:.0f} us ({len(xs)} runs)")
show("first (service stopped) -> answer", first)
show("warm (service running) -> answer ", warm)
show("accept (Accept=yes instance) -> answer", accept)
PY
