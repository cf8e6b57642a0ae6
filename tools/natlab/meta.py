#!/usr/bin/env python3
"""Write NAME.meta.json for a natlab run (called by tools/natlab.sh)."""
import argparse, json, os, struct, time
from datetime import datetime, timezone

def iso(t):
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

def pcap_info(path):
    with open(path, "rb") as f:
        hdr = f.read(24)
    magic = struct.unpack("<I", hdr[:4])[0]
    prec = {0xa1b2c3d4: "usec", 0xa1b23c4d: "nsec"}.get(magic, "unknown")
    snap, lt = struct.unpack("<II", hdr[16:24])
    names = {1: "EN10MB", 113: "LINUX_SLL", 276: "LINUX_SLL2"}
    return {"file": os.path.basename(path), "format": "pcap", "linktype": lt,
            "linktype_name": names.get(lt, str(lt)), "timestamp_precision": prec,
            "snaplen": snap, "bytes": os.path.getsize(path)}

ap = argparse.ArgumentParser()
for k in ("work", "out", "name", "truth-mode", "cap-start", "cap-end", "tcpdump-version",
          "libpcap-version", "conntrack-version", "kernel", "reap-interval"):
    ap.add_argument("--" + k, required=True)
a = ap.parse_args()
W, outdir = a.work, os.path.dirname(a.out)

roles = {("nrlab-nat", "nat-in"): "inside", ("nrlab-nat", "nat-out"): "outside",
         ("nrlab-nat", "lo"): "loopback", ("nrlab-sub", "sub0"): "subscriber-side veth",
         ("nrlab-remote", "rem0"): "remote-side veth"}
namespaces = {}
for ns in ("nrlab-sub", "nrlab-nat", "nrlab-remote"):
    links = json.load(open(os.path.join(W, "links.%s.json" % ns)))
    addrs = {x["ifname"]: [ai["local"] + "/" + str(ai["prefixlen"]) for ai in x.get("addr_info", [])]
             for x in json.load(open(os.path.join(W, "addrs.%s.json" % ns)))}
    namespaces[ns] = [{"name": l["ifname"], "ifindex": l["ifindex"], "mac": l.get("address"),
                       "role": roles.get((ns, l["ifname"])), "ipv4": addrs.get(l["ifname"], [])}
                      for l in links]

sysctls = dict(l.strip().split("=", 1) for l in open(os.path.join(W, "sysctl.txt")) if "=" in l)
cases = [json.loads(l) for l in open(os.path.join(W, "cases.jsonl")) if l.strip()]
cases.sort(key=lambda c: (c["start_unix"], c["case"]))
for c in cases:
    c["start"] = iso(c["start_unix"]); c["end"] = iso(c["end_unix"])

case_desc = {
    1: "port preserving TCP, clean FIN close",
    2: "two subscribers, same source port, same remote, overlapping: second is remapped",
    3: "SNAT pool 203.0.113.10-203.0.113.12 for 100.64.0.128/25",
    4: "same public ip:port held at once by two subscribers towards different remotes",
    5: "same public ip:port reused over time (second flow starts after the first's DESTROY)",
    6: "UDP without reply (remote DROPs udp/9999)",
    7: "retransmitted SYNs (remote DROPs SYNs to tcp/81 for ~1.5 s)",
    8: "TCP flow opened before the capture started (SYN not captured)",
    9: "ICMP echo, same identifier 4660 from two subscribers (second id remapped)",
    10: "TCP reset by the server (SO_LINGER 0)",
    11: "NAT host's own traffic from 203.0.113.1 (not a mapping; in untranslated.jsonl)",
    12: "untranslated subscriber 100.64.0.5 (forwarded without NAT; in untranslated.jsonl)",
}
caps = {}
for kind, iface in (("any", "any"), ("inside", "nat-in"), ("outside", "nat-out")):
    p = os.path.join(outdir, "%s.%s.pcap" % (a.name, kind))
    if os.path.exists(p):
        caps[kind] = dict(pcap_info(p), capture_interface=iface, namespace="nrlab-nat")
caps_note = ("tcpdump -s 128 -U in nrlab-nat; the inside capture uses --time-stamp-precision=nano, "
             "any/outside the default microseconds. -i any on this tcpdump writes LINUX_SLL2 (276) whose "
             "interface index field refers to the nrlab-nat ifindex values listed under namespaces.")
meta = {
    "name": a.name,
    "generator": "tools/natlab.sh",
    "generated": iso(time.time()),
    "kernel": a.kernel,
    "tcpdump_version": a.tcpdump_version,
    "libpcap_version": a.libpcap_version,
    "conntrack_version": a.conntrack_version,
    "truth_source": ("conntrack -E -e NEW,DESTROY -o timestamp,id in nrlab-nat (timestamps are event "
                     "reception times in userspace)" if a.truth_mode == "events" else
                     "conntrack -L polling at ~10 Hz in nrlab-nat (conntrack -E unavailable); times accurate to ~100 ms"),
    "truth_mode": a.truth_mode,
    "destroy_note": ("DESTROY comes when the kernel reaps the expired entry; natlab runs `conntrack -L` in nrlab-nat "
                     "every %s s, which evicts expired entries during the dump, so destroy times are within about "
                     "that interval (plus scheduling) of the real expiry" % a.reap_interval),
    "capture_start": iso(float(a.cap_start)), "capture_start_unix": float(a.cap_start),
    "capture_end": iso(float(a.cap_end)), "capture_end_unix": float(a.cap_end),
    "captures": caps, "captures_note": caps_note,
    "namespaces": namespaces,
    "addresses": {
        "subscribers": ["100.64.0.2", "100.64.0.3", "100.64.0.4", "100.64.0.5", "100.64.0.130", "100.64.0.131", "100.64.0.132"],
        "nat_inside": "100.64.0.1/24 on nat-in",
        "nat_outside": "203.0.113.1/24 on nat-out (MASQUERADE source)",
        "nat_pool": ["203.0.113.10", "203.0.113.11", "203.0.113.12"],
        "remote_servers": ["198.51.100.10", "198.51.100.11"],
        "untranslated_subscriber": "100.64.0.5",
    },
    "nat_rules": open(os.path.join(W, "nat.rules")).read().splitlines(),
    "remote_rules": ["-A INPUT -p udp --dport 9999 -j DROP (whole run)",
                     "-I INPUT -p tcp --dport 81 --syn -j DROP (~1.5 s during case 7)"],
    "conntrack_sysctls": {k: int(v) for k, v in sysctls.items()},
    "case_descriptions": {str(k): v for k, v in case_desc.items()},
    "cases": cases,
}
with open(a.out, "w") as f:
    json.dump(meta, f, indent=1)
    f.write("\n")
