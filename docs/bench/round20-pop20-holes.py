#!/usr/bin/env python3
# Round 20 (pop20): make a file's page cache look like the 10 M capture's after other work took
# memory: cached in small folios, but for a hole of HOLE_KIB every EVERY_KIB (the file is
# dropped from the cache, then read back around the holes with POSIX_FADV_RANDOM, so in 4 KiB
# folios: the kernel's reclaim takes those first). Only for a scratch copy of a capture, never
# a shared one (it drops the file from the page cache).
#   python3 round20-pop20-holes.py EVERY_KIB HOLE_KIB FILE...
import os, sys
every, hole = int(sys.argv[1]) << 10, int(sys.argv[2]) << 10
for p in sys.argv[3:]:
    fd = os.open(p, os.O_RDONLY); n = os.fstat(fd).st_size
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
    for off in range(0, n, every):
        h = off + every // 2
        os.pread(fd, h - off, off)
        os.pread(fd, every - (h + hole - off), h + hole)
    os.close(fd)
