#!/usr/bin/env python3
"""natlab traffic client (runs in nrlab-sub or nrlab-nat).

Every mode binds an explicit source ip:port so the fixture is deterministic,
is bounded in packets and time, and appends one JSON line describing the case
to --log (label, proto, internal/remote endpoints, start/end unix times,
expected public ip).
modes:
  tcp     connect, send one request line, read the answer, hold, close (FIN)
  stream  connect, send a line every --interval for --duration, close
  rst     connect, send a request, server answers with RST
  udp     send --count datagrams, wait for replies (or not: --no-reply)
  icmp    --count echo requests with a fixed identifier (raw socket)
"""
import argparse, json, os, socket, struct, time, sys, fcntl

def log(a, extra):
    rec = {"label": a.label, "case": a.case, "proto": a.proto(),
           "internal_ip": a.src, "internal_port": a.sport,
           "remote_ip": a.dst, "remote_port": a.dport,
           "expected_public_ip": a.expect_public, "start_unix": a.t0,
           "end_unix": time.time()}
    rec.update(extra)
    if a.log:
        with open(a.log, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.write(json.dumps(rec) + "\n")
    print(json.dumps(rec), file=sys.stderr)

def tcp_sock(a):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((a.src, a.sport))
    s.settimeout(a.timeout)
    s.connect((a.dst, a.dport))
    return s

def readline(s):
    buf = b""
    while b"\n" not in buf:
        d = s.recv(512)
        if not d:
            break
        buf += d
    return buf

def checksum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff)
    s += s >> 16
    return ~s & 0xffff

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["tcp", "stream", "rst", "udp", "icmp"])
    ap.add_argument("--label", required=True)
    ap.add_argument("--case", type=int, default=0)
    ap.add_argument("--src", required=True)
    ap.add_argument("--sport", type=int, default=0)
    ap.add_argument("--dst", required=True)
    ap.add_argument("--dport", type=int, default=0)
    ap.add_argument("--hold", type=float, default=0.0)
    ap.add_argument("--interval", type=float, default=0.2)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--until-file", help="stream: stop early when this file exists")
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--icmp-id", type=int, default=0x4e52)
    ap.add_argument("--no-reply", action="store_true")
    ap.add_argument("--timeout", type=float, default=8.0)
    ap.add_argument("--expect-public")
    ap.add_argument("--log")
    a = ap.parse_args()
    a.proto = lambda: {"udp": "udp", "icmp": "icmp"}.get(a.mode, "tcp")
    a.t0 = time.time()
    extra = {"mode": a.mode}
    try:
        if a.mode == "tcp":
            s = tcp_sock(a)
            extra["connected_unix"] = time.time()
            s.sendall(b"GET natlab %s\n" % a.label.encode())
            extra["answer"] = readline(s).decode(errors="replace").strip()
            time.sleep(a.hold)
            s.shutdown(socket.SHUT_WR)
            while s.recv(512):
                pass
            s.close()
        elif a.mode == "stream":
            s = tcp_sock(a)
            n = 0
            end = time.time() + a.duration
            while time.time() < end and n < 100:
                if a.until_file and os.path.exists(a.until_file):
                    break
                s.sendall(b"line %d\n" % n)
                s.recv(512)
                n += 1
                time.sleep(a.interval)
            extra["lines"] = n
            s.shutdown(socket.SHUT_WR)
            while s.recv(512):
                pass
            s.close()
        elif a.mode == "rst":
            s = tcp_sock(a)
            s.sendall(b"GET natlab %s\n" % a.label.encode())
            try:
                extra["answer"] = readline(s).decode(errors="replace").strip()
                time.sleep(0.5)
                s.recv(512)
            except ConnectionResetError:
                extra["reset"] = True
            s.close()
        elif a.mode == "udp":
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((a.src, a.sport))
            s.settimeout(1.0 if a.no_reply else a.timeout)
            got = 0
            for i in range(min(a.count, 20)):
                s.sendto(b"natlab %s %d" % (a.label.encode(), i), (a.dst, a.dport))
                if not a.no_reply:
                    s.recvfrom(512)
                    got += 1
                if i + 1 < a.count:
                    time.sleep(a.interval)
            extra["replies"] = got
            s.close()
        elif a.mode == "icmp":
            s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
            s.bind((a.src, 0))
            s.settimeout(2.0)
            a.sport = a.icmp_id
            got = 0
            for seq in range(1, min(a.count, 10) + 1):
                payload = b"natlab-icmp-%02d" % seq
                hdr = struct.pack("!BBHHH", 8, 0, 0, a.icmp_id, seq)
                pkt = struct.pack("!BBHHH", 8, 0, checksum(hdr + payload), a.icmp_id, seq) + payload
                s.sendto(pkt, (a.dst, 0))
                end = time.time() + 2.0
                while time.time() < end:
                    try:
                        d, peer = s.recvfrom(1500)
                    except socket.timeout:
                        break
                    ihl = (d[0] & 0xf) * 4
                    t, _, _, iid, iseq = struct.unpack("!BBHHH", d[ihl:ihl + 8])
                    if t == 0 and iid == a.icmp_id and iseq == seq and peer[0] == a.dst:
                        got += 1
                        break
                if seq < a.count:
                    time.sleep(a.interval)
            extra["replies"] = got
            s.close()
    except Exception as e:  # record failures; the case list shows them
        extra["error"] = repr(e)
        log(a, extra)
        sys.exit(1)
    log(a, extra)

if __name__ == "__main__":
    main()
