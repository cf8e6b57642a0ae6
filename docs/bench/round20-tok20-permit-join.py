#!/usr/bin/env python3
# Round 20 (tok20): with the probe build (round20-tok20-probe.patch: NATREC_PERMIT_LOG=FILE logs each permit
# wait P and each channel wait C, per thread), idle core-seconds during the pipeline by what the three
# pipeline threads did: H holding a permit, P asleep on one, C waiting on a channel without one; r/s as in
# round20-tok20-idle-states.py. The trace must use the monotonic clock:
#   NATREC_PERMIT_LOG=log.txt perf record -k mono -e sched:sched_switch -a -o sw.data -- natrec replay --threads 3 ...
#   perf script -i sw.data -F cpu,time,trace > sw.txt; python3 round20-tok20-permit-join.py sw.txt log.txt
import re, sys, collections, bisect
sw, lg = sys.argv[1], sys.argv[2]
L=open(lg).read().split('\n')
m=re.match(r'Instant \{ tv_sec: (\d+), tv_nsec: (\d+) \}', L[0]); base=int(m.group(1))+int(m.group(2))/1e9
spans=collections.defaultdict(list)
for l in L[1:]:
    if not l: continue
    t,k,a,b=l.split(); tid=int(t.split('/')[-1])
    spans[tid].append((base-int(a)/1e9, base-int(b)/1e9, k))
for t in spans: spans[t].sort()
ev=[]
for l in open(sw):
    m = re.match(r'\s*\[(\d+)\]\s+([\d.]+):\s+prev_comm=(.*?) prev_pid=(\d+) .*prev_state=(\S+) ==> '
                 r'next_comm=(.*?) next_pid=(\d+)', l)
    if m: ev.append((float(m.group(2)), int(m.group(1)), m.group(3), int(m.group(4)), m.group(5), m.group(6), int(m.group(7))))
ev.sort()
nat=[e for e in ev if e[2].startswith('natrec') or e[5].startswith('natrec')]
t0,t1=nat[0][0],nat[-1][0]
ends={}
for e in nat:
    if e[2]=='natrec' and e[4][0] in 'XZ': ends.setdefault(e[3],e[0])
cut=min(ends.values())
pipe=sorted(ends)
def st(tid,t):
    s=spans.get(tid,[])
    i=bisect.bisect_right(s,(t,1e18,'z'))-1
    if i>=0 and s[i][0]<=t<s[i][1]: return s[i][2]
    return 'H'
for tid in pipe:
    s=spans.get(tid,[]); 
    for k in 'PC':
        x=[b-a for a,b,kk in s if kk==k]
        print(f"thread {tid}: {k} waits {len(x)} total {sum(x):.3f} s")
running={}; state={}; last=t0; by=collections.Counter()
for (t,cpu,pc,pp,ps,nc,np_) in ev:
    if t<t0: continue
    if t>cut: break
    n=sum(1 for p in running.values() if p==0)
    if n:
        mid=(last+t)/2
        key=' '.join(st(p,mid)+('r' if state.get(p,'').startswith('R') else ('s' if state.get(p,'').startswith(('S','D')) else '')) for p in pipe)
        by[key]+=(t-last)*n
    last=t; running[cpu]=np_
    if pc.startswith('natrec'): state[pp]=ps
    if nc.startswith('natrec'): state[np_]='run'
print("idle during pipeline by state of threads", pipe, "(H holding, P on permit, C on channel; r runnable-waiting, s asleep)")
for k,v in by.most_common(12): print(f"  {k:20s} {v:.3f}")
print("total", round(sum(by.values()),3))
