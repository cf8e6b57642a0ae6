import sys,re,collections
# from a perf script of sched_switch (-a, with stacks): idle time bucketed by what the writer thread
# (natrec-bigstore) is doing (running / blocked in first natrec frame), and by how many seal threads are runnable/running
s=open(sys.argv[1]).read()
hdr=re.compile(r'^(\S.*?)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+): sched:sched_switch: prev_comm=(.*?) prev_pid=(\d+) .*?prev_state=(\S+) ==> next_comm=(.*?) next_pid=(\d+)')
ev=[]
for blk in s.split('\n\n'):
    b=blk.strip('\n').split('\n')
    if not b or not b[0]: continue
    m=hdr.match(b[0])
    if not m: continue
    frames=[l.split(None,1)[1] if len(l.split(None,1))>1 else '' for l in b[1:]]
    nf=next((f.split(' (')[0] for f in frames if 'natrec_storage::' in f or 'bigstore::' in f),'?')
    nf=re.sub(r'\+0x[0-9a-f]+','',nf)
    ev.append((float(m.group(4)),int(m.group(3)),m.group(5),int(m.group(6)),m.group(7),nf,m.group(8),int(m.group(9))))
ev.sort()
t0=ev[0][0]
# writer pid: the natrec-bigstore comm
wp=next(e[3] for e in ev if e[2]=='natrec-bigstore')
oncpu={}  # cpu->comm
wstate='run'
idle=collections.Counter(); last=t0
bucket=collections.Counter()
for t,cpu,pc,pp,st,nf,nc,np_ in ev:
    dt=t-last
    nidle=sum(1 for c in oncpu.values() if c.startswith('swapper'))
    if dt>0 and nidle:
        idle[wstate]+=dt*nidle
        bucket[int((last-t0)/0.05)]+=dt*nidle
    last=t
    oncpu[cpu]=nc
    if pp==wp:
        wstate = 'preempted' if st=='R' or st=='R+' else 'blocked '+nf
    if np_==wp: wstate='run'
tot=sum(idle.values())
print(f'idle total {tot*1000:.0f} ms; by writer state:')
for k,v in idle.most_common(12): print(f'  {v*1000:7.1f}  {k}')
print('idle per 50 ms bucket:', ' '.join(f'{bucket[i]*1000:.0f}' for i in range(max(bucket)+1)))
