#!/usr/bin/env python3
# Round 20 (pop20): how much of each file is in the page cache (mincore on a fresh map), and the
# missing pages' runs: a capture "in the cache" may have scattered 4 KiB holes, which the replay's
# reader then reads from the disk (folio-lock waits on the read in MADV_POPULATE_READ).
#   python3 round20-pop20-mincore.py FILE...
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                      ctypes.c_long]
for p in sys.argv[1:]:
    fd = os.open(p, os.O_RDONLY); n = os.fstat(fd).st_size
    a = libc.mmap(None, n, 1, 1, fd, 0)  # PROT_READ, MAP_SHARED
    pages = (n + 4095) // 4096
    vec = (ctypes.c_ubyte * pages)()
    assert libc.mincore(ctypes.c_void_p(a), ctypes.c_size_t(n), vec) == 0
    runs, i = [], 0
    while i < pages:
        if vec[i] & 1:
            i += 1
            continue
        j = i
        while j < pages and not vec[j] & 1:
            j += 1
        runs.append((i, j)); i = j
    miss = sum(j - i for i, j in runs)
    print(f'{p}: {miss} of {pages} pages not cached ({miss * 4096 / 2**20:.1f} MiB) in {len(runs)} runs, '
          f'longest {max((j - i for i, j in runs), default=0)} pages')
    libc.munmap(ctypes.c_void_p(a), ctypes.c_size_t(n)); os.close(fd)
