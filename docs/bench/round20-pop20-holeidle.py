#!/usr/bin/env python3
# Round 20 (pop20): /tmp/r22/sysidle.py's alternating three-thread replays (wall, the process's
# CPU, the system's idle core-seconds from /proc/stat), but each run on a capture whose page
# cache was given holes first (round20-pop20-holes.py EVERY_KIB HOLE_KIB, not timed): the state
# the 10 M capture was found in after other work took memory. CAP: a scratch capture dir (never
# a shared one: the holes drop its pages), STORE: the store.
#   CAP=/var/tmp/pop20-cap STORE=/var/tmp/pop20-run python3 round20-pop20-holeidle.py ROWS EVERY_KIB HOLE_KIB BIN...
import json, os, subprocess, time, resource, shutil, sys, statistics
rows, every, hole = int(sys.argv[1]), sys.argv[2], sys.argv[3]; bins = sys.argv[4:]
d = os.environ['CAP']; args = json.load(open(d + '/gen.json'))['replay_args']
files = [args[args.index('--inside') + 1], args[args.index('--outside') + 1]]
holes = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'round20-pop20-holes.py')
tck = os.sysconf('SC_CLK_TCK')
def stat(): return list(map(int, open('/proc/stat').readline().split()[1:]))
res = {}
for i in range(rows):
    for b in (bins if i % 2 == 0 else bins[::-1]):
        s = os.environ.get('STORE', '/var/tmp/abs'); shutil.rmtree(s, ignore_errors=True)
        subprocess.run(['python3', holes, every, hole] + files, check=True)
        time.sleep(0.3)
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN); a = stat(); t0 = time.perf_counter()
        subprocess.run([b, 'replay', '--quiet', '--threads', '3', '--store', s] + args, check=True,
                       stdout=subprocess.DEVNULL)
        w = time.perf_counter() - t0; z = stat(); r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        dd = [(y - x) / tck for x, y in zip(a, z)]
        own = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        res.setdefault(b, []).append((w, own, dd[3], dd[4]))
        print(f"row {i+1} {os.path.basename(os.path.dirname(b))}: wall {w:.3f} cpu {own:.2f} "
              f"({own/w:.2f} cores) idle {dd[3]:.2f} iowait {dd[4]:.2f} steal {dd[7]:.2f}", flush=True)
for b in bins:
    v = res[b]
    print(f"{b}: wall med {statistics.median(x[0] for x in v):.3f} cpu med "
          f"{statistics.median(x[1] for x in v):.2f} idle med {statistics.median(x[2] for x in v):.3f} "
          f"iowait med {statistics.median(x[3] for x in v):.3f}")
