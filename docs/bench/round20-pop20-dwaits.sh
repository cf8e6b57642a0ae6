#!/bin/sh
# Round 20 (pop20): one traced three-thread replay of the 10 M capture; every sched_switch and
# sched_waking on both CPUs with kernel call graphs, then round20-pop20-dwaits.py on it.
#   flock -x /tmp/r22/quiet.lock sh round20-pop20-dwaits.sh BIN OUT_PREFIX [THREADS]
# (STORE: the replay's store, default /var/tmp/pop20-run; CAP: the capture dir, default /var/tmp/nb10)
set -e
BIN=$1; OUT=$2; TH=${3:-3}
CAP=${CAP:-/var/tmp/nb10}; STORE=${STORE:-/var/tmp/pop20-run}
A=$(python3 -c "import json;print(' '.join(json.load(open('$CAP/gen.json'))['replay_args']))")
rm -rf "$STORE"
[ -n "$MINCORE" ] && python3 "$(dirname "$0")/round20-pop20-mincore.py" $(python3 -c "import json;a=json.load(open('$CAP/gen.json'))['replay_args'];print(a[a.index('--inside')+1], a[a.index('--outside')+1])")
grep -E '^(pgscan_kswapd|pgscan_direct|pgsteal_kswapd|thp_split_pmd|pgfault|pgmajfault) ' /proc/vmstat > "$OUT.vm0"
perf record -q -m 8192 -e sched:sched_switch -e sched:sched_waking -a -g -o "$OUT.data" -- \
  "$BIN" replay --quiet --threads "$TH" --store "$STORE" $A > /dev/null 2> "$OUT.err"
grep -E '^(pgscan_kswapd|pgscan_direct|pgsteal_kswapd|thp_split_pmd|pgfault|pgmajfault) ' /proc/vmstat > "$OUT.vm1"
perf report -i "$OUT.data" --stats 2>/dev/null | grep -i lost || true
perf script -i "$OUT.data" -F comm,tid,cpu,time,event,trace,ip,sym > "$OUT.txt" 2>/dev/null
rm -rf "$STORE" "$OUT.data"
python3 "$(dirname "$0")/round20-pop20-dwaits.py" "$OUT.txt"
paste "$OUT.vm0" "$OUT.vm1" | awk '{print $1, $4-$2}'
