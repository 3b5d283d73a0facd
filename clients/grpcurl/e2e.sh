#!/usr/bin/env bash
# kmsd through grpcurl and server reflection (no .proto files), checked with openssl.
#
#   clients/grpcurl/e2e.sh HOST:PORT
#
# Lists the services, creates a key and an alias, generates data key pairs without
# plaintext, opens each private key with Decrypt and checks with `openssl pkey` that
# it belongs to the returned public key. Any failed check stops the script with a
# message and a non-zero exit. Needs grpcurl, jq, openssl and base64 on PATH.
set -euo pipefail

addr=${1:?usage: $0 HOST:PORT}
grpcurl_bin=${GRPCURL:-grpcurl}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0

die() {
  echo "grpcurl e2e FAILED: $*" >&2
  exit 1
}
ok() {
  passed=$((passed + 1))
  echo "ok: $*"
}
for tool in "$grpcurl_bin" jq openssl base64; do
  command -v "$tool" >/dev/null || die "$tool is not on PATH"
done

# rpc METHOD JSON: prints the response; dies with grpcurl's error on a failed call.
rpc() {
  local out
  if ! out=$("$grpcurl_bin" -plaintext -max-time 120 -d "$2" "$addr" "$1" 2>&1); then
    die "$1 failed: $out"
  fi
  printf '%s\n' "$out"
}
# field JSON NAME: a non-empty string field of a response.
field() {
  local value
  value=$(jq -er --arg n "$2" '.[$n] // empty' <<<"$1") || die "no $2 in: $1"
  printf '%s' "$value"
}

# --- reflection: the services a client can discover ---
services=$("$grpcurl_bin" -plaintext "$addr" list) || die "list failed: $services"
for service in kms.v1.CryptoService kms.v1.KeyManagementService grpc.health.v1.Health; do
  grep -qx "$service" <<<"$services" || die "reflection does not list $service (got: $services)"
done
ok "reflection lists the kms.v1 services and health"
"$grpcurl_bin" -plaintext "$addr" describe kms.v1.CryptoService.GenerateDataKeyPairWithoutPlaintext \
  | grep -q 'GenerateDataKeyPairWithoutPlaintextRequest' || die "describe did not resolve the method"
ok "reflection describes GenerateDataKeyPairWithoutPlaintext"

health=$(rpc grpc.health.v1.Health/Check '{"service": "kms.v1.CryptoService"}')
[[ $(jq -r .status <<<"$health") == SERVING ]] || die "kms.v1.CryptoService is not SERVING: $health"
ok "health of kms.v1.CryptoService is SERVING"

# --- CreateKey, CreateAlias ---
created=$(rpc kms.v1.KeyManagementService/CreateKey '{"Description": "grpcurl e2e"}')
key_id=$(jq -er '.KeyMetadata.KeyId' <<<"$created") || die "no KeyMetadata.KeyId in: $created"
[[ $key_id == key-* ]] || die "unexpected KeyId $key_id"
ok "CreateKey -> $key_id"

alias_name="alias/grpcurl-e2e-$(openssl rand -hex 6)"
rpc kms.v1.KeyManagementService/CreateAlias \
  "$(jq -nc --arg k "$key_id" --arg a "$alias_name" '{KeyId: $k, AliasName: $a}')" >/dev/null
described=$(rpc kms.v1.KeyManagementService/DescribeKey "$(jq -nc --arg a "$alias_name" '{KeyId: $a}')")
[[ $(jq -r .KeyMetadata.KeyId <<<"$described") == "$key_id" ]] || die "$alias_name does not name $key_id: $described"
ok "CreateAlias $alias_name -> $key_id"

# --- GenerateDataKeyPairWithoutPlaintext, Decrypt, openssl ---
aad_b64=$(printf 'grpcurl e2e' | base64)
for case in EC_P256:PEM RSA_2048:DER EC_P256K:PEM; do
  spec=${case%%:*}
  fmt=${case##*:}
  generated=$(rpc kms.v1.CryptoService/GenerateDataKeyPairWithoutPlaintext \
    "$(jq -nc --arg a "$alias_name" --arg s "$spec" --arg f "$fmt" --arg aad "$aad_b64" \
      '{KeyId: $a, KeyPairSpec: $s, KeyFormat: $f, Aad: $aad}')")
  [[ $(jq -r .KeyId <<<"$generated") == "$key_id" ]] || die "$spec: KeyId is not $key_id: $generated"
  jq -e 'has("PrivateKeyPlaintext") | not' <<<"$generated" >/dev/null || die "$spec: a plaintext private key came back"
  blob=$(field "$generated" PrivateKeyCiphertextBlob)
  iv=$(field "$generated" Iv)
  field "$generated" PublicKey | base64 -d >"$work/public.$fmt"

  opened=$(rpc kms.v1.CryptoService/Decrypt \
    "$(jq -nc --arg a "$alias_name" --arg b "$blob" --arg iv "$iv" --arg aad "$aad_b64" \
      '{KeyId: $a, CiphertextBlob: $b, Iv: $iv, Aad: $aad}')")
  field "$opened" Plaintext | base64 -d >"$work/private.$fmt"

  openssl pkey -inform "$fmt" -in "$work/private.$fmt" -pubout -outform DER -out "$work/derived.der" 2>"$work/err" \
    || die "$spec: openssl cannot read the opened private key: $(cat "$work/err")"
  openssl pkey -pubin -inform "$fmt" -in "$work/public.$fmt" -outform DER -out "$work/public.der" 2>"$work/err" \
    || die "$spec: openssl cannot read the public key: $(cat "$work/err")"
  cmp -s "$work/derived.der" "$work/public.der" || die "$spec: the private key does not match the public key"
  ok "$spec/$fmt: Decrypt opens the private key and openssl pkey matches it to the public key"

  # The same blob under other AAD does not open, and says so with INVALID_ARGUMENT.
  if out=$("$grpcurl_bin" -plaintext -d "$(jq -nc --arg a "$alias_name" --arg b "$blob" --arg iv "$iv" \
    '{KeyId: $a, CiphertextBlob: $b, Iv: $iv, Aad: "d3Jvbmc="}')" "$addr" kms.v1.CryptoService/Decrypt 2>&1); then
    die "$spec: Decrypt with the wrong AAD succeeded"
  fi
  grep -q 'Code: InvalidArgument' <<<"$out" || die "$spec: wrong AAD gave: $out"
  ok "$spec: Decrypt with the wrong AAD is InvalidArgument"
done

# --- errors: reflection serves google/rpc/error_details.proto, so grpcurl decodes the
# ErrorInfo of every error and shows its reason (the public error code) and metadata.
if out=$("$grpcurl_bin" -plaintext -d '{"KeyId": "alias/grpcurl-e2e-no-such-alias"}' \
  "$addr" kms.v1.KeyManagementService/DescribeKey 2>&1); then
  die "DescribeKey of a missing alias succeeded: $out"
fi
grep -q 'Code: NotFound' <<<"$out" || die "a missing alias gave: $out"
grep -q 'not recognized' <<<"$out" && die "grpcurl cannot decode the error details: $out"
grep -Eq '"reason": *"Forbidden.AliasNotFound"' <<<"$out" || die "no ErrorInfo reason in: $out"
grep -Eq '"RequestId": *"' <<<"$out" || die "no RequestId in the ErrorInfo metadata: $out"
ok "an error shows its ErrorInfo: reason Forbidden.AliasNotFound and the RequestId"

echo "grpcurl: $passed passed, 0 failed"
