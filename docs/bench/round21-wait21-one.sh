#!/bin/bash
# one instrumented run with env knobs given as args: wait21-one.sh K=V ...; prints counters on one line and the process wall
A="$(python3 -c "import json;print(' '.join(json.load(open('/var/tmp/nb10/gen.json'))['replay_args']))")"
rm -rf $STORE
s=$(date +%s.%N)
out=$(env NATREC_W21=1 "$@" /var/tmp/wait21-bin/knob/natrec replay --quiet --threads 2 --store $STORE $A 2>&1 >/dev/null | tr "\n" ";")
e=$(date +%s.%N)
echo "$* wall $(python3 -c "print(round($e-$s,3))") :: $out"
