#!/usr/bin/env python3
"""Turn `conntrack -E -o timestamp,id` output into natlab truth files.

usage: truth.py EVENTS.log TRUTH.jsonl UNTRANSLATED.jsonl

One output object per conntrack entry (matched NEW/DESTROY by conntrack id,
falling back to the tuple).  An entry is TRANSLATED when orig src != reply dst
or orig sport != reply dport (for ICMP: orig echo id != reply echo id); those
go to TRUTH, all others (NAT host's own traffic, forwarded-without-NAT) go to
UNTRANSLATED.
"""
import json, re, sys
from datetime import datetime, timezone

LINE = re.compile(r"^\[(\d+)\.(\d+)\]\s+\[(NEW|DESTROY|UPDATE)\]\s+(\S+)\s+(\d+)\s+(.*)$")

def rfc3339(sec, usec):
    return datetime.fromtimestamp(sec, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + ".%06dZ" % usec

def parse(line):
    m = LINE.match(line.strip())
    if not m:
        return None
    sec, frac, ev, proto, _num, rest = m.groups()
    usec = int(frac.ljust(6, "0")[:6])
    kv = {}
    for tok in rest.split():
        if "=" in tok:
            k, v = tok.split("=", 1)
            kv.setdefault(k, []).append(v)
    src, dst = kv.get("src", []), kv.get("dst", [])
    if len(src) < 2 or len(dst) < 2:
        return None
    if proto == "icmp":
        ids = kv.get("id", [])
        oport, rport = int(ids[0]), int(ids[1])
        dport = 0
        ctid = ids[2] if len(ids) > 2 else None
        rsport = 0
    else:
        sp, dp = kv.get("sport", []), kv.get("dport", [])
        oport, dport = int(sp[0]), int(dp[0])
        rsport, rport = int(sp[1]), int(dp[1])
        ids = kv.get("id", [])
        ctid = ids[0] if ids else None
    return {
        "event": ev, "sec": int(sec), "usec": usec, "proto": proto, "ctid": ctid,
        "orig": (src[0], oport, dst[0], dport), "reply": (src[1], rsport, dst[1], rport),
    }

def main(events, truth_path, untr_path):
    entries, order = {}, []
    for line in open(events, errors="replace"):
        e = parse(line)
        if not e:
            continue
        key = e["ctid"] or (e["proto"], e["orig"], e["reply"])
        if e["event"] == "NEW":
            if key in entries and entries[key].get("destroy") is None:
                continue
            entries[key] = {"e": e, "destroy": None}
            order.append(key)
        elif e["event"] == "DESTROY":
            if key not in entries:  # entry older than the event listener
                entries[key] = {"e": e, "destroy": None, "no_new": True}
                order.append(key)
            entries[key]["destroy"] = e
    truth, untr = [], []
    for key in order:
        ent = entries[key]
        e, d = ent["e"], ent["destroy"]
        o, r = e["orig"], e["reply"]
        rec = {
            "proto": e["proto"],
            "internal_ip": o[0], "internal_port": o[1],
            "public_ip": r[2], "public_port": r[3],
            "remote_ip": o[2], "remote_port": o[3],
            "new": None if ent.get("no_new") else rfc3339(e["sec"], e["usec"]),
            "destroy": rfc3339(d["sec"], d["usec"]) if d else None,
            "new_unix": None if ent.get("no_new") else float("%d.%06d" % (e["sec"], e["usec"])),
            "destroy_unix": float("%d.%06d" % (d["sec"], d["usec"])) if d else None,
        }
        if e["ctid"]:
            rec["conntrack_id"] = int(e["ctid"])
        translated = (o[0] != r[2]) or (o[1] != r[3])
        if translated:
            truth.append(rec)
        else:
            rec["reason"] = "untranslated"
            untr.append(rec)
    for path, rows in ((truth_path, truth), (untr_path, untr)):
        with open(path, "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    print("truth: %d translated, %d untranslated, %d without DESTROY" % (
        len(truth), len(untr), sum(1 for r in truth + untr if r["destroy"] is None)))

if __name__ == "__main__":
    main(*sys.argv[1:4])
