#!/usr/bin/env python3
# usage: threads.py BIN [extra args]: one bigstore 4M --write-behind --write-only run; polls /proc/PID/task/*/stat
# every 5 ms, prints per thread kind utime/stime (s), minflt, majflt, and the process total from rusage.
import os,sys,subprocess,time,collections,resource,shutil,re
b=sys.argv[1]; D=os.environ.get('STORE','/var/tmp/sys21-run'); shutil.rmtree(D,ignore_errors=True)
pre=os.environ.get('PRE','').split()
r0=resource.getrusage(resource.RUSAGE_CHILDREN)
p=subprocess.Popen(pre+[b,'--dir',D,'--mappings','4000000','--days','10','--no-drop-caches','--write-behind','--write-only']+sys.argv[2:],stdout=subprocess.PIPE,text=True)
last={}; tck=os.sysconf('SC_CLK_TCK')
while p.poll() is None:
    try:
        for t in os.listdir(f'/proc/{p.pid}/task'):
            try: s=open(f'/proc/{p.pid}/task/{t}/stat').read()
            except OSError: continue
            comm=s[s.index('(')+1:s.rindex(')')]; f=s[s.rindex(')')+2:].split()
            last[t]=(comm,int(f[9]),int(f[11]),int(f[12]),int(f[7]))
    except OSError: pass
    time.sleep(0.005)
out=p.stdout.read(); r1=resource.getrusage(resource.RUSAGE_CHILDREN)
agg=collections.defaultdict(lambda:[0,0,0,0,0])
for t,(c,mj,u,s,mn) in last.items():
    a=agg[c]; a[0]+=1; a[1]+=u/tck; a[2]+=s/tck; a[3]+=mn; a[4]+=mj
print("| kind | threads | user s | sys s | minflt | majflt |"); print("|---|---:|---:|---:|---:|---:|")
for c,a in sorted(agg.items()): print(f"| {c} | {a[0]} | {a[1]:.2f} | {a[2]:.2f} | {a[3]} | {a[4]} |")
print(f"process rusage: user {r1.ru_utime-r0.ru_utime:.2f} sys {r1.ru_stime-r0.ru_stime:.2f} minflt {r1.ru_minflt-r0.ru_minflt} majflt {r1.ru_majflt-r0.ru_majflt}")
m=re.search(r'appends \+ seals: (\d+) mappings/s',out); print("rate", m.group(1) if m else out[-500:])
