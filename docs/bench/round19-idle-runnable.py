#!/usr/bin/env python3
# Round 19 (lead): from a system-wide sched_switch trace of one replay, the idle core-seconds
# while the replay ran, and how much of it passed while a natrec thread was preempted and
# waiting to run (a lower bound: a thread woken from sleep is not counted as waiting).
#   perf record -e sched:sched_switch -a -o sw.data -- natrec replay --threads 3 ...
#   perf script -i sw.data -F cpu,time,trace > swa.txt
#   python3 round19-idle-runnable.py swa.txt
import re, sys
ev = []
for l in open(sys.argv[1]):
    m = re.match(r'\s*\[(\d+)\]\s+([\d.]+):\s+prev_comm=(.*?) prev_pid=(\d+) .*prev_state=(\S+) ==> '
                 r'next_comm=(.*?) next_pid=(\d+)', l)
    if m:
        ev.append((float(m.group(2)), int(m.group(1)), m.group(3), int(m.group(4)), m.group(5),
                   m.group(6), int(m.group(7))))
ev.sort()
nat = [e for e in ev if e[2].startswith('natrec') or e[5].startswith('natrec')]
t0, t1 = nat[0][0], nat[-1][0]
state, running = {}, {}
idle = idle_waiting = 0.0
last = t0
for (t, cpu, pc, pp, ps, nc, np_) in ev:
    if t < t0 or t > t1:
        continue
    n_idle = sum(1 for p in running.values() if p == 0)
    waiting = sum(1 for s in state.values() if s.startswith('R'))
    idle += (t - last) * n_idle
    idle_waiting += (t - last) * min(n_idle, waiting)
    last = t
    running[cpu] = np_
    if pc.startswith('natrec'):
        state[pp] = ps
    if nc.startswith('natrec'):
        state[np_] = 'run'
print(f"span {t1 - t0:.3f} s, idle core-s {idle:.3f}, "
      f"idle while a natrec thread was preempted and waiting {idle_waiting:.3f}")
