import re,sys,statistics,math
# usage: wait21-ratio.py LOG... (ab.py logs, THREADS 1c,2): per binary dir, per-row own 1c / 2 ratio, median; also ratio against the row's base 1c
gm=lambda v: math.exp(sum(map(math.log,v))/len(v))
for f in sys.argv[1:]:
    rows=[l for l in open(f) if l.startswith('row')]
    r={}; w={}
    for l in rows:
        d={m[0]+'/'+m[1]:(float(m[2]),float(m[3]),float(m[4])) for m in re.findall(r'([\w.-]+)/(1c|2) ([\d.]+) u([\d.]+) s([\d.]+)',l)}
        bs=sorted({k.split('/')[0] for k in d})
        for b in bs:
            r.setdefault(b,[]).append(d[b+'/1c'][0]/d[b+'/2'][0])
            w.setdefault(b,[]).append((d[b+'/2'][0], d[b+'/2'][1]+d[b+'/2'][2], d[b+'/1c'][0], d['base/2'][0] if 'base/2' in d else 0))
    print(f"{f} ({len(rows)} rows)")
    for b,v in r.items():
        x=w[b]
        print(f"  {b:8s} 1c/2 row-med {statistics.median(v):.3f} (>=1.7: {sum(t>=1.7 for t in v)}, >=1.75: {sum(t>=1.75 for t in v)}) | 2: wall med {statistics.median(t[0] for t in x):.3f} cpu med {statistics.median(t[1] for t in x):.2f} | 1c med {statistics.median(t[2] for t in x):.3f} | 2 / base 2 gm {gm([t[0]/t[3] for t in x]) if x[0][3] else 0:.3f}")
