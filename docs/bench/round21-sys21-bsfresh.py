#!/usr/bin/env python3
# usage: bsfresh.py ROWS BIN_DIR... ; /tmp/bs.py with a fresh store per run ($STORE-ROW-BINDIR), all deleted after the set:
# no store is deleted during the set (run it >= 6 min after the last deletion on this file system, see round21-sys21.md)
import os, sys, subprocess, re, statistics, resource, hashlib, glob, shutil
rows=int(sys.argv[1]); dirs=sys.argv[2:]; res={}; made=[]
for i in range(rows):
    order=dirs if i%2==0 else dirs[::-1]; line=[]
    for d in order:
        D=os.environ.get('STORE','/var/tmp/bsrun')+f'-{i}-{os.path.basename(d)}'; made.append(D)
        r0=resource.getrusage(resource.RUSAGE_CHILDREN)
        out=subprocess.run([d+'/natrec-bigstore','--dir',D,'--mappings','4000000','--days','10','--lookups','200','--no-drop-caches','--write-behind'],capture_output=True,text=True).stdout
        r1=resource.getrusage(resource.RUSAGE_CHILDREN)
        m=re.search(r'appends \+ seals: (\d+) mappings/s',out); a=re.search(r'appends alone: .*?: (\d+) mappings/s',out)
        h=hashlib.md5(b''.join(open(p,'rb').read() for p in sorted(glob.glob(D+'/partitions/*.part')))).hexdigest()[:8]
        v=(int(m.group(1))/1e6, int(a.group(1))/1e6, r1.ru_utime-r0.ru_utime, r1.ru_stime-r0.ru_stime)
        res.setdefault(d,[]).append(v); line.append(f"{os.path.basename(d)} {v[0]:.2f}M app {v[1]:.1f}M u{v[2]:.2f} s{v[3]:.2f} {h}")
    print(f"row {i+1}: "+" | ".join(line),flush=True)
for d in dirs:
    v=res[d]; print(f"{d}: M/s med {statistics.median(x[0] for x in v):.2f} (min {min(x[0] for x in v):.2f} max {max(x[0] for x in v):.2f}) appends med {statistics.median(x[1] for x in v):.1f} user {statistics.median(x[2] for x in v):.2f} sys {statistics.median(x[3] for x in v):.2f}")
for D in made: shutil.rmtree(D,ignore_errors=True)
