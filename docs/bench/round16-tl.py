#!/usr/bin/env python3
# timeline of a replay's threads: per 50 ms, CPU ticks per thread name
import json,os,sys,time,subprocess,shutil,collections
b=sys.argv[1]; th=sys.argv[2]; d=os.environ.get('CAP','/var/tmp/nb10')
args=json.load(open(d+'/gen.json'))['replay_args']
s='/var/tmp/abs'; shutil.rmtree(s,ignore_errors=True)
pre=['taskset','-c','0'] if th=='1c' else []
t0=time.perf_counter()
p=subprocess.Popen(pre+[b,'replay','--quiet','--threads',th.replace('1c','1'),'--store',s]+args,stdout=subprocess.DEVNULL)
prev={}; rows=[]
tick=os.sysconf('SC_CLK_TCK')
while p.poll() is None:
    now=time.perf_counter()-t0; cur={}
    try:
        for t in os.listdir(f'/proc/{p.pid}/task'):
            try:
                st=open(f'/proc/{p.pid}/task/{t}/stat').read()
                name=st[st.index('(')+1:st.rindex(')')]
                f=st[st.rindex(')')+2:].split()
                cur[(t,name)]=int(f[11])+int(f[12])
            except Exception: pass
    except Exception: pass
    row={}
    for k,v in cur.items():
        dv=v-prev.get(k,0)
        if dv: row[k[1]+k[0][-3:]]=dv
    prev.update(cur)
    rows.append((now,row))
    time.sleep(0.05)
w=time.perf_counter()-t0
for now,row in rows: print(f"{now:6.2f} "+" ".join(f"{k}:{v}" for k,v in sorted(row.items())))
print("wall",round(w,3))
