#!/usr/bin/env python3
# Round 20 (tok20): idle core-seconds of a three-thread replay while its pipeline runs (until the first
# pipeline thread exits), by the states of [writing (main), reader, pairing] threads: x running, r runnable but
# not running (switched out in R: preempted, or a sched_yield of crossbeam's backoff while it waits on a
# channel), s asleep; with the non-natrec tasks on the busy CPU. Input as round19-idle-runnable.py:
#   perf record -e sched:sched_switch -a -o sw.data -- natrec replay --threads 3 ...
#   perf script -i sw.data -F cpu,time,trace > sw.txt; python3 round20-tok20-idle-states.py sw.txt
import re,sys,collections
ev=[]
for l in open(sys.argv[1]):
    m = re.match(r'\s*\[(\d+)\]\s+([\d.]+):\s+prev_comm=(.*?) prev_pid=(\d+) .*prev_state=(\S+) ==> '
                 r'next_comm=(.*?) next_pid=(\d+)', l)
    if m: ev.append((float(m.group(2)), int(m.group(1)), m.group(3), int(m.group(4)), m.group(5), m.group(6), int(m.group(7))))
ev.sort()
nat=[e for e in ev if e[2].startswith('natrec') or e[5].startswith('natrec')]
t0,t1=nat[0][0],nat[-1][0]
ends={}
for e in nat:
    if e[2]=='natrec' and e[4][0] in 'XZ': ends.setdefault(e[3],e[0])
cut=min(ends.values()); pipe=sorted(ends)
running={}; state={}; last=t0; by=collections.Counter(); comm={}; tot=0
for (t,cpu,pc,pp,ps,nc,np_) in ev:
    if t>=t0 and t<=cut:
        n=sum(1 for p in running.values() if p==0)
        if n:
            def s(p):
                if p in running.values(): return 'x'
                return 'r' if state.get(p,'').startswith('R') else 's'
            busy=','.join(sorted(comm.get(p,'?') for p in running.values() if p!=0 and p not in pipe))
            by[(' '.join(s(p) for p in pipe), busy)]+=(t-last)*n; tot+=(t-last)*n
        last=t
    if t>cut: break
    running[cpu]=np_; comm[np_]=nc; comm[pp]=pc
    if pc.startswith('natrec'): state[pp]=ps
    if nc.startswith('natrec'): state[np_]='run'
print(f"pipeline {cut-t0:.3f} s, idle {tot:.3f}; by [writer reader pairing] state, other busy:")
for k,v in by.most_common(8): print(f"  {k[0]}  {k[1]:25s} {v:.3f}")
