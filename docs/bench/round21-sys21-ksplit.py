#!/usr/bin/env python3
# usage: ksplit.py PERF.data: samples per thread kind split into user / kernel-by-entry (syscall name or fault)
import subprocess,sys,collections
out=subprocess.run(['perf','script','-i',sys.argv[1],'-F','comm,ip,sym,dso'],capture_output=True,text=True).stdout
agg=collections.Counter(); tot=collections.Counter(); ks=collections.Counter()
for blk in out.split('\n\n'):
    ls=[l for l in blk.strip().split('\n') if l.strip()]
    if not ls: continue
    comm=ls[0].strip().split()[0] if len(ls[0].split())==1 else ls[0].split()[0]
    frames=[l.strip() for l in ls[1:]]
    tot[comm]+=1
    if not frames or 'kernel.kallsyms' not in frames[0]: agg[(comm,'user')]+=1; continue
    ks[comm]+=1
    # entry: outermost kernel frame below the syscall/fault entry
    syms=[f.split()[1] if len(f.split())>1 else '?' for f in frames if 'kernel.kallsyms' in f]
    e='other'
    for i,s in enumerate(syms):
        if s.startswith('__x64_sys_') or s.startswith('__do_sys_') or s.startswith('ksys_'):
            e=s; 
        if s in ('exc_page_fault','asm_exc_page_fault'): e='page fault'; break
        if s.startswith('ret_from_fork') or s=='irqentry_exit_to_user_mode' or s.startswith('asm_sysvec') or s.startswith('asm_common_interrupt'): 
            if e=='other': e=s
    # prefer the outermost __x64_sys_ name
    xs=[s for s in syms if s.startswith('__x64_sys_')]
    if xs and e!='page fault': e=xs[-1]
    agg[(comm,e)]+=1
print("| kind | samples | user | kernel | kernel by entry (samples) |"); print("|---|---:|---:|---:|---|")
for c in sorted(tot,key=lambda c:-tot[c]):
    es=sorted(((e,n) for (cc,e),n in agg.items() if cc==c and e!='user'),key=lambda x:-x[1])
    print(f"| {c} | {tot[c]} | {agg[(c,'user')]} | {ks[c]} | "+", ".join(f"{e.replace('__x64_sys_','')} {n}" for e,n in es[:7])+" |")
