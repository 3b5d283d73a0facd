#!/usr/bin/env bash
# Flame graphs of kmsd's serving path under saturating load (docs/performance.md).
#
#   bench/profile.sh [OUT_DIR] [CALL...]
#
# Starts the release kmsd on 127.0.0.1 (a fresh data directory and root key, the
# default pool, --keypair-concurrency high enough that no key pair call is throttled),
# then for each CALL (default: health describe-key key-pair encrypt get-secret-value)
# drives it at saturation with `kmsd-bench --load CALL` while `perf record` samples the
# server, and writes OUT_DIR/CALL.svg (default OUT_DIR: target/flamegraphs) and the
# rate reached to OUT_DIR/rates.txt.
#
# Needs: perf (Debian's linux-perf), inferno (`cargo install inferno`), and the release
# binaries: cargo build --release --bin kmsd -p kmsd --bin kmsd-bench -p kmsd-bench
# Stacks are unwound from DWARF (the release profile keeps symbols; no frame pointers
# needed). Environment: SECONDS_PER_CALL (default 8), FREQ (sampling Hz, default 499),
# CONNECTIONS and STREAMS (default 4 and 4, as the issue's h2load runs); KEEP_FOLDED=1
# keeps the collapsed stacks (OUT_DIR/CALL.folded) for inferno-diff-folded or scripts.
set -euo pipefail

cd "$(dirname "$0")/.."
out=${1:-target/flamegraphs}
shift || true
calls=("$@")
if [ ${#calls[@]} -eq 0 ]; then
    calls=(health describe-key key-pair encrypt get-secret-value)
fi
seconds=${SECONDS_PER_CALL:-8}
freq=${FREQ:-499}
connections=${CONNECTIONS:-4}
streams=${STREAMS:-4}

for tool in perf inferno-collapse-perf inferno-flamegraph; do
    command -v "$tool" >/dev/null || {
        echo "profile.sh: $tool not found (apt-get install linux-perf; cargo install inferno)" >&2
        exit 1
    }
done
for bin in target/release/kmsd target/release/kmsd-bench; do
    [ -x "$bin" ] || {
        echo "profile.sh: $bin missing: cargo build --release --bin kmsd -p kmsd --bin kmsd-bench -p kmsd-bench" >&2
        exit 1
    }
done

mkdir -p "$out"
work=$(mktemp -d)
server=""
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

head -c 32 /dev/urandom >"$work/root.key"
chmod 600 "$work/root.key"
target/release/kmsd --listen 127.0.0.1:0 --data-dir "$work/data" \
    --root-key-file "$work/root.key" --log-format json \
    --keypair-concurrency $((connections * streams)) 2>"$work/kmsd.log" &
server=$!
addr=""
for _ in $(seq 300); do
    addr=$(grep -o '"message":"kmsd listening"[^}]*"local_addr":"[^"]*"' "$work/kmsd.log" |
        sed 's/.*"local_addr":"\([^"]*\)"/\1/' | head -1 || true)
    [ -n "$addr" ] && break
    sleep 0.1
done
[ -n "$addr" ] || { echo "profile.sh: kmsd did not start:" >&2; cat "$work/kmsd.log" >&2; exit 1; }
# Let the pool fill before anything is sampled.
sleep 3

: >"$out/rates.txt"
for call in "${calls[@]}"; do
    echo "profile.sh: $call" >&2
    target/release/kmsd-bench --addr "http://$addr" --load "$call" \
        --load-seconds "$((seconds + 2))" \
        --saturation-connections "$connections" --saturation-streams "$streams" \
        >>"$out/rates.txt" &
    load=$!
    sleep 1
    perf record -q -F "$freq" --call-graph dwarf,16384 -p "$server" \
        -o "$work/perf.data" -- sleep "$seconds" 2>/dev/null
    wait "$load"
    perf script -i "$work/perf.data" 2>/dev/null | inferno-collapse-perf >"$work/$call.folded"
    inferno-flamegraph --title "kmsd at saturation: $call" --width 1600 --minwidth 0.2 \
        <"$work/$call.folded" >"$out/$call.svg"
    [ -z "${KEEP_FOLDED:-}" ] || cp "$work/$call.folded" "$out/"
    rm -f "$work/perf.data"
done
cat "$out/rates.txt"
echo "profile.sh: flame graphs in $out" >&2
