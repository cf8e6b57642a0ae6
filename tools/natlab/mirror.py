#!/usr/bin/env python3
"""Merge the inside (nano) and outside (micro) pcaps into one pcapng with two
interfaces (0 = nat-in, 1 = nat-out, both if_tsresol 9 / nanoseconds),
packets in timestamp order.  usage: mirror.py INSIDE.pcap OUTSIDE.pcap OUT.pcapng"""
import struct, sys

def read_pcap(path, ifid):
    data = open(path, "rb").read()
    magic = struct.unpack("<I", data[:4])[0]
    mult = {0xa1b2c3d4: 1000, 0xa1b23c4d: 1}[magic]
    lt = struct.unpack("<I", data[20:24])[0]
    off, pkts = 24, []
    while off + 16 <= len(data):
        sec, frac, incl, orig = struct.unpack("<IIII", data[off:off + 16])
        pkts.append((sec * 1_000_000_000 + frac * mult, ifid, orig, data[off + 16:off + 16 + incl]))
        off += 16 + incl
    return lt, pkts

def block(btype, body):
    pad = (-len(body)) % 4
    ln = 12 + len(body) + pad
    return struct.pack("<II", btype, ln) + body + b"\0" * pad + struct.pack("<I", ln)

def opt(code, val):
    return struct.pack("<HH", code, len(val)) + val + b"\0" * ((-len(val)) % 4)

def main(inside, outside, out):
    lt0, p0 = read_pcap(inside, 0)
    lt1, p1 = read_pcap(outside, 1)
    shb = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)
                + opt(4, b"natlab mirror.py") + opt(0, b""))
    idbs = b""
    for lt, name in ((lt0, b"nat-in"), (lt1, b"nat-out")):
        idbs += block(1, struct.pack("<HHI", lt, 0, 128) + opt(2, name) + opt(9, b"\x09") + opt(0, b""))
    epbs = b""
    for ts, ifid, orig, d in sorted(p0 + p1, key=lambda x: (x[0], x[1])):
        epbs += block(6, struct.pack("<IIIII", ifid, ts >> 32, ts & 0xffffffff, len(d), orig) + d)
    open(out, "wb").write(shb + idbs + epbs)

main(*sys.argv[1:4])
