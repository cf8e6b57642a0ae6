import os,sys,time,resource,mmap
# pw2.py MODE: 256 files, 8 writes of 4096 96-byte records after a 64-byte header; MODE off64 (write at record offset)
# or prefix (each write from the page boundary below, the partial page's bytes written again); then rewrite; then map+read
mode=sys.argv[1]; D='/var/tmp/sys21-pw'; os.makedirs(D,exist_ok=True)
data=os.urandom(64+8*393216)
def run(fresh):
    r0=resource.getrusage(resource.RUSAGE_SELF)
    for f in range(256):
        p=f'{D}/f{f}'; fd=os.open(p,os.O_RDWR|os.O_CREAT)
        if fresh: os.ftruncate(fd,64+8*393216+4096*10)
        os.pwrite(fd,data[:64],0); end=64
        for k in range(8):
            new=64+(k+1)*393216
            st=end if mode=='off64' else end//4096*4096
            os.pwrite(fd,data[st:new],st); end=new
        os.close(fd)
    r1=resource.getrusage(resource.RUSAGE_SELF)
    return r1.ru_stime-r0.ru_stime
def rd():
    r0=resource.getrusage(resource.RUSAGE_SELF); s=0
    for f in range(256):
        fd=os.open(f'{D}/f{f}',os.O_RDONLY); m=mmap.mmap(fd,64+8*393216,prot=mmap.PROT_READ)
        for o in range(0,len(m),4096): s+=m[o]
        m.close(); os.close(fd)
    r1=resource.getrusage(resource.RUSAGE_SELF)
    return r1.ru_stime-r0.ru_stime, r1.ru_minflt-r0.ru_minflt
a=run(True); b=run(False); c=rd()
print(mode,f"fresh sys {a:.3f} rewrite sys {b:.3f} map-read sys {c[0]:.3f} faults {c[1]}")
