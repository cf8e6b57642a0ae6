#!/usr/bin/env bash
# natlab: record small packet captures on a real Linux NAT (network namespaces)
# plus the kernel's conntrack events as ground truth.  See tools/README.md.
#
#   usage: sudo tools/natlab.sh OUTDIR [NAME]      (NAME defaults to "natlab")
#
# Environment (optional):
#   NATLAB_PREFIX   namespace name prefix (default nrlab-), so two labs can run at once
#   NATLAB_DURING   a command run inside the NAT namespace while the traffic flows
#                   (e.g. `natrec record ...`); started before the first case, given
#                   NATLAB_DURING_READY seconds to print NATLAB_DURING_READY_TEXT on
#                   stderr, stopped with SIGTERM (by PID) after the last case and
#                   waited for (at most 30 s); its stderr goes to OUTDIR/NAME.during.log
#                   and its exit code to OUTDIR/NAME.during.rc
#   NATLAB_DURING_RESTART  term|kill: halfway through the cases, stop NATLAB_DURING
#                   (SIGTERM and wait at most 30 s, or SIGKILL) and start it again; the
#                   first run's stderr/exit code go to NAME.during1.log/.rc, the times
#                   to NAME.restart.json (signal_unix, stopped_unix, ready_unix)
#   NATLAB_MIDWAY   a command run (sh -c, in the host namespace, at most 20 s) halfway
#                   through the cases, before any restart, with NATLAB_DURING_PID set;
#                   output to NAME.midway.log, exit code to NAME.midway.rc
#   With either of the two, case 13 (across-midway) streams tcp from before the
#   midway point until after it (a flow that spans the restart).
#
# All traffic stays inside the nrlab-* namespaces created here; addresses are
# only 100.64.0.0/10 (inside), 203.0.113.0/24 (NAT public) and 198.51.100.0/24
# (remote servers).  IPv6 is disabled in every namespace.  On any exit the
# namespaces are deleted and only the PIDs started here are stopped.
set -euo pipefail

OUTDIR=${1:?usage: natlab.sh OUTDIR [NAME]}
NAME=${2:-natlab}
HERE=$(cd "$(dirname "$0")" && pwd)
HELP=$HERE/natlab
PFX=${NATLAB_PREFIX:-nrlab-}
case "$PFX" in *[!a-z0-9-]*|'') echo "natlab.sh: NATLAB_PREFIX must be [a-z0-9-]+" >&2; exit 1;; esac
NS_SUB=${PFX}sub NS_NAT=${PFX}nat NS_REM=${PFX}remote
DURING=${NATLAB_DURING:-}
DURING_READY=${NATLAB_DURING_READY:-20}
DURING_READY_TEXT=${NATLAB_DURING_READY_TEXT:-recording}
DURING_PID=
DURING_RESTART=${NATLAB_DURING_RESTART:-}
MIDWAY=${NATLAB_MIDWAY:-}
case "$DURING_RESTART" in ''|term|kill) ;; *) echo "natlab.sh: NATLAB_DURING_RESTART must be term or kill" >&2; exit 1;; esac
[ -z "$DURING_RESTART" ] || [ -n "$DURING" ] || { echo "natlab.sh: NATLAB_DURING_RESTART needs NATLAB_DURING" >&2; exit 1; }
ALL_NS="$NS_SUB $NS_NAT $NS_REM"
WORK=$(mktemp -d /tmp/nrlab.XXXXXX)
PIDS=()          # every background process we start (killed by PID only)
TCPDUMP_PIDS=()

[ "$(id -u)" = 0 ] || { echo "natlab.sh: must run as root" >&2; exit 1; }
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)

log() { printf '[natlab %s] %s\n' "$(date -u +%H:%M:%S.%3N)" "$*" >&2; }

cleanup() {
    local rc=$?
    set +e
    for p in "${TCPDUMP_PIDS[@]}"; do kill -INT "$p" 2>/dev/null; done
    [ -n "$DURING_PID" ] && kill -TERM "$DURING_PID" 2>/dev/null
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    sleep 0.3
    for p in "${PIDS[@]}" "${TCPDUMP_PIDS[@]}" $DURING_PID; do kill -KILL "$p" 2>/dev/null; done
    for p in "${PIDS[@]}" "${TCPDUMP_PIDS[@]}" $DURING_PID; do wait "$p" 2>/dev/null; done
    for ns in $ALL_NS; do ip netns del "$ns" 2>/dev/null; done
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
# start a background job and remember its PID.  "$@" must be an external command
# (not a shell function) so that $! is the process itself, not a bash subshell.
bg() { "$@" & PIDS+=($!); }

# ---------------------------------------------------------------- topology
for ns in $ALL_NS; do ip netns del "$ns" 2>/dev/null || true; done  # idempotent
for ns in $ALL_NS; do
    ip netns add "$ns"
    nsx "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    nsx "$ns" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
    ip -n "$ns" link set lo up
done
# veths are created directly inside the namespaces (never in the host ns)
ip -n $NS_SUB link add sub0 address 02:6e:72:00:00:02 type veth \
    peer name nat-in netns $NS_NAT address 02:6e:72:00:00:01
ip -n $NS_NAT link add nat-out address 02:6e:72:00:01:01 type veth \
    peer name rem0 netns $NS_REM address 02:6e:72:00:01:02
for pair in "$NS_SUB sub0" "$NS_NAT nat-in" "$NS_NAT nat-out" "$NS_REM rem0"; do
    set -- $pair
    nsx "$1" sysctl -qw "net.ipv6.conf.$2.disable_ipv6=1"
    ip -n "$1" link set "$2" up
done

# subscribers: 100.64.0.2-.5 (MASQUERADE range, .5 untranslated), .130-.132 (SNAT pool range)
for a in 2 3 4 5 130 131 132; do ip -n $NS_SUB addr add 100.64.0.$a/24 dev sub0; done
ip -n $NS_SUB route add default via 100.64.0.1 dev sub0

# NAT host
ip -n $NS_NAT addr add 100.64.0.1/24 dev nat-in
ip -n $NS_NAT addr add 203.0.113.1/24 dev nat-out
for a in 10 11 12; do ip -n $NS_NAT addr add 203.0.113.$a/24 dev nat-out; done
ip -n $NS_NAT route add 198.51.100.0/24 dev nat-out   # remote servers are on-link
nsx $NS_NAT sysctl -qw net.ipv4.ip_forward=1

# remote servers
ip -n $NS_REM addr add 198.51.100.10/24 dev rem0
ip -n $NS_REM addr add 198.51.100.11/24 dev rem0
ip -n $NS_REM route add 203.0.113.0/24 dev rem0         # NAT public addresses on-link
ip -n $NS_REM route add 100.64.0.5/32 via 203.0.113.1 dev rem0   # untranslated subscriber

# NAT rules (iptables-nft)
nsx $NS_NAT iptables -t nat -A POSTROUTING -o nat-out -s 100.64.0.5/32 -j ACCEPT
nsx $NS_NAT iptables -t nat -A POSTROUTING -o nat-out -s 100.64.0.0/25 -j MASQUERADE
nsx $NS_NAT iptables -t nat -A POSTROUTING -o nat-out -s 100.64.0.128/25 -j SNAT --to-source 203.0.113.10-203.0.113.12
# remote: UDP 9999 is silently dropped (case 6)
nsx $NS_REM iptables -A INPUT -p udp --dport 9999 -j DROP

# conntrack (per-netns sysctls; the nat table above loads nf_conntrack)
TIMEOUTS=(
    nf_conntrack_tcp_timeout_established=60
    nf_conntrack_tcp_timeout_syn_sent=10
    nf_conntrack_tcp_timeout_syn_recv=5
    nf_conntrack_tcp_timeout_fin_wait=3
    nf_conntrack_tcp_timeout_close_wait=3
    nf_conntrack_tcp_timeout_last_ack=3
    nf_conntrack_tcp_timeout_time_wait=3
    nf_conntrack_tcp_timeout_close=2
    nf_conntrack_udp_timeout=5
    nf_conntrack_udp_timeout_stream=10
    nf_conntrack_icmp_timeout=5
)
if [ ! -e /proc/sys/net/netfilter/nf_conntrack_max ] && ! nsx $NS_NAT test -e /proc/sys/net/netfilter/nf_conntrack_udp_timeout; then
    modprobe nf_conntrack 2>/dev/null || true
fi
for kv in "${TIMEOUTS[@]}"; do nsx $NS_NAT sysctl -qw "net.netfilter.$kv"; done
nsx $NS_NAT sysctl -qw net.netfilter.nf_conntrack_timestamp=1 || true
: > "$WORK/sysctl.txt"
for kv in "${TIMEOUTS[@]}"; do k=${kv%%=*}; echo "$k=$(nsx $NS_NAT cat /proc/sys/net/netfilter/$k)" >> "$WORK/sysctl.txt"; done

# ---------------------------------------------------------------- truth: conntrack events
EVENTS=$WORK/conntrack.events
TRUTH_MODE=events
bg ip netns exec $NS_NAT timeout 120 stdbuf -oL conntrack -E -e NEW,DESTROY -o timestamp,id -b 4194304 > "$EVENTS" 2> "$WORK/conntrack.err"
CT_PID=${PIDS[-1]}
sleep 0.5
if ! kill -0 "$CT_PID" 2>/dev/null; then
    log "conntrack -E failed: $(cat "$WORK/conntrack.err"); falling back to conntrack -L polling"
    TRUTH_MODE=poll
    bg timeout 120 python3 "$HELP/ctpoll.py" $NS_NAT "$EVENTS"
    CT_PID=${PIDS[-1]}
fi

# Expired conntrack entries are only reaped (-> DESTROY event) by the kernel's
# gc worker, whose interval adapts up to 60 s and is shared with the host's
# entries.  A netlink dump of the table evicts expired entries it walks over
# (ctnetlink_dump_table), so a bounded `conntrack -L` poll every 0.5 s makes
# DESTROY arrive within ~0.5 s of the real expiry.
REAP_INTERVAL=0.5
bg ip netns exec $NS_NAT timeout 110 sh -c "for i in \$(seq 220); do conntrack -L >/dev/null 2>&1; sleep $REAP_INTERVAL; done"
REAP_PID=${PIDS[-1]}

# ---------------------------------------------------------------- servers
bg ip netns exec $NS_REM timeout 100 python3 "$HELP/server.py" --lifetime 90 --ready "$WORK/server.ready"
for i in $(seq 50); do [ -e "$WORK/server.ready" ] && break; sleep 0.1; done
[ -e "$WORK/server.ready" ] || { log "server did not start"; exit 1; }
# prime ARP/neighbour entries outside the capture (no conntrack entries: arp only)
nsx $NS_NAT ip neigh replace 198.51.100.10 lladdr 02:6e:72:00:01:02 dev nat-out nud permanent
nsx $NS_NAT ip neigh replace 198.51.100.11 lladdr 02:6e:72:00:01:02 dev nat-out nud permanent
for a in 2 3 4 5 130 131 132; do
    nsx $NS_NAT ip neigh replace 100.64.0.$a lladdr 02:6e:72:00:00:02 dev nat-in nud permanent
done
nsx $NS_SUB ip neigh replace 100.64.0.1 lladdr 02:6e:72:00:00:01 dev sub0 nud permanent
for a in 1 10 11 12; do
    nsx $NS_REM ip neigh replace 203.0.113.$a lladdr 02:6e:72:00:01:01 dev rem0 nud permanent
done

CASES=$WORK/cases.jsonl
: > "$CASES"
CL="python3 $HELP/client.py"
sub() { bg ip netns exec $NS_SUB timeout 30 $CL "$@" --log "$CASES"; }
PUB=203.0.113.1 POOL=203.0.113.10-203.0.113.12

# ---------------------------------------------------------------- case 8: flow started before the capture
sub stream --case 8 --label pre-capture-stream --src 100.64.0.3 --sport 40050 --dst 198.51.100.10 --dport 8080 \
    --interval 0.2 --duration 5 --expect-public $PUB
sleep 1.5

# ---------------------------------------------------------------- captures
start_tcpdump() {  # iface file [extra args]
    local ifc=$1 file=$2; shift 2
    ip netns exec $NS_NAT timeout 60 tcpdump -Z root -i "$ifc" -s 128 -U -nn "$@" -w "$file" 2> "$WORK/tcpdump.$ifc.err" &
    TCPDUMP_PIDS+=($!)
}
start_tcpdump any     "$OUTDIR/$NAME.any.pcap"
start_tcpdump nat-in  "$OUTDIR/$NAME.inside.pcap" --time-stamp-precision=nano
start_tcpdump nat-out "$OUTDIR/$NAME.outside.pcap"
for ifc in any nat-in nat-out; do
    for i in $(seq 50); do grep -q 'listening on' "$WORK/tcpdump.$ifc.err" 2>/dev/null && break; sleep 0.1; done
    grep -q 'listening on' "$WORK/tcpdump.$ifc.err" || { log "tcpdump on $ifc did not start"; cat "$WORK/tcpdump.$ifc.err" >&2; exit 1; }
done
start_during() {
    # word splitting of $DURING is intended (a command line)
    ip netns exec $NS_NAT $DURING 2> "$OUTDIR/$NAME.during.log" &
    DURING_PID=$!
    for i in $(seq $((DURING_READY * 10))); do
        grep -q "$DURING_READY_TEXT" "$OUTDIR/$NAME.during.log" 2>/dev/null && break
        kill -0 "$DURING_PID" 2>/dev/null || break
        sleep 0.1
    done
    grep -q "$DURING_READY_TEXT" "$OUTDIR/$NAME.during.log" || { log "NATLAB_DURING did not get ready"; cat "$OUTDIR/$NAME.during.log" >&2; exit 1; }
    log "NATLAB_DURING running (pid $DURING_PID)"
}
# stop_during SIGNAL RCFILE: SIGTERM waits at most 30 s (then SIGKILL); SIGKILL waits.
stop_during() {
    kill -"$1" "$DURING_PID" 2>/dev/null || true
    for i in $(seq 300); do kill -0 "$DURING_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$DURING_PID" 2>/dev/null && { log "NATLAB_DURING still running 30 s after SIG$1: SIGKILL"; kill -KILL "$DURING_PID"; }
    local rc=0; wait "$DURING_PID" || rc=$?
    echo "$rc" > "$2"
    DURING_PID=""
    log "NATLAB_DURING stopped by SIG$1, exit code $rc"
}
[ -n "$DURING" ] && start_during
sleep 0.5
CAP_START=$(date +%s.%N)
log "capture running"
STREAM_STOP=$WORK/stream.stop
if [ -n "$MIDWAY" ] || [ -n "$DURING_RESTART" ]; then
    # 13 a flow across the midway point (and a restart): a line every 0.2 s until told to stop
    sub stream --case 13 --label across-midway --src 100.64.0.4 --sport 40090 --dst 198.51.100.10 --dport 8080 \
        --interval 0.2 --duration 20 --until-file "$STREAM_STOP" --expect-public $PUB
    sleep 0.3
fi

# ---------------------------------------------------------------- cases
# 1 port preserving
sub tcp --case 1 --label port-preserving --src 100.64.0.2 --sport 40001 --dst 198.51.100.10 --dport 80 --hold 0.2 --expect-public $PUB
sleep 0.5
# 2 collision -> port remapping (same remote, same source port, overlapping)
sub tcp --case 2 --label collision-first --src 100.64.0.2 --sport 40002 --dst 198.51.100.10 --dport 80 --hold 1.5 --expect-public $PUB
sleep 0.3
sub tcp --case 2 --label collision-remapped --src 100.64.0.3 --sport 40002 --dst 198.51.100.10 --dport 80 --hold 1.0 --expect-public $PUB
sleep 0.4
# 3 SNAT pool
sub tcp --case 3 --label snat-pool-a --src 100.64.0.130 --sport 41000 --dst 198.51.100.10 --dport 80 --hold 0.5 --expect-public $POOL
sub tcp --case 3 --label snat-pool-b --src 100.64.0.131 --sport 41000 --dst 198.51.100.10 --dport 80 --hold 0.5 --expect-public $POOL
sub tcp --case 3 --label snat-pool-c --src 100.64.0.132 --sport 41000 --dst 198.51.100.10 --dport 80 --hold 0.5 --expect-public $POOL
sleep 0.4
# 4 same public ip:port at once, different remotes
sub tcp --case 4 --label shared-port-remote10 --src 100.64.0.2 --sport 40010 --dst 198.51.100.10 --dport 80 --hold 1.5 --expect-public $PUB
sleep 0.2
sub tcp --case 4 --label shared-port-remote11 --src 100.64.0.3 --sport 40010 --dst 198.51.100.11 --dport 80 --hold 1.0 --expect-public $PUB
sleep 0.3
# 5 reuse over time: first UDP flow, then (after its DESTROY) the same port for another subscriber
sub udp --case 5 --label reuse-first --src 100.64.0.2 --sport 40020 --dst 198.51.100.10 --dport 53 --count 1 --expect-public $PUB
(
    end=$(( $(date +%s) + 15 ))
    while [ "$(date +%s)" -lt "$end" ]; do
        grep -q 'DESTROY.*udp.*src=100.64.0.2 dst=198.51.100.10 sport=40020' "$EVENTS" && break
        sleep 0.1
    done
    sleep 0.3
    exec ip netns exec $NS_SUB timeout 30 $CL udp --case 5 --label reuse-second --src 100.64.0.3 --sport 40020 \
        --dst 198.51.100.10 --dport 53 --count 1 --expect-public $PUB --log "$CASES"
) & PIDS+=($!); REUSE_PID=$!
sleep 0.3
# 6 UDP without reply (dropped at the remote)
sub udp --case 6 --label udp-no-reply --src 100.64.0.4 --sport 40030 --dst 198.51.100.10 --dport 9999 --count 2 --interval 0.3 --no-reply --expect-public $PUB
sleep 0.3
# ---------------------------------------------------------------- midway: hook, restart
if [ -n "$MIDWAY" ]; then
    rc=0
    NATLAB_DURING_PID=$DURING_PID timeout 20 sh -c "$MIDWAY" > "$OUTDIR/$NAME.midway.log" 2>&1 || rc=$?
    echo "$rc" > "$OUTDIR/$NAME.midway.rc"
    log "NATLAB_MIDWAY done, exit code $rc"
fi
if [ -n "$DURING_RESTART" ]; then
    sig=TERM; [ "$DURING_RESTART" = kill ] && sig=KILL
    t_signal=$(date +%s.%N)
    stop_during $sig "$OUTDIR/$NAME.during1.rc"
    t_stopped=$(date +%s.%N)
    mv "$OUTDIR/$NAME.during.log" "$OUTDIR/$NAME.during1.log"
    start_during
    t_ready=$(date +%s.%N)
    printf '{"signal":"%s","signal_unix":%s,"stopped_unix":%s,"ready_unix":%s}\n' \
        "$sig" "$t_signal" "$t_stopped" "$t_ready" > "$OUTDIR/$NAME.restart.json"
fi
# 7 retransmitted SYNs: remote drops SYNs to :81 for ~1.5 s
nsx $NS_REM iptables -I INPUT -p tcp --dport 81 --syn -j DROP
sub tcp --case 7 --label syn-retransmit --src 100.64.0.4 --sport 40040 --dst 198.51.100.11 --dport 81 --hold 0.2 --timeout 10 --expect-public $PUB
sleep 1.5
nsx $NS_REM iptables -D INPUT -p tcp --dport 81 --syn -j DROP
# 9 ICMP echo, same identifier from two subscribers (second gets a remapped id)
sub icmp --case 9 --label icmp-a --src 100.64.0.2 --dst 198.51.100.10 --icmp-id 4660 --count 3 --interval 0.2 --expect-public $PUB
sleep 0.1
sub icmp --case 9 --label icmp-b --src 100.64.0.3 --dst 198.51.100.10 --icmp-id 4660 --count 3 --interval 0.2 --expect-public $PUB
sleep 0.5
touch "$STREAM_STOP"   # case 13 (if running) closes now
# 10 RST close by the server
sub rst --case 10 --label tcp-rst --src 100.64.0.4 --sport 40080 --dst 198.51.100.10 --dport 8081 --expect-public $PUB
sleep 0.3
# 11 NAT host's own traffic (not a mapping)
bg ip netns exec $NS_NAT timeout 10 $CL icmp --case 11 --label nat-host-ping --src 203.0.113.1 --dst 198.51.100.10 --icmp-id 4661 --count 2 --interval 0.2 --log "$CASES"
bg ip netns exec $NS_NAT timeout 10 $CL udp --case 11 --label nat-host-udp --src 203.0.113.1 --sport 40070 --dst 198.51.100.10 --dport 53 --count 1 --log "$CASES"
sleep 0.3
# 12 untranslated subscriber (forwarded without NAT)
sub tcp --case 12 --label untranslated --src 100.64.0.5 --sport 40060 --dst 198.51.100.10 --dport 80 --hold 0.2

# wait for all clients (bounded by their own timeouts)
SERVER_PID=${PIDS[2]}
for p in "${PIDS[@]:3}"; do wait "$p" 2>/dev/null || true; done
sleep 0.5
CAP_END=$(date +%s.%N)
for p in "${TCPDUMP_PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
for p in "${TCPDUMP_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
TCPDUMP_PIDS=()
[ -n "$DURING_PID" ] && stop_during TERM "$OUTDIR/$NAME.during.rc"
for ifc in any nat-in nat-out; do log "tcpdump $ifc: $(tr '\n' ' ' < "$WORK/tcpdump.$ifc.err")"; done
log "capture stopped; waiting for DESTROY events"

# ---------------------------------------------------------------- wait for DESTROY (bounded)
end=$(( $(date +%s) + 20 ))
while [ "$(date +%s)" -lt "$end" ]; do
    n_new=$(grep -c '\[NEW\]' "$EVENTS" || true)
    n_del=$(grep -c '\[DESTROY\]' "$EVENTS" || true)
    [ "$n_new" -gt 0 ] && [ "$n_del" -ge "$n_new" ] && break
    sleep 0.5
done
log "events: $(grep -c '\[NEW\]' "$EVENTS" || true) NEW, $(grep -c '\[DESTROY\]' "$EVENTS" || true) DESTROY"
kill "$CT_PID" 2>/dev/null || true; wait "$CT_PID" 2>/dev/null || true
kill "$SERVER_PID" "$REAP_PID" 2>/dev/null || true; wait "$SERVER_PID" "$REAP_PID" 2>/dev/null || true

python3 "$HELP/truth.py" "$EVENTS" "$OUTDIR/$NAME.truth.jsonl" "$OUTDIR/$NAME.untranslated.jsonl"
cp "$EVENTS" "$OUTDIR/$NAME.conntrack.log"

# ---------------------------------------------------------------- meta
# meta.py knows the namespaces by their default (logical) names, whatever NATLAB_PREFIX is
for pair in "nrlab-sub $NS_SUB" "nrlab-nat $NS_NAT" "nrlab-remote $NS_REM"; do
    set -- $pair
    ip -n "$2" -j link show > "$WORK/links.$1.json"; ip -n "$2" -j -4 addr show > "$WORK/addrs.$1.json"
done
nsx $NS_NAT iptables-save -t nat > "$WORK/nat.rules"
python3 "$HELP/meta.py" --work "$WORK" --out "$OUTDIR/$NAME.meta.json" --name "$NAME" \
    --truth-mode "$TRUTH_MODE" --reap-interval "$REAP_INTERVAL" --cap-start "$CAP_START" --cap-end "$CAP_END" \
    --tcpdump-version "$(tcpdump --version 2>&1 | head -1)" --libpcap-version "$(tcpdump --version 2>&1 | sed -n 2p)" \
    --conntrack-version "$(conntrack --version 2>&1)" --kernel "$(uname -r)"
python3 "$HELP/mirror.py" "$OUTDIR/$NAME.inside.pcap" "$OUTDIR/$NAME.outside.pcap" "$OUTDIR/$NAME.mirror.pcapng" \
    || log "mirror.pcapng not written"
chown --reference="$OUTDIR" "$OUTDIR/$NAME".* 2>/dev/null || true
ls -l "$OUTDIR"/"$NAME".* >&2
log "done"
