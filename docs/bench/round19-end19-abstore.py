#!/usr/bin/env python3
"""Alternating rows of one build, its store on two file systems (round19-end19.md): each row runs a
one-CPU replay (`taskset -c 0`) and a three-thread replay of the 10 M capture with the store on A and
on B (order alternating by row; fresh store each run), and prints both ratios.

    PRE="chrt -r 1" round19-end19-abstore.py ROWS BIN STORE_A STORE_B     # e.g. /var/tmp/x /dev/shm/x
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

rows, b, stores = int(sys.argv[1]), sys.argv[2], sys.argv[3:5]
args = json.load(open(os.environ.get('CAP', '/var/tmp/nb10') + '/gen.json'))['replay_args']
pre = os.environ.get('PRE', '').split()
res = {}


def run(s, t):
    shutil.rmtree(s, ignore_errors=True)
    p = pre + (['taskset', '-c', '0'] if t == '1c' else [])
    t0 = time.perf_counter()
    subprocess.run(p + [b, 'replay', '--quiet', '--threads', '1' if t == '1c' else t, '--store', s] + args,
                   check=True, stdout=subprocess.DEVNULL)
    w = time.perf_counter() - t0
    shutil.rmtree(s, ignore_errors=True)
    return w


for i in range(rows):
    order = stores if i % 2 == 0 else stores[::-1]
    line = []
    for t in ('1c', '3'):
        for s in order:
            w = run(s, t)
            res.setdefault((s, t), []).append(w)
            line.append(f"{s}/{t} {w:.3f}")
    ratios = " ".join(f"{s}:{res[(s, '1c')][-1] / res[(s, '3')][-1]:.3f}" for s in stores)
    print(f"row {i + 1}: " + " | ".join(line) + "  ratio " + ratios, flush=True)
for s in stores:
    r = [a / c for a, c in zip(res[(s, '1c')], res[(s, '3')])]
    print(f"{s}: one CPU median {statistics.median(res[(s, '1c')]):.3f} s, three threads "
          f"{statistics.median(res[(s, '3')]):.3f} s, per-row ratio median {statistics.median(r):.3f}")
