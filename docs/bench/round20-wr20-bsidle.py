#!/usr/bin/env python3
# usage: bsidle.py ROWS BINDIR... — alternating natrec-bigstore 4M --days 10 --write-behind --write-only runs
# ($STORE fresh each, PRE env prefix e.g. "chrt -f 1"); per run: the printed rate (appends + seals), process
# CPU, the whole system's idle core-s (/proc/stat idle+iowait) and steal while it ran; medians.
import os,sys,subprocess,re,statistics,resource,shutil,time
rows=int(sys.argv[1]); dirs=sys.argv[2:]; pre=os.environ.get('PRE','').split()
tck=os.sysconf('SC_CLK_TCK')
def stat(): return list(map(int,open('/proc/stat').readline().split()[1:]))
res={}
for i in range(rows):
    line=[]
    for d in (dirs if i%2==0 else dirs[::-1]):
        D=os.environ.get('STORE','/var/tmp/wr20-run'); shutil.rmtree(D,ignore_errors=True)
        r0=resource.getrusage(resource.RUSAGE_CHILDREN); a=stat(); t0=time.perf_counter()
        out=subprocess.run(pre+[d+'/natrec-bigstore','--dir',D,'--mappings','4000000','--days','10','--no-drop-caches','--write-behind','--write-only'],capture_output=True,text=True).stdout
        w=time.perf_counter()-t0; z=stat(); r1=resource.getrusage(resource.RUSAGE_CHILDREN)
        dd=[(y-x)/tck for x,y in zip(a,z)]
        m=float(re.search(r'appends \+ seals: (\d+) mappings/s',out).group(1))/1e6
        cpu=(r1.ru_utime-r0.ru_utime)+(r1.ru_stime-r0.ru_stime)
        v=(m,cpu,dd[3]+dd[4],dd[7],w); res.setdefault(d,[]).append(v)
        line.append(f"{os.path.basename(d)} {m:.2f}M cpu {cpu:.2f} idle {v[2]:.2f} steal {v[3]:.2f}")
    print(f"row {i+1}: "+" | ".join(line),flush=True)
for d in dirs:
    v=res[d]; med=lambda k: statistics.median(x[k] for x in v)
    print(f"{d}: M/s med {med(0):.2f} (min {min(x[0] for x in v):.2f} max {max(x[0] for x in v):.2f}, >=5: {sum(x[0]>=5 for x in v)}/{len(v)}) cpu {med(1):.2f} idle {med(2):.3f} steal {med(3):.3f} wall {med(4):.3f}")
