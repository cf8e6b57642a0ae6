#!/bin/bash
# usage: wait21-pstat.sh BIN OUT  — one 10 M replay, --threads 2; sched_yield, futex, sched_switch events recorded per thread
B=$1; O=$2
A=$(python3 -c "import json;print(' '.join(json.load(open('/var/tmp/nb10/gen.json'))['replay_args']))")
rm -rf /var/tmp/wait21-run
perf record -q -o $O.data -e syscalls:sys_enter_sched_yield,syscalls:sys_enter_futex,sched:sched_switch -- $B replay --quiet --threads 2 --store /var/tmp/wait21-run $A >/dev/null
perf script -i $O.data -F tid,comm,event,trace > $O.txt 2>/dev/null
python3 - $O.txt <<'PY'
import sys,collections,re
c=collections.Counter(); names={}
for l in open(sys.argv[1]):
    m=re.match(r'\s*(.+?)\s+(\d+)\s+(\S+):\s*(.*)',l)
    if not m: continue
    comm,tid,ev,tr=m.groups()
    names[tid]=comm
    if ev=='sched:sched_switch':
        # prev_state: R (preempted) or S (sleep)
        st=re.search(r'prev_state=(\S+)',tr)
        ev='switch-'+(st.group(1) if st else '?')
    elif 'futex' in ev:
        op=re.search(r'op: (0x[0-9a-f]+)',tr)
        ev='futex-'+(op.group(1) if op else '?')
    c[(comm,ev)]+=1
for k,v in sorted(c.items()): print(f"{k[0]:16s} {k[1]:32s} {v}")
PY
