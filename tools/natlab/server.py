#!/usr/bin/env python3
"""natlab servers, run inside the nrlab-remote namespace.

Bounded: exits by itself after --lifetime seconds (default 90) even if
nobody stops it.  Listens only on the 198.51.100.0/24 lab addresses.
  tcp 198.51.100.10:80, 198.51.100.11:80, 198.51.100.11:81  request/response
  tcp 198.51.100.10:8080   line echo (long-running flow, case 8)
  tcp 198.51.100.10:8081   reads a request then resets (SO_LINGER 0, case 10)
  udp 198.51.100.10:53     echo-style reply
"""
import argparse, socket, struct, threading, time, os, sys

def handle_rr(conn):
    with conn:
        conn.settimeout(10)
        try:
            buf = b""
            while b"\n" not in buf:
                d = conn.recv(512)
                if not d:
                    return
                buf += d
            conn.sendall(b"OK " + buf.split(b"\n", 1)[0][:40] + b"\n")
            # wait for the client's FIN (client closes first -> clean close)
            while conn.recv(512):
                pass
        except OSError:
            pass

def handle_echo(conn):
    with conn:
        conn.settimeout(10)
        try:
            while True:
                d = conn.recv(512)
                if not d:
                    return
                conn.sendall(d)
        except OSError:
            pass

def handle_rst(conn):
    conn.settimeout(10)
    try:
        buf = b""
        while b"\n" not in buf:
            d = conn.recv(512)
            if not d:
                break
            buf += d
        conn.sendall(b"BYE\n")
        time.sleep(0.1)
    except OSError:
        pass
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()  # -> RST

def tcp_server(addr, handler):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(addr)
    s.listen(16)
    while True:
        c, _ = s.accept()
        threading.Thread(target=handler, args=(c,), daemon=True).start()

def udp_server(addr):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(addr)
    while True:
        d, peer = s.recvfrom(512)
        s.sendto(b"R:" + d[:60], peer)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lifetime", type=float, default=90)
    ap.add_argument("--ready", help="file touched once all sockets listen")
    a = ap.parse_args()
    specs = [
        (tcp_server, ("198.51.100.10", 80), handle_rr),
        (tcp_server, ("198.51.100.11", 80), handle_rr),
        (tcp_server, ("198.51.100.11", 81), handle_rr),
        (tcp_server, ("198.51.100.10", 8080), handle_echo),
        (tcp_server, ("198.51.100.10", 8081), handle_rst),
    ]
    for fn, addr, h in specs:
        threading.Thread(target=fn, args=(addr, h), daemon=True).start()
    threading.Thread(target=udp_server, args=(("198.51.100.10", 53),), daemon=True).start()
    time.sleep(0.3)
    if a.ready:
        open(a.ready, "w").close()
    time.sleep(a.lifetime)

if __name__ == "__main__":
    main()
