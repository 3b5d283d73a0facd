#!/usr/bin/env bash
# Starts a real kmsd on a free loopback port and runs the clients in other languages
# against it: the grpcurl tour (clients/grpcurl/e2e.sh) and the Python client tests
# (clients/python, pytest). The server is always stopped, whatever fails.
#
#   clients/run-e2e.sh [PATH_TO_KMSD]      (default: target/debug/kmsd)
#
# Needs grpcurl, jq, openssl and a Python with clients/python/requirements.txt on
# PATH; .ci/run sets that up in .venv. With SDK_PYTHON (a Python with
# clients/sdk/requirements.txt, .venv-sdk in .ci/run) it also runs the official SDK's
# messages against the server, and the official SDK itself, unmodified, against the
# HTTPS gateway with a client key made by CreateClientKey (clients/sdk). With
# SECRETS_PYTHON (a Python with clients/secrets/requirements.txt, .venv-secrets) and
# KMSCTL (the kmsctl binary) it also runs the official secrets client against a secret
# kmsctl created (clients/secrets). With TRANSFER_PYTHON (a Python with
# clients/transfer/requirements.txt, .venv-transfer) it runs the official transfer client
# of the classic API (clients/transfer).
set -euo pipefail
cd "$(dirname "$0")/.."

kmsd=${1:-target/debug/kmsd}
[[ -x $kmsd ]] || { echo "run-e2e: no kmsd binary at $kmsd (cargo build --bin kmsd)" >&2; exit 1; }

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

# Port 0: the server binds a free port and logs it, so nothing can take it meanwhile.
# The pool is off and one data key pair call is allowed at once, so the Python
# throttle test sees real RSA-4096 generation block the only slot.
"$kmsd" --listen 127.0.0.1:0 --https-listen 127.0.0.1:0 --data-dir "$work/data" --log-format json \
  --pool-depth 0 --keypair-concurrency 1 --shutdown-grace-secs 5 2>"$work/kmsd.log" &
server_pid=$!

addr=
for _ in $(seq 1 300); do
  addr=$(jq -r 'select(.fields.message == "kmsd listening") | .fields.local_addr' "$work/kmsd.log" 2>/dev/null | head -n1)
  [[ -n $addr ]] && break
  kill -0 "$server_pid" 2>/dev/null || { echo "run-e2e: kmsd exited:" >&2; cat "$work/kmsd.log" >&2; exit 1; }
  sleep 0.1
done
[[ -n $addr ]] || { echo "run-e2e: kmsd did not report its address:" >&2; cat "$work/kmsd.log" >&2; exit 1; }
https_addr=$(jq -r 'select(.fields.message == "kmsd https gateway listening") | .fields.local_addr' "$work/kmsd.log" | head -n1)
[[ -n $https_addr ]] || { echo "run-e2e: kmsd did not report its HTTPS address:" >&2; cat "$work/kmsd.log" >&2; exit 1; }

# Wait for health SERVING (store open, pool primed).
serving=
for _ in $(seq 1 300); do
  if grpcurl -plaintext -max-time 2 "$addr" grpc.health.v1.Health/Check 2>/dev/null | grep -q '"SERVING"'; then
    serving=yes
    break
  fi
  sleep 0.1
done
[[ -n $serving ]] || { echo "run-e2e: kmsd at $addr never became SERVING:" >&2; cat "$work/kmsd.log" >&2; exit 1; }
echo "run-e2e: kmsd SERVING at $addr"

status=0
clients/grpcurl/e2e.sh "$addr" || status=$?
if [[ $status -eq 0 ]]; then
  KMSD_ADDR=$addr python -m pytest -p no:cacheprovider -rA clients/python || status=$?
fi
# The official SDK's own protobuf messages against kmsd, when its virtualenv is given
# (it pins protobuf<4, so it cannot share the one above): SDK_PYTHON=.venv-sdk/bin/python.
if [[ $status -eq 0 && -n ${SDK_PYTHON:-} ]]; then
  create_key() {  # SPEC [USAGE]
    grpcurl -plaintext -d "{\"Description\": \"sdk e2e\", \"KeySpec\": \"$1\", \"KeyUsage\": \"${2:-}\"}" \
      "$addr" kms.v1.KeyManagementService/CreateKey | jq -r .KeyMetadata.KeyId
  }
  sdk_key=$(create_key Aliyun_AES_256)
  sdk_alias="alias/sdk-e2e-$$"
  grpcurl -plaintext -d "{\"KeyId\": \"$sdk_key\", \"AliasName\": \"$sdk_alias\"}" "$addr" \
    kms.v1.KeyManagementService/CreateAlias >/dev/null
  # The client key file as the SDK reads it, written from the CreateClientKey response.
  password="sdk-e2e-password-$RANDOM$RANDOM"
  grpcurl -plaintext -d "{\"Principal\": \"sdk-e2e\", \"Password\": \"$password\"}" "$addr" \
    kms.v1.KeyManagementService/CreateClientKey \
    | jq '{KeyId: .ClientKeyId, PrivateKeyData: .PrivateKeyData}' >"$work/clientKey.json"
  # A secret made with kmsctl, read by the SDK's GetSecretValue.
  kmsctl=${KMSCTL:-target/debug/kmsctl}
  [[ -x $kmsctl ]] || { echo "run-e2e: no kmsctl at $kmsctl (cargo build -p kmsctl)" >&2; exit 1; }
  secret_value="sdk-e2e-secret-$RANDOM$RANDOM"
  printf '%s' "$secret_value" | "$kmsctl" --endpoint "$addr" secret create sdk/e2e \
    --extended-config '{"Owner":"sdk-e2e"}' --in - >/dev/null
  KMSD_SECRET_NAME=sdk/e2e KMSD_SECRET_VALUE=$secret_value \
  KMSD_ADDR=$addr KMSD_KEY_ID=$sdk_key KMSD_ALIAS=$sdk_alias \
    KMSD_EC_KEY_ID=$(create_key EC_P256) KMSD_RSA_KEY_ID=$(create_key RSA_2048) \
    KMSD_HMAC_KEY_ID=$(create_key HMAC_SHA256) \
    KMSD_RSA_ENCRYPTION_KEY_ID=$(create_key RSA_2048 ENCRYPT/DECRYPT) \
    KMSD_ML_DSA_65_KEY_ID=$(create_key ML_DSA_65) KMSD_ED25519_KEY_ID=$(create_key ED25519) \
    KMSD_HTTPS_ENDPOINT=$https_addr KMSD_CA_FILE="$work/data/https-dev-cert.pem" \
    KMSD_CLIENT_KEY_FILE="$work/clientKey.json" KMSD_CLIENT_KEY_PASSWORD=$password \
    "$SDK_PYTHON" -m pytest -p no:cacheprovider -rA clients/sdk || status=$?
  # The official secrets client, configured for a dedicated KMS instance as its users
  # do, against a secret kmsctl created; then kmsctl puts a new value.
  if [[ $status -eq 0 && -n ${SECRETS_PYTHON:-} ]]; then
    printf '%s' "secrets-client-value-$RANDOM" >"$work/secret-value"
    "$kmsctl" --endpoint "$addr" secret create e2e/db-password --in "$work/secret-value" >/dev/null
    KMSD_SECRET_NAME=e2e/db-password KMSD_SECRET_VALUE=$(cat "$work/secret-value") \
      KMSD_ADDR=$addr KMSCTL=$(realpath "$kmsctl") \
      KMSD_HTTPS_ENDPOINT=$https_addr KMSD_CA_FILE="$work/data/https-dev-cert.pem" \
      KMSD_CLIENT_KEY_FILE="$work/clientKey.json" KMSD_CLIENT_KEY_PASSWORD=$password \
      "$SECRETS_PYTHON" -m pytest -p no:cacheprovider -rA clients/secrets || status=$?
  fi
  # The classic API's applications, unmodified, through the official transfer client.
  if [[ $status -eq 0 && -n ${TRANSFER_PYTHON:-} ]]; then
    KMSD_SECRET_NAME=sdk/e2e KMSD_SECRET_VALUE=$secret_value \
      KMSD_ADDR=$addr KMSCTL=$(realpath "$kmsctl") KMSD_KEY_ID=$sdk_key \
      KMSD_EC_KEY_ID=$(create_key EC_P256) \
      KMSD_RSA_ENCRYPTION_KEY_ID=$(create_key RSA_3072 ENCRYPT/DECRYPT) \
      KMSD_HTTPS_ENDPOINT=$https_addr KMSD_CA_FILE="$work/data/https-dev-cert.pem" \
      KMSD_CLIENT_KEY_FILE="$work/clientKey.json" KMSD_CLIENT_KEY_PASSWORD=$password \
      "$TRANSFER_PYTHON" -m pytest -p no:cacheprovider -rA clients/transfer || status=$?
  fi
fi
if [[ $status -ne 0 ]]; then
  echo "run-e2e: failed ($status); the server log:" >&2
  tail -n 50 "$work/kmsd.log" >&2
fi
exit "$status"
