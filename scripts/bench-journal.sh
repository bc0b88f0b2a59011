#!/usr/bin/env bash
# bench-journal.sh [runs] [N]: corral's journal end to end, beside the peers of
# ../shared/bench-peers (same generator, same endpoints, same queries), so the
# numbers can be quoted as ratios measured in one run on a noisy machine.
#
#  1. ingest: `gen N | journal_ingest DIR unit` (the manager's pipe reader + writer,
#     durable: ends after the final fsync'd commit) vs `gen | cat > file; sync`,
#     `gen | s6-log ...; sync` and journald (`systemd-cat gen; journalctl --sync`).
#     Also: bytes on disk, the ingesting process's peak RSS, the largest windows the
#     writer saw (output read and not in the side log: what a kill -9 loses; the
#     largest commit: what a power loss loses on top), and the same ingest without the
#     side log (corral-noside: the same budget, held until each commit, as before it).
#  2. realistic: N lines of make-realistic-log.py (access, app, JSON, stack-trace lines)
#     ingested as one unit: the store file against the raw text (and zstd -3 of it),
#     where its bytes go (examples/journal_space), then hyperfine on
#     `corral journal -g PAT` vs `rg PAT`, `grep PAT` on the text file and
#     `journalctl -g PAT` on journald fed the same lines (every command's output to a
#     file: grep stops at the first match when it writes to /dev/null).
#  3. query: a 50-unit store (50 paced writers x 20000 lines at 1000 lines/s, as
#     query.sh builds journald's), then hyperfine on whole `corral journal` processes
#     vs `journalctl -D` on journald's store built the same way.
#
# SKIP_JOURNALD=1 skips journald (its builds take ~30 s); SKIP_INGEST=1 skips part 1,
# SKIP_REALISTIC=1 part 2, SKIP_QUERY=1 part 3; PAT (default 'ERROR.*timeout') is the -g pattern.
# Data under $BENCH_DIR (default /tmp/corral-journal-bench; give each worktree its own
# when several run the bench).
set -euo pipefail
RUNS=${1:-3}; N=${2:-1000000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEERS=${PEERS:-$ROOT/../shared/bench-peers}
W=${BENCH_DIR:-/tmp/corral-journal-bench}; mkdir -p $W; R=$W/results; mkdir -p $R
G=$W/gen; [ -x $G ] || gcc -O2 -o $G $PEERS/gen.c
# Two builds: examples pull in the dev-dependencies' tokio features, which the
# shipped CLI is built without.
(cd $ROOT && cargo build -q --release --bin corral && cargo build -q --release --example journal_ingest --example journal_units --example journal_space)
C=$ROOT/target/release/corral; ING=$ROOT/target/release/examples/journal_ingest
UNITS=$ROOT/target/release/examples/journal_units; SPACE=$ROOT/target/release/examples/journal_space
MID=$(cat /etc/machine-id); J=/var/log/journal/$MID
now() { date +%s%N; }
HF0="hyperfine -N --warmup 3 --style basic"
med() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }

if [ "${SKIP_INGEST:-0}" != 1 ]; then
echo "== ingest: $N lines x 100 B, $RUNS runs (median) =="
: > $R/ingest.tsv; : > $R/window.txt
for r in $(seq $RUNS); do
  rm -rf $W/st; sync
  t0=$(now); $G $N unit | $ING $W/st unit 2> $W/ing.err; t1=$(now)
  n=$($C journal -D $W/st -o cat | wc -l)
  [ "$n" = "$N" ] || { echo "corral stored $n of $N lines" >&2; exit 1; }
  read -r _ _ _ rss _ < $W/ing.err
  echo -e "corral\t$(( (t1-t0)/1000 ))\t$(stat -c %s $W/st/journal.redb)\t$rss" >> $R/ingest.tsv
  # The largest windows the writer saw (bytes not in the side log, ms from read to
  # commit, bytes of the largest commit).
  grep '^window ' $W/ing.err | sed 's/^/corral /' >> $R/window.txt
  # The same budget without the side log: held until each commit, as before it.
  rm -rf $W/st; sync
  t0=$(now); $G $N unit | $ING $W/st unit 131072 no-side-log 2> $W/ing.err; t1=$(now)
  echo -e "corral-noside\t$(( (t1-t0)/1000 ))\t$(stat -c %s $W/st/journal.redb)\t-" >> $R/ingest.tsv
  rm -f $W/file; sync
  t0=$(now); $G $N unit | cat > $W/file; sync $W/file; t1=$(now)
  echo -e "cat-file\t$(( (t1-t0)/1000 ))\t$(stat -c %s $W/file)\t-" >> $R/ingest.tsv
  if command -v s6-log >/dev/null; then
    rm -rf $W/s6; mkdir -p $W/s6; sync
    t0=$(now); $G $N unit | s6-log -b n20 s16777215 T $W/s6; find $W/s6 -type f -print0 | xargs -0 -r sync; t1=$(now)
    echo -e "s6-log\t$(( (t1-t0)/1000 ))\t$(du -sb $W/s6 | cut -f1)\t-" >> $R/ingest.tsv
  fi
  if [ "${SKIP_JOURNALD:-0}" != 1 ]; then
    $PEERS/journald_ctl.sh restart-clean; sync
    t0=$(now); systemd-cat -t ingest$r $G $N unit; journalctl --sync; t1=$(now)
    echo -e "journald\t$(( (t1-t0)/1000 ))\t$(du -sb $J | cut -f1)\t-" >> $R/ingest.tsv
  fi
done
for p in corral corral-noside cat-file s6-log journald; do
  us=$(awk -v p=$p '$1==p{print $2}' $R/ingest.tsv | med); [ -n "$us" ] || continue
  bytes=$(awk -v p=$p '$1==p{print $3}' $R/ingest.tsv | tail -1)
  rss=$(awk -v p=$p '$1==p{print $4}' $R/ingest.tsv | tail -1)
  printf "%-9s %8.3f s  %10.0f lines/s  %6.1f MB on disk  peak RSS %s kB\n" $p \
    "$(echo "$us/1000000" | bc -l)" "$(echo "$N*1000000/$us" | bc -l)" "$(echo "$bytes/1000000" | bc -l)" "$rss"
done | tee $R/ingest.summary
s6=$(awk '$1=="s6-log"{print $2}' $R/ingest.tsv | med)
for p in corral corral-noside; do
  us=$(awk -v p=$p '$1==p{print $2}' $R/ingest.tsv | med)
  [ -n "$s6" ] && printf "%-11s %.2fx s6-log (median against median)\n" $p "$(echo "$s6/$us" | bc -l)"
done | tee -a $R/ingest.summary
awk '{b=$3; if (b>mb) mb=b; if ($4>ma) ma=$4; if ($5>mc) mc=$5} END {printf "corral window seen: at most %d bytes read and not in the side log; %.1f ms from read to commit; largest commit %d bytes\n", mb, ma, mc}' $R/window.txt | tee -a $R/ingest.summary
fi

if [ "${SKIP_REALISTIC:-0}" != 1 ]; then
PAT=${PAT:-ERROR.*timeout}
REAL=$W/realistic-$N.log
[ -s $REAL ] || python3 $PEERS/make-realistic-log.py $N $REAL
RAW=$(stat -c %s $REAL)
echo "== realistic: $N lines, $RAW B raw; zstd -3 of the file: $(zstd -3 -c $REAL | wc -c) B =="
rm -rf $W/real; sync
t0=$(now); cat $REAL | $ING $W/real real 2> $W/real.err; t1=$(now)
$C journal -D $W/real -o cat | cmp -s - $REAL || { echo "corral did not give back the realistic lines" >&2; exit 1; }
FILE=$(stat -c %s $W/real/journal.redb)
{ echo "corral ingest $(echo "($t1-$t0)/1000000000" | bc -l | cut -c1-5) s ($(cut -d' ' -f3 $W/real.err) lines/s); file $FILE B = $(echo "$FILE/$RAW" | bc -l | cut -c1-5) x raw, right after ingest (no compaction)"
  cp $W/real/journal.redb $W/real-copy.redb; $SPACE $W/real-copy.redb; rm -f $W/real-copy.redb; } | tee $R/realistic.txt
GCMDS=("$C journal -D $W/real -g '$PAT' --no-pager" "rg '$PAT' $REAL" "grep '$PAT' $REAL")
want=$(rg -c "$PAT" $REAL); got=$($C journal -D $W/real -g "$PAT" -o cat | wc -l)
[ "$want" = "$got" ] || { echo "corral -g found $got lines, rg $want" >&2; exit 1; }
if [ "${SKIP_JOURNALD:-0}" != 1 ]; then
  $PEERS/journald_ctl.sh restart-clean; sync
  systemd-cat -t real cat $REAL; journalctl --sync
  echo "journald store of the same lines: $(du -sb $J | cut -f1) B; journalctl -g finds $(journalctl -D $J -g "$PAT" -o cat --no-pager | wc -l) lines" | tee -a $R/realistic.txt
  GCMDS+=("journalctl -D $J -g '$PAT' --no-pager")
fi
$HF0 --output=$W/grep.out --export-json $R/grep.json "${GCMDS[@]}" > /dev/null
python3 - $R <<'PY' | tee $R/grep.summary
import json, sys
R = sys.argv[1]
res = json.load(open(f'{R}/grep.json'))['results']
rg = next(r['median'] for r in res if r['command'].startswith('rg '))
for r in res:
    print(f"{r['median']*1000:8.2f} ms median ({r['median']/rg:4.2f}x rg; user {r['user']*1000:.0f} ms, sys {r['system']*1000:.0f} ms)  {r['command']}")
PY
fi

[ "${SKIP_QUERY:-0}" = 1 ] && exit 0
echo "== query: 50 units x 20000 lines, paced at 1000 lines/s each (~20 s) =="
rm -rf $W/q; $UNITS $W/q $G 20000 1000 50 2> $W/units.err
echo "corral build: $(cat $W/units.err); file $(stat -c %s $W/q/journal.redb) B" | tee $R/query-build.txt
TOT=1000000; A=$((TOT/2)); B=$((TOT/2+TOT/100))
read -r CA CB < <($C journal -D $W/q -o json | awk -v a=$A -v b=$B \
  'NR==a||NR==b{match($0,/"__REALTIME_TIMESTAMP":"[0-9]+"/); v[NR]=substr($0,RSTART+24,RLENGTH-25)} NR==b{print v[a], v[b]; exit}')
CA="@$((CA/1000000)).$(printf %06d $((CA%1000000)))"; CB="@$((CB/1000000)).$(printf %06d $((CB%1000000)))"
echo "corral window [$CA, $CB]: all $($C journal -D $W/q -S $CA -U $CB | wc -l) lines, unit07 $($C journal -D $W/q -u unit07 -S $CA -U $CB | wc -l)" | tee -a $R/query-build.txt
HF="$HF0 --runs 30"
CMDS=("$C --version"
      "$C journal -D $W/q -u unit07 -n 100 --no-pager"
      "$C journal -D $W/q -n 100 --no-pager"
      "$C journal -D $W/q -u unit07 -S $CA -U $CB --no-pager"
      "$C journal -D $W/q -S $CA -U $CB --no-pager")
if [ "${SKIP_JOURNALD:-0}" != 1 ]; then
  $PEERS/journald_ctl.sh restart-clean; sync
  for i in $(seq -w 1 50); do systemd-cat -t unit$i $G 20000 unit$i 1000 & done; wait; journalctl --sync
  echo "journald store: $(du -sb $J | cut -f1) B" | tee -a $R/query-build.txt
  read -r JA JB < <(journalctl -D $J --no-pager -o short-iso-precise $(for i in $(seq -w 1 50); do echo SYSLOG_IDENTIFIER=unit$i; done) \
     | awk -v a=$A -v b=$B 'NR==a{x=$1} NR==b{y=$1} END{print x, y}')
  JA=$(echo $JA | sed 's/T/ /; s/[+-][0-9:]*$//'); JB=$(echo $JB | sed 's/T/ /; s/[+-][0-9:]*$//')
  CMDS+=("journalctl --version"
         "journalctl -D $J -t unit07 -n 100 --no-pager"
         "journalctl -D $J -n 100 --no-pager"
         "journalctl -D $J -t unit07 --since '$JA' --until '$JB' --no-pager"
         "journalctl -D $J --since '$JA' --until '$JB' --no-pager")
fi
$HF --export-json $R/query.json "${CMDS[@]}" > /dev/null
python3 - $R <<'PY' | tee $R/query.summary
import json, sys
R = sys.argv[1]
for r in json.load(open(f'{R}/query.json'))['results']:
    print(f"{r['median']*1000:8.2f} ms median (min {r['min']*1000:.2f})  {r['command']}")
PY
