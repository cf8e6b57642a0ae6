#!/usr/bin/env python3
# Round 19 (lead): alternating three-thread replays under the normal scheduler and at chrt -f 1;
# the process's CPU, the whole system's busy and idle time (/proc/stat) over each run.
# usage: round19-sysidle.py NATREC_BIN ROWS   (the 10 M capture in /var/tmp/nb10, store /var/tmp/abs)
import json,os,subprocess,time,resource,shutil,sys
args=json.load(open('/var/tmp/nb10/gen.json'))['replay_args']
b=sys.argv[1]; n=int(sys.argv[2])
def stat():
    f=open('/proc/stat').readline().split()[1:]
    v=list(map(int,f)); return v
tck=os.sysconf('SC_CLK_TCK')
for i in range(n):
  for pre in ([],['chrt','-f','1']):
    s='/var/tmp/abs'; shutil.rmtree(s,ignore_errors=True)
    r0=resource.getrusage(resource.RUSAGE_CHILDREN); a=stat(); t0=time.perf_counter()
    subprocess.run(pre+[b,'replay','--quiet','--threads','3','--store',s]+args,check=True,stdout=subprocess.DEVNULL)
    w=time.perf_counter()-t0; z=stat(); r1=resource.getrusage(resource.RUSAGE_CHILDREN)
    d=[(y-x)/tck for x,y in zip(a,z)]
    # user nice system idle iowait irq softirq steal
    own=(r1.ru_utime-r0.ru_utime)+(r1.ru_stime-r0.ru_stime)
    busy=d[0]+d[1]+d[2]+d[5]+d[6]
    print(f"{'fifo' if pre else 'cfs '} wall {w:.3f} natrec cpu {own:.2f} ({own/w:.2f} cores) system busy {busy:.2f} ({busy/w:.2f}) idle {d[3]:.2f} iowait {d[4]:.2f} steal {d[7]:.2f}",flush=True)
