import os,sys,subprocess,re,shutil,statistics
rows=int(sys.argv[1]); dirs=sys.argv[2:]; pre=os.environ.get('PRE','').split()
def st(): return [int(x) for x in open('/sys/block/vda/stat').read().split()]
res={}
for i in range(rows):
    order=dirs if i%2==0 else dirs[::-1]; line=[]
    for d in order:
        D='/var/tmp/pub19-fl'; shutil.rmtree(D,ignore_errors=True)
        a=st()
        out=subprocess.run(pre+[d+'/natrec-bigstore','--dir',D,'--mappings','4000000','--days','10','--no-drop-caches','--write-behind','--write-only'],capture_output=True,text=True).stdout
        b=st()
        m=re.search(r'appends \+ seals: (\d+) mappings/s',out)
        w=re.search(r'waited for: ([\d.]+) s',out)
        v=(int(m.group(1))/1e6,b[14]-a[14],b[15]-a[15],b[4]-a[4],float(w.group(1)) if w else -1)
        res.setdefault(d,[]).append(v); line.append(f"{os.path.basename(d)} {v[0]:.2f}M flushes {v[1]} {v[2]}ms writes {v[3]} sealwait {v[4]}")
    print(f"row {i+1}: "+" | ".join(line),flush=True)
shutil.rmtree('/var/tmp/pub19-fl',ignore_errors=True)
for d in dirs:
    v=res[d]; print(d,'M/s med %.2f'%statistics.median(x[0] for x in v),'wins>=5M',sum(x[0]>=5 for x in v),'flushes med',statistics.median(x[1] for x in v),'flush ms med',statistics.median(x[2] for x in v),'writes med',statistics.median(x[3] for x in v),'sealwait med',statistics.median(x[4] for x in v))
