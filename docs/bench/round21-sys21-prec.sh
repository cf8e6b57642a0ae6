#!/bin/sh
# prec.sh BIN OUT: perf record of one bigstore 4M --write-behind --write-only run
rm -rf /var/tmp/sys21-run
flock -x /tmp/r22/quiet.lock perf record -e cpu-clock -F 4000 -g -o $2 $1 --dir /var/tmp/sys21-run --mappings 4000000 --days 10 --no-drop-caches --write-behind --write-only 2>&1 | grep "appends + seals" | sed 's/.*seals: //'
python3 /tmp/sys21/ksplit.py $2
