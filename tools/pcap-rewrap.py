#!/usr/bin/env python3
"""Rewrites a natrec-gen two-eth capture (Ethernet, IPv4) into the shapes natrec-gen does not
write, for measuring the fast path on them (docs/bench/round6-prep.md):

  pppoe  the inside file's frames as a BRAS sees them: a VLAN tag (id 100), a PPPoE session
         (id from the subscriber address), PPP protocol 0x0021; the outside file unchanged.
  ipv6   every IPv4 packet as IPv6 (NAT66): a.b.c.d becomes fd00::a.b.c.d for subscribers
         (100.64.0.0/10, inside fc00::/7) and 2001:db8:ffff::a.b.c.d for the rest; ICMP echo
         becomes ICMPv6 echo (types 128/129); no extension headers; IP id lost.

usage: pcap-rewrap.py pppoe|ipv6 SRC_DIR DST_DIR   (copies gen.json with paths replaced)
"""
import json
import os
import struct
import sys


def frames(path):
    with open(path, "rb") as f:
        data = f.read()
    yield data[:24]
    off = 24
    while off + 16 <= len(data):
        ts_s, ts_f, incl, orig = struct.unpack_from("<IIII", data, off)
        yield (ts_s, ts_f, orig, data[off + 16 : off + 16 + incl])
        off += 16 + incl


def sub(a):
    return a[0] == 100 and (a[1] & 0xC0) == 64


def v6(a):
    return (b"\xfd" + b"\0" * 11 if sub(a) else bytes.fromhex("20010db8ffff") + b"\0" * 6) + a


def to_ipv6(ip):
    if len(ip) < 20 or ip[0] >> 4 != 4:
        return None
    ihl = (ip[0] & 15) * 4
    total, proto = struct.unpack_from(">H", ip, 2)[0], ip[9]
    l4 = bytearray(ip[ihl:])
    if proto == 1:
        proto = 58
        if l4:
            l4[0] = {8: 128, 0: 129}.get(l4[0], l4[0])
    hdr = struct.pack(">IHBB", 6 << 28, total - ihl, proto, 64) + v6(ip[12:16]) + v6(ip[16:20])
    return hdr + bytes(l4)


def rewrite(mode, src, dst, inside):
    out = open(dst, "wb")
    it = frames(src)
    out.write(next(it))
    for ts_s, ts_f, orig, fr in it:
        eth, et, ip = fr[:12], fr[12:14], fr[14:]
        if et != b"\x08\x00":
            new = fr
        elif mode == "pppoe" and inside:
            sid = int.from_bytes(ip[14:16], "big") if len(ip) >= 20 else 1
            ppp = b"\x00\x21" + ip
            new = eth + b"\x81\x00\x00\x64\x88\x64" + struct.pack(">BBHH", 0x11, 0, sid, len(ppp)) + ppp
        elif mode == "ipv6":
            v = to_ipv6(ip)
            new = fr if v is None else eth + b"\x86\xdd" + v
        else:
            new = fr
        grow = len(new) - len(fr)
        out.write(struct.pack("<IIII", ts_s, ts_f, len(new), orig + grow) + new)
    out.close()


def main():
    mode, src, dst = sys.argv[1:4]
    os.makedirs(dst, exist_ok=True)
    g = json.load(open(os.path.join(src, "gen.json")))
    for name in ("inside.pcap", "outside.pcap"):
        rewrite(mode, os.path.join(src, name), os.path.join(dst, name), name == "inside.pcap")
    g["replay_args"] = [a.replace(src.rstrip("/"), dst.rstrip("/")) for a in g["replay_args"]]
    g["rewrapped"] = mode
    json.dump(g, open(os.path.join(dst, "gen.json"), "w"), indent=2)


if __name__ == "__main__":
    main()
