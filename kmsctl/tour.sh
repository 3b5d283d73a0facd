#!/usr/bin/env bash
# Runs the "kmsctl tour" block of README.md as written, against a fresh kmsd, so the
# README stays true. Any failing command fails the script.
#
#   kmsctl/tour.sh [PATH_TO_KMSD] [PATH_TO_KMSCTL]   (default: target/debug/...)
#
# Needs jq and openssl.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
kmsd=$(realpath "${1:-target/debug/kmsd}")
kmsctl=$(realpath "${2:-target/debug/kmsctl}")

work=$(mktemp -d)
server_pid=
stop() {
  if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid"
    wait "$server_pid" || true
  fi
  rm -rf "$work"
}
trap stop EXIT

# The block after the "### kmsctl tour" heading: from its ```sh line to the closing ```.
awk '/^### kmsctl tour/ {found=1} found && /^```sh/ {inside=1; next} inside && /^```/ {exit} inside {print}' \
  "$root/README.md" >"$work/tour.sh"
[[ -s $work/tour.sh ]] || { echo "tour: no kmsctl tour block in README.md" >&2; exit 1; }

"$kmsd" --listen 127.0.0.1:0 --data-dir "$work/data" --log-format json --pool-depth 0 \
  --shutdown-grace-secs 5 2>"$work/kmsd.log" &
server_pid=$!
addr=
for _ in $(seq 1 300); do
  addr=$(jq -r 'select(.fields.message == "kmsd listening") | .fields.local_addr' "$work/kmsd.log" 2>/dev/null | head -n1)
  [[ -n $addr ]] && break
  kill -0 "$server_pid" 2>/dev/null || { echo "tour: kmsd exited:" >&2; cat "$work/kmsd.log" >&2; exit 1; }
  sleep 0.1
done
[[ -n $addr ]] || { echo "tour: kmsd did not report its address" >&2; exit 1; }

mkdir "$work/bin" "$work/run"
ln -s "$kmsctl" "$work/bin/kmsctl"
cd "$work/run"
echo "tour: running README.md's kmsctl tour against $addr"
KMSCTL_ENDPOINT=$addr PATH="$work/bin:$PATH" bash -euo pipefail -x "$work/tour.sh"
echo "tour: every command of the kmsctl tour ran"
