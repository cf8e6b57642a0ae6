import subprocess,sys,os,shutil,re,collections
# perf sched_switch for one bigstore 4M --write-only run (PRE env e.g. "chrt -f 1"); prints writer waits,
# seal carry waits, per-thread-kind on-CPU ms and system idle ms during the run
b=sys.argv[1]; tag=sys.argv[2]; pre=os.environ.get('PRE','').split()
D='/var/tmp/wr20-perf'; shutil.rmtree(D,ignore_errors=True)
P=f'/tmp/wr20/{tag}.perf'
out=subprocess.run(pre+['perf','record','-a','-q','-o',P,'-e','sched:sched_switch','--call-graph','dwarf,16384',b+'/natrec-bigstore','--dir',D,'--mappings','4000000','--days','10','--no-drop-caches','--write-behind','--write-only'],capture_output=True,text=True).stdout
shutil.rmtree(D,ignore_errors=True)
rate=re.search(r'seals: (\d+) mappings/s',out).group(1)
s=subprocess.run(['perf','script','-i',P],capture_output=True,text=True).stdout
open(f'/tmp/wr20/{tag}.script','w').write(s)
r=subprocess.run(['python3','/tmp/app18/offcpu2.py',f'/tmp/wr20/{tag}.script'],capture_output=True,text=True).stdout
os.remove(P)
agg=collections.Counter()
for l in r.splitlines():
    m=re.match(r'\s*([\d.]+) ms\s+\((.*)\)',l)
    if not m: continue
    v=float(m.group(1)); k=m.group(2)
    if 'natrec-bigstore' in k:
        f=re.search(r"'natrec_storage::(\S+?)\+",k); agg['writer '+(f.group(1) if f else '?')]+=v
    elif 'fsync' in k and ('natrec-publish' in k or 'natrec-fsync' in k):
        agg['publish: '+('dir fsync' if 'fsync_dir' in k else 'file fsync')]+=v
    elif 'natrec-seal' in k and 'seal_log' in k: agg['seal: carry wait']+=v
    elif 'natrec-seal' in k and 'seal_thread+' in k: agg['seal: idle/queue']+=v
# on-CPU per comm, idle per cpu, from the headers
hdr=re.compile(r'^(\S.*?)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+): sched:sched_switch: prev_comm=(.*?) prev_pid=(\d+) .*?==> next_comm=(.*?) next_pid=(\d+)')
on={}; oncpu=collections.Counter(); t_first=None; t_last=None
for blk in s.split('\n\n'):
    l=blk.strip('\n').split('\n')[0] if blk.strip() else ''
    m=hdr.match(l)
    if not m: continue
    cpu=int(m.group(3)); t=float(m.group(4)); prevc=m.group(5); nextc=m.group(7)
    if t_first is None: t_first=t
    t_last=t
    if cpu in on:
        c,t0=on[cpu]; oncpu[c]+=t-t0
    on[cpu]=(nextc,t)
pass
kinds=collections.Counter()
for c,v in oncpu.items():
    k='idle' if c.startswith('swapper') else (c if c.startswith('natrec') else 'other')
    kinds[k]+=v
print(tag, rate, ' | '.join(f'{k} {v:.0f}' for k,v in sorted(agg.items()) if v>=5))
print('   on-CPU ms:', ' | '.join(f'{k} {v*1000:.0f}' for k,v in sorted(kinds.items())), f'| trace {1000*(t_last-t_first):.0f}')
