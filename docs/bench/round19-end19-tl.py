#!/usr/bin/env python3
"""A replay's CPU per 50 ms window (round19-end19.md): like round 18's tl.py (ticks per live thread),
plus the process's own total from /proc/PID/stat, which keeps the CPU of threads that have exited.
Short-lived threads (the tail's natrec-append, the seal's scoped helpers, natrec-free) often start and
end between two samples, so the per-thread columns miss their ticks; the "all" column does not.

    STORE=dir round19-end19-tl.py BIN THREADS       # THREADS: 3, or 1c (one thread held to CPU 0)
"""
import json, os, shutil, subprocess, sys, time

b, th = sys.argv[1], sys.argv[2]
d = os.environ.get('CAP', '/var/tmp/nb10')
args = json.load(open(d + '/gen.json'))['replay_args']
s = os.environ.get('STORE', '/var/tmp/abs')
shutil.rmtree(s, ignore_errors=True)
pre = ['taskset', '-c', '0'] if th == '1c' else []
t0 = time.perf_counter()
p = subprocess.Popen(pre + [b, 'replay', '--quiet', '--threads', th.replace('1c', '1'), '--store', s] + args,
                     stdout=subprocess.DEVNULL)
tick = os.sysconf('SC_CLK_TCK')
prev, prev_all, rows = {}, 0, []


def ticks(path):
    st = open(path).read()
    f = st[st.rindex(')') + 2:].split()
    return st[st.index('(') + 1:st.rindex(')')], int(f[11]) + int(f[12])


while p.poll() is None:
    now = time.perf_counter() - t0
    cur, total = {}, None
    try:
        total = ticks(f'/proc/{p.pid}/stat')[1]
        for t in os.listdir(f'/proc/{p.pid}/task'):
            try:
                name, v = ticks(f'/proc/{p.pid}/task/{t}/stat')
                cur[(t, name)] = v
            except OSError:
                pass
    except (OSError, ValueError):
        pass
    row = {}
    for k, v in cur.items():
        dv = v - prev.get(k, 0)
        if dv:
            row[k[1] + k[0][-3:]] = dv
    prev.update(cur)
    if total is not None:
        rows.append((now, total - prev_all, row))
        prev_all = total
    time.sleep(0.05)
w = time.perf_counter() - t0
for now, all_, row in rows:
    print(f"{now:6.2f} all:{all_:<3d} " + " ".join(f"{k}:{v}" for k, v in sorted(row.items())))
print("wall", round(w, 3), f"(ticks of 1/{tick} s; all = the process, exited threads included)")
