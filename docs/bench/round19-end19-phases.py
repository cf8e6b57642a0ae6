#!/usr/bin/env python3
"""Cores a replay's end holds, by phase (round19-end19.md), from a system-wide sched trace filtered
to the replay's own threads (found through sched_process_fork from the first `natrec` that forks) and
the phase marks of the probe build (round19-end19-probe.patch: NATREC_TT=1 prints `TT <µs CLOCK_MONOTONIC>
<thread> <mark> [cpu <thread CPU ms>]`).

    NATREC_TT=1 perf record -k CLOCK_MONOTONIC -a -m 16384 -e sched:sched_switch \\
        -e sched:sched_process_fork -o T.perf -- chrt -r 1 PROBE/natrec replay --quiet --threads 3 \\
        --store S ARGS 2>T.err >/dev/null
    perf script -i T.perf > T.txt
    round19-end19-phases.py T.txt T.err

Phases: pipeline end (the pairing thread done) -> seal_all start (the writing thread's tail: queued
events here, appends on natrec-append) -> the final seal encoded -> the process's last switch (publish,
the log's removal, exit). "own" counts every thread of the process (the seal's scoped helpers,
natrec-free, natrec-publish too); "other" is every other task. A trace of the process alone misses
the switches into it (round18-pipe18.md).
"""
import collections
import re
import sys

HDR = re.compile(r'^\s*(\S.*?)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+sched:sched_switch: prev_comm=(.*?) '
                 r'prev_pid=(\d+) .*?prev_state=(\S+) ==> next_comm=(.*?) next_pid=(\d+)')
FK = re.compile(r'^\s*(\S.*?)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+sched:sched_process_fork: comm=(.*?) '
                r'pid=(\d+) child_comm=(.*?) child_pid=(\d+)')
evs, forks, root = [], [], None
for line in open(sys.argv[1]):
    m = HDR.match(line)
    if m:
        evs.append((float(m.group(4)), int(m.group(3)), int(m.group(6)), int(m.group(9))))
        continue
    m = FK.match(line)
    if m:
        forks.append((float(m.group(4)), int(m.group(6)), int(m.group(8))))
        if root is None and m.group(5) == 'natrec':
            root = int(m.group(6))
mine = {root}
for _, parent, child in sorted(forks):
    if parent in mine:
        mine.add(child)
tt = {}
for line in open(sys.argv[2]):
    if line.startswith('TT '):
        x = line.split(None, 3)
        tt.setdefault(x[3].split(' [')[0].strip(), int(x[1]) / 1e6)
evs.sort()
last = max(t for t, _, prev, _ in evs if prev in mine)
marks = [('tail', tt['pairing done']), ('seal', tt['seal_all start']),
         ('publish+removal+exit', tt['encoded+freed']), ('exit', last)]
busy, cur, since = collections.Counter(), {}, {}


def add(a, b, kind):
    for i in range(len(marks) - 1):
        x, y = max(a, marks[i][1]), min(b, marks[i + 1][1])
        if y > x:
            busy[(i, kind)] += y - x


for t, cpu, _, nxt in evs:
    if cpu in cur:
        p = cur[cpu]
        add(since[cpu], t, 'own' if p in mine else ('idle' if p == 0 else 'other'))
    cur[cpu], since[cpu] = nxt, t
out, own_all = [], 0.0
for i in range(len(marks) - 1):
    w = marks[i + 1][1] - marks[i][1]
    own_all += busy[(i, 'own')]
    out.append(f"{marks[i][0]} {w * 1e3:.0f} ms at {busy[(i, 'own')] / w:.2f} cores "
               f"(idle {busy[(i, 'idle')] / w:.2f}, other {busy[(i, 'other')] / w:.2f})")
total = marks[-1][1] - marks[0][1]
print(f"end {total * 1e3:.0f} ms at {own_all / total:.2f} cores | " + " | ".join(out))
