#!/usr/bin/env python3
"""Fallback truth source when `conntrack -E` is unavailable: poll
`conntrack -L -o id` in NETNS at ~10 Hz (bounded by the caller's timeout) and
synthesize NEW/DESTROY lines in the same format as `conntrack -E -o timestamp,id`
(timestamps are poll times, so accurate only to ~100 ms)."""
import subprocess, sys, time
ns, out = sys.argv[1], sys.argv[2]
seen = {}
with open(out, "a") as f:
    for _ in range(1200):
        t = time.time()
        r = subprocess.run(["ip", "netns", "exec", ns, "conntrack", "-L", "-o", "id"],
                           capture_output=True, text=True, timeout=5)
        cur = {}
        for line in r.stdout.splitlines():
            toks = line.split()
            if len(toks) < 3:
                continue
            cid = [x for x in toks if x.startswith("id=")][-1]
            body = " ".join(x for x in toks[3:] if "=" in x and not x.startswith(("packets=", "bytes=", "mark=", "use=", "zone=")))
            cur[cid] = "%s %s %s" % (toks[0], toks[1], body)
        stamp = "[%d.%06d]" % (int(t), int((t % 1) * 1e6))
        for cid, body in cur.items():
            if cid not in seen:
                f.write("%s\t    [NEW] %s\n" % (stamp, body))
        for cid, body in seen.items():
            if cid not in cur:
                f.write("%s\t[DESTROY] %s\n" % (stamp, body))
        f.flush()
        seen = cur
        time.sleep(max(0, 0.1 - (time.time() - t)))
