# valgrind-corrald.sh: sourced by the scripts that profile the manager under
# valgrind (symbol-order.sh, bench-transaction.sh).

# stop_corrald PID CGROOT: ends the manager the script started (valgrind is
# slow to exit: up to 30 s), then kills and removes what is left in its
# cgroup root.
stop_corrald() {
  kill "$1" 2>/dev/null || true
  for _ in $(seq 300); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  if [ -d "$2" ]; then
    echo 1 > "$2/cgroup.kill" 2>/dev/null || true; sleep 0.5
    find "$2" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  fi
}
