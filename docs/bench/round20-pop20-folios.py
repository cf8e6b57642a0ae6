#!/usr/bin/env python3
# Round 20 (pop20): how much of each file the page cache holds in PMD-sized (2 MiB) folios: maps
# the file, populates the map (MADV_POPULATE_READ; reads from the disk what is not cached) and
# reads FilePmdMapped from /proc/self/smaps_rollup. A capture in small folios costs a replay
# ~0.4 s more system time (page-table entries made and torn down), BENCHMARKS.md round 8.
#   python3 round20-pop20-folios.py FILE...
import ctypes, os, re, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                      ctypes.c_long]
for p in sys.argv[1:]:
    fd = os.open(p, os.O_RDONLY); n = os.fstat(fd).st_size
    a = libc.mmap(None, n, 1, 1, fd, 0)
    libc.madvise(ctypes.c_void_p(a), ctypes.c_size_t(n), 22)  # MADV_POPULATE_READ
    roll = open('/proc/self/smaps_rollup').read()
    pmd = int(re.search(r'FilePmdMapped:\s+(\d+) kB', roll).group(1)) << 10
    print(f'{p}: {pmd / 2**20:.0f} of {n / 2**20:.0f} MiB in 2 MiB folios ({100 * pmd / n:.0f} %)')
    libc.munmap(ctypes.c_void_p(a), ctypes.c_size_t(n)); os.close(fd)
