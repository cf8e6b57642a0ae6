#!/usr/bin/env python3
"""Where a replay's cores go, from a system-wide sched_switch trace (round18-pipe18.md).

    perf record -a -m 1024 -e sched:sched_switch -o sw.perf -- chrt -r 1 natrec replay ...
    perf script -i sw.perf > sw.txt
    round18-pipe18-sched.py sw.txt [WINDOW_S]          # per window: CPUs running natrec, idle, other
    round18-pipe18-sched.py sw.txt WINDOW_S threads    # and each natrec thread's run time

The trace must be system-wide (-a): a sched_switch is recorded in the context of the task
switched out, so a per-process trace misses every switch *to* natrec from another task.
"""
import collections
import re
import sys

HDR = re.compile(r'^(\S.*?)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+): sched:sched_switch: prev_comm=(.*?) '
                 r'prev_pid=(\d+) .*?prev_state=(\S+) ==> next_comm=(.*?) next_pid=(\d+)')
evs = []
for line in open(sys.argv[1]):
    m = HDR.match(line.strip())
    if m:
        evs.append((float(m.group(4)), int(m.group(3)), m.group(8), int(m.group(9))))
evs.sort()
t0, t1 = evs[0][0], evs[-1][0]
W = float(sys.argv[2]) if len(sys.argv) > 2 else 0.05
cur, since = {}, {}
acc = collections.defaultdict(collections.Counter)
run, name, first, last = collections.Counter(), {}, {}, {}


def add(a, b, what):
    while a < b:
        w = int((a - t0) / W)
        e = min(b, t0 + (w + 1) * W)
        if e <= a:  # float rounding at a window's edge
            w += 1
            e = min(b, t0 + (w + 1) * W)
        acc[w][what] += e - a
        a = e


for t, cpu, ncomm, npid in evs:
    if cpu in cur:
        comm, pid = cur[cpu]
        what = 'natrec' if comm.startswith('natrec') else ('idle' if pid == 0 else 'other')
        add(since[cpu], t, what)
        run[pid] += t - since[cpu]
        last[pid] = t
    cur[cpu] = (ncomm, npid)
    since[cpu] = t
    name[npid] = ncomm
    first.setdefault(npid, t)
total = collections.Counter()
for w in sorted(acc):
    c = acc[w]
    total.update(c)
    print(f"{w * W:6.2f} natrec {c['natrec'] / W:4.2f} idle {c['idle'] / W:4.2f} other {c['other'] / W:4.2f}")
print('total CPU-s', {k: round(v, 3) for k, v in total.items()}, 'span', round(t1 - t0, 3))
if len(sys.argv) > 3:
    for pid, v in sorted(run.items(), key=lambda x: -x[1]):
        if name.get(pid, '').startswith('natrec') and v > 0.001:
            print(f"{pid} {name[pid]:15s} {v * 1000:7.1f} ms  from {first[pid] - t0:.3f} to {last[pid] - t0:.3f}")
