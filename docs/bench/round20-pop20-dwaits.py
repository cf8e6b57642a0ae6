#!/usr/bin/env python3
# Round 20 (pop20): from `perf script -F comm,tid,cpu,time,event,trace,ip,sym` of a system-wide
# sched_switch + sched_waking trace with call graphs (round20-pop20-dwaits.sh), every natrec
# thread's D-state (uninterruptible) sleeps: how many, how long (switch-out to wakeup), where it
# slept (the first kernel frames past the scheduler) and who woke it (the waker's thread and
# frames: the waker of a folio-lock wait is the thread that unlocked the folio).
#   python3 round20-pop20-dwaits.py trace.txt [-v]
import re, sys, collections
SKIP = ('__schedule', 'schedule', 'io_schedule', 'schedule_timeout', 'preempt_schedule',
        'ttwu_do_activate', 'try_to_wake_up', 'wake_up_q', 'sched_ttwu_pending', 'enqueue_task',
        'activate_task', 'ttwu_queue', 'wake_up_process', 'wake_up_state', '__wake_up_common',
        'wake_page_function', 'default_wake_function', 'autoremove_wake_function')
hdr = re.compile(r'^(\S.*?)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(sched:\S+):\s*(.*)$')
events, cur = [], None
for line in open(sys.argv[1], errors='replace'):
    m = hdr.match(line)
    if m:
        cur = [m.group(1), int(m.group(2)), int(m.group(3)), float(m.group(4)), m.group(5),
               m.group(6), []]
        events.append(cur)
    elif cur is not None and line.strip():
        parts = line.split()
        if len(parts) >= 2:
            cur[6].append(parts[1].split('+')[0])
events.sort(key=lambda e: e[3])
def frames(st, n=6):
    out = [f for f in st if not f.startswith(SKIP) and f != '[unknown]']
    return ' < '.join(out[:n])
def role(st):
    # how it entered the kernel (a system call or a page fault; user frames lack frame pointers)
    for f in st:
        if f.startswith('__x64_sys_') or f.startswith('__do_sys_') or f == 'exc_page_fault':
            return f
    return '?'
pending = {}  # pid -> [t out, comm, stack, waking (t, waker, stack) or None]
waits = []
names = {}
roles = {}
for comm, tid, cpu, t, ev, tr, st in events:
    if ev == 'sched:sched_switch':
        m = re.search(r'prev_comm=(.*?) prev_pid=(\d+) .*prev_state=(\S+) ==> .*next_pid=(\d+)', tr)
        if not m:
            continue
        nxt = int(m.group(4))
        if nxt in pending:
            # back on a CPU: the sleep ended at its waking (or here, when no waking was traced)
            t0, c, sst, wk = pending.pop(nxt)
            end, waker, wst = wk if wk else (t, '(no waking traced)', [])
            waits.append((nxt, c, t0, end - t0, frames(sst), waker, frames(wst), sst))
            roles.setdefault(nxt, collections.Counter())[role(sst)] += 1
        if m.group(1).startswith('natrec') and m.group(3).startswith('D'):
            pending[int(m.group(2))] = [t, m.group(1), st, None]
            names[int(m.group(2))] = m.group(1)
    elif ev == 'sched:sched_waking':
        m = re.search(r'comm=(.*?) pid=(\d+)', tr)
        if m and int(m.group(2)) in pending and pending[int(m.group(2))][3] is None:
            pending[int(m.group(2))][3] = (t, f'{comm}/{tid}', st)
by = collections.defaultdict(lambda: [0, 0.0])
for pid, c, t0, d, where, waker, wst, _ in waits:
    k = (f'{c}/{pid}', where.split(' < ')[0:4] and ' < '.join(where.split(' < ')[:4]),
         waker.split('/')[0], ' < '.join(wst.split(' < ')[:5]))
    by[k][0] += 1; by[k][1] += d
tot = collections.defaultdict(lambda: [0, 0.0])
for pid, c, t0, d, *_ in waits:
    tot[f'{c}/{pid}'][0] += 1; tot[f'{c}/{pid}'][1] += d
print('D-state sleeps per natrec thread (count, ms):')
for k, (n, s) in sorted(tot.items(), key=lambda x: -x[1][1]):
    print(f'  {k:28s} {n:4d} {s*1e3:8.2f} ms  ({roles[int(k.split("/")[1])].most_common(1)[0][0]})')
# The capture map's populate (MADV_POPULATE_READ: faultin_page_range) and read-ahead
# (MADV_WILLNEED: madvise_willneed), by what they waited on.
pop = collections.defaultdict(lambda: [0, 0.0])
for w in waits:
    st = w[7]
    if 'faultin_page_range' in st or 'madvise_populate' in st:
        kind = 'populate'
    elif 'madvise_willneed' in st or 'force_page_cache_ra' in st:
        kind = 'read-ahead'
    else:
        continue
    what = ('folio lock' if 'folio_wait_bit_common' in st else
            'mmap_lock' if any(f.startswith('rwsem_down') for f in st) else 'other')
    pop[f'{kind}, {what}'][0] += 1; pop[f'{kind}, {what}'][1] += w[3]
print('D-state sleeps in the capture map\'s madvise (count, ms):')
for k, (n, d) in sorted(pop.items()):
    print(f'  {k:28s} {n:4d} {d*1e3:8.2f} ms')
if not pop:
    print('  none')
print('by sleeper, sleeping site, waker, waking site:')
for k, (n, s) in sorted(by.items(), key=lambda x: -x[1][1]):
    print(f'  {n:4d} {s*1e3:8.2f} ms  {k[0]}\n      slept: {k[1]}\n      woken by {k[2]}: {k[3]}')
t_first = min(e[3] for e in events if e[0].startswith('natrec'))
if '-v' in sys.argv:
    for w in waits:
        print(f'{w[2]-t_first:.6f} {w[1]}/{w[0]} {w[3]*1e3:.3f} ms slept {w[4]} | by {w[5]}: {w[6]}')
