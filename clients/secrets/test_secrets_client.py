"""The official secrets client, unmodified, against kmsd's HTTPS gateway.

`aliyun-secret-manager-client` is configured as its users configure it for a dedicated
KMS instance: the `cache_client_dkms_config_info` environment variable names the
endpoint, the client key file, the file holding its password and the CA. It reads a
secret that kmsctl created, caches it, and after kmsctl puts a new value its
`refresh_now` returns the new one. Needs, in the environment: KMSD_HTTPS_ENDPOINT,
KMSD_CA_FILE, KMSD_CLIENT_KEY_FILE, KMSD_CLIENT_KEY_PASSWORD, KMSD_ADDR (gRPC, for
kmsctl), KMSCTL (the kmsctl binary), KMSD_SECRET_NAME and KMSD_SECRET_VALUE (a text
secret kmsctl created).
"""

import base64
import json
import os
import subprocess

import pytest

ENDPOINT = os.environ["KMSD_HTTPS_ENDPOINT"]
CA_FILE = os.environ["KMSD_CA_FILE"]
CLIENT_KEY_FILE = os.environ["KMSD_CLIENT_KEY_FILE"]
PASSWORD = os.environ["KMSD_CLIENT_KEY_PASSWORD"]
GRPC_ADDR = os.environ["KMSD_ADDR"]
KMSCTL = os.environ["KMSCTL"]
SECRET_NAME = os.environ["KMSD_SECRET_NAME"]
SECRET_VALUE = os.environ["KMSD_SECRET_VALUE"]


def kmsctl(*args, stdin=None):
    return subprocess.run([KMSCTL, "--endpoint", GRPC_ADDR, *args], input=stdin,
                          check=True, capture_output=True)


@pytest.fixture(scope="module")
def cache_client(tmp_path_factory):
    password_file = tmp_path_factory.mktemp("secrets") / "client-key-password"
    password_file.write_text(PASSWORD)
    os.environ["cache_client_dkms_config_info"] = json.dumps([{
        "regionId": "kmsd-e2e",
        "endpoint": ENDPOINT,
        "clientKeyFile": CLIENT_KEY_FILE,
        "passwordFromFilePath": str(password_file),
        "caFilePath": CA_FILE,
        "ignoreSslCerts": False,
    }])
    from alibaba_cloud_secretsmanager_client.secret_manager_cache_client_builder import \
        SecretManagerCacheClientBuilder
    return SecretManagerCacheClientBuilder.new_client()


def test_reads_a_secret_kmsctl_created_and_refreshes_to_a_new_value(cache_client):
    info = cache_client.get_secret_info(SECRET_NAME)
    assert info.secret_value == SECRET_VALUE
    assert info.secret_data_type == "text"
    assert info.secret_type == "Generic"
    first_version = info.version_id

    kmsctl("secret", "put", SECRET_NAME, "--version-id", "v-refreshed", "--in", "-",
           stdin=b"the-refreshed-value")
    # Served from the client's cache until it refreshes.
    assert cache_client.get_secret_value(SECRET_NAME) == SECRET_VALUE
    cache_client.refresh_now(SECRET_NAME)
    refreshed = cache_client.get_secret_info(SECRET_NAME)
    assert refreshed.secret_value == "the-refreshed-value"
    assert refreshed.version_id == "v-refreshed" != first_version


def test_binary_secrets_come_back_as_their_bytes(cache_client):
    data = bytes(range(256))
    kmsctl("secret", "create", "e2e/binary", "--binary", "--in", "-", stdin=data)
    info = cache_client.get_secret_info("e2e/binary")
    assert info.secret_data_type == "binary"
    assert base64.b64decode(info.secret_value) == data


def test_a_missing_secret_is_an_error_not_a_value(cache_client):
    with pytest.raises(Exception) as raised:
        cache_client.get_secret_value("e2e/no-such-secret")
    assert "Forbidden.ResourceNotFound" in str(raised.value)
