"""Static checks of deploy/: the Dockerfile, .dockerignore and every manifest.

No container engine or cluster is available to CI, so these tests parse the files
and check what a broken deployment would get wrong: ports and probes that don't line
up, a missing securityContext setting, a secret path that no Secret provides, a
config key kmsd doesn't know. When kubectl is installed, the Kustomize builds are
also rendered with it and the same checks run on the result.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path, PurePosixPath

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
BASE = DEPLOY / "kubernetes" / "base"
TLS = DEPLOY / "kubernetes" / "overlays" / "tls"
# PostgreSQL mode: stateless replicas (a Deployment) beside the embedded StatefulSet.
POSTGRES = DEPLOY / "kubernetes" / "postgres"
# The Prometheus Operator's objects: the PodMonitor and the PrometheusRule.
K8S_MONITORING = DEPLOY / "kubernetes" / "monitoring"
# The scheduled backup job (kmsctl in the kmsd image).
BACKUP = DEPLOY / "kubernetes" / "backup"
# Prometheus rule and test files (deploy/monitoring) are not Kubernetes manifests;
# test_monitoring.py checks them.
MONITORING = DEPLOY / "monitoring"
ALL_YAML = sorted(p for p in DEPLOY.rglob("*.yaml")
                  if "tests" not in p.parts and not p.is_relative_to(MONITORING))

# Flags that other work adds to the server (issue 7); each also exists as a TOML key.
# Once they are in src/config.rs the source check below covers them too.
HEALTH_SERVICES = {"", "kms.v1.CryptoService", "kms.v1.KeyManagementService"}
SECRET_MOUNT_KEYS = {"root_key_file", "auth_config", "tls_cert", "tls_key", "tls_client_ca"}


# === loading ===


def load_docs(path: Path) -> list[dict]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs, f"{path} holds no YAML document"
    return docs


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d.get("kind") == kind]


def one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in by_kind(docs, kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def kustomize_static(root: Path) -> tuple[list[dict], dict]:
    """The documents a kustomization lists (resources recursively, patches not applied)
    and its generated config files, by file name."""
    kustomization = yaml.safe_load((root / "kustomization.yaml").read_text())
    docs: list[dict] = []
    configs: dict[str, str] = {}
    for resource in kustomization.get("resources", []):
        target = (root / resource).resolve()
        if target.is_dir():
            sub_docs, sub_configs = kustomize_static(target)
            docs += sub_docs
            configs |= sub_configs
        else:
            docs += load_docs(target)
    for generator in kustomization.get("configMapGenerator", []):
        for file in generator.get("files", []):
            configs[Path(file).name] = (root / file).read_text()
    return docs, configs


def kubectl_render(root: Path) -> list[dict]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(root)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, f"kubectl kustomize {root} failed: {out.stderr}"
    return [d for d in yaml.safe_load_all(out.stdout) if d is not None]


def cli_flags_in_source() -> set[str]:
    """Field names of the `Settings` struct in src/config.rs, where every setting is
    declared once: they are the TOML keys (`config` is not one: it names the file)."""
    source = (REPO / "src" / "config.rs").read_text()
    body = re.search(r"\nstruct Settings \{(.*?)\n\}", source, re.S)
    assert body, "no `struct Settings` in src/config.rs"
    fields = set(re.findall(r"^    (\w+):", body.group(1), re.M))
    assert {"listen", "data_dir", "pool"} <= fields, fields
    return fields - {"config"}


def port_of(addr: str) -> int:
    return int(addr.rsplit(":", 1)[1])


def under(path: str, mount: str) -> bool:
    return PurePosixPath(mount) in PurePosixPath(path).parents


QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|Ti|k|M|G)?$")
FACTORS = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20,
           "Gi": 2**30, "Ti": 2**40}


def quantity(value) -> float:
    match = QUANTITY.match(str(value))
    assert match, f"not a Kubernetes quantity: {value!r}"
    return float(match.group(1)) * FACTORS[match.group(2)]


# === every file ===


@pytest.mark.parametrize("path", ALL_YAML, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_manifest_parses_and_names_itself(path):
    for doc in load_docs(path):
        if path.name == "kustomization.yaml":
            assert doc["kind"] == "Kustomization"
            continue
        assert doc.get("apiVersion") and doc.get("kind"), f"{path}: {doc}"
        assert doc["metadata"].get("name"), f"{path}: a {doc['kind']} without a name"


def test_kustomizations_list_every_manifest_beside_them():
    for root in (BASE, TLS, POSTGRES, K8S_MONITORING, BACKUP):
        kustomization = yaml.safe_load((root / "kustomization.yaml").read_text())
        listed = set(kustomization.get("resources", []))
        listed |= {p["path"] for p in kustomization.get("patches", [])}
        for resource in listed:
            assert (root / resource).exists(), f"{root}: {resource} does not exist"
        beside = {p.name for p in root.glob("*.yaml")} - {"kustomization.yaml"}
        # The example Secret is left out on purpose: real secrets are made out of band.
        examples = {"secret.example.yaml"} if root in (BASE, POSTGRES) else set()
        assert beside - listed == examples
        assert not by_kind(kustomize_static(root)[0], "Secret"), "a Secret in a kustomization"


# === the pod, checked on the base and the TLS overlay ===


class Deployment:
    """The objects of one kustomization and its kmsd.toml."""

    def __init__(self, docs: list[dict], config_text: str):
        self.docs = docs
        self.config = tomllib.loads(config_text)
        # The workload: the embedded mode's StatefulSet or PostgreSQL mode's Deployment.
        workloads = by_kind(docs, "StatefulSet") + by_kind(docs, "Deployment")
        assert len(workloads) == 1, f"expected one workload, found {len(workloads)}"
        self.kind = workloads[0]["kind"]
        self.sts = one(docs, self.kind, "kmsd")
        self.pod = self.sts["spec"]["template"]
        containers = [c for c in self.pod["spec"]["containers"] if c["name"] == "kmsd"]
        assert len(containers) == 1, "no container named kmsd"
        self.container = containers[0]
        self.ports = {p["name"]: p["containerPort"] for p in self.container["ports"]}
        self.volumes = {v["name"]: v for v in self.pod["spec"]["volumes"]}
        self.mounts = {m["mountPath"]: m for m in self.container["volumeMounts"]}


def static_deployment(root: Path) -> Deployment:
    docs, configs = kustomize_static(root)
    if root == TLS:
        # Apply the overlay's patch by hand where it matters: probes and volumes.
        patch = yaml.safe_load((TLS / "statefulset-tls.yaml").read_text())
        sts = one(docs, "StatefulSet", "kmsd")
        pod = sts["spec"]["template"]["spec"]
        patched = patch["spec"]["template"]["spec"]
        container = pod["containers"][0]
        for key, value in patched["containers"][0].items():
            if key.endswith("Probe"):
                container[key] = {k: v for k, v in (container[key] | value).items() if v is not None}
            elif key == "volumeMounts":
                container[key] = container[key] + value
        pod["volumes"] = pod["volumes"] + patched["volumes"]
        configs["kmsd.toml"] = (TLS / "kmsd.toml").read_text()
    return Deployment(docs, configs["kmsd.toml"])


def rendered_deployment(root: Path) -> Deployment:
    docs = kubectl_render(root)
    cm = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].startswith("kmsd-config")]
    assert len(cm) == 1
    d = Deployment(docs, cm[0]["data"]["kmsd.toml"])
    assert d.volumes["config"]["configMap"]["name"] == cm[0]["metadata"]["name"]
    return d


SOURCES = ["static", "kubectl"]


@pytest.fixture(params=[(root, s) for root in (BASE, TLS, POSTGRES) for s in SOURCES],
                ids=lambda p: f"{p[0].name}-{p[1]}")
def deployment(request) -> Deployment:
    root, source = request.param
    if source == "kubectl":
        if shutil.which("kubectl") is None:
            pytest.skip("kubectl is not installed; the static variant covers the files")
        return rendered_deployment(root)
    return static_deployment(root)


def test_one_replica_with_a_volume_for_the_store(deployment):
    if deployment.kind == "Deployment":
        return check_stateless_replicas(deployment)
    sts = deployment.sts
    assert sts["spec"]["replicas"] == 1
    claims = {c["metadata"]["name"]: c for c in sts["spec"]["volumeClaimTemplates"]}
    assert claims["data"]["spec"]["accessModes"] == ["ReadWriteOnce"]
    data_dir = deployment.config["data_dir"]
    assert deployment.mounts[data_dir]["name"] == "data"
    assert not deployment.mounts[data_dir].get("readOnly")
    service = one(deployment.docs, "Service", sts["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None"


def check_stateless_replicas(deployment):
    """PostgreSQL mode: several interchangeable replicas, nothing kept on the pod."""
    spec = deployment.sts["spec"]
    assert spec["replicas"] >= 2
    assert "volumeClaimTemplates" not in spec
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    for volume in deployment.volumes.values():
        assert "persistentVolumeClaim" not in volume, volume
    data = deployment.mounts[deployment.config["data_dir"]]
    assert "emptyDir" in deployment.volumes[data["name"]]
    # Spread over nodes: one node lost is one replica lost.
    keys = {c["topologyKey"] for c in deployment.pod["spec"]["topologySpreadConstraints"]}
    assert "kubernetes.io/hostname" in keys


def test_postgres_url_comes_from_a_secret():
    for d in [static_deployment(POSTGRES)] + (
        [rendered_deployment(POSTGRES)] if shutil.which("kubectl") else []
    ):
        # The URL may hold a password: never in the ConfigMap.
        assert "url" not in d.config.get("store", {})
        env = {e["name"]: e for e in d.container["env"]}
        ref = env["KMSD_STORE"]["valueFrom"]["secretKeyRef"]
        example = one(load_docs(POSTGRES / "secret.example.yaml"), "Secret", ref["name"])
        url = example["stringData"][ref["key"]]
        assert url.startswith("postgres://") and "sslmode=verify-full" in url
        # The CA the URL names is a file of a read-only Secret volume.
        root_cert = re.search(r"sslrootcert=([^&]+)", url).group(1)
        mounts = [m for m in d.mounts if under(root_cert, m)]
        assert len(mounts) == 1, f"{root_cert} is under no mount"
        mount = d.mounts[mounts[0]]
        secret = d.volumes[mount["name"]]["secret"]
        assert mount["readOnly"] is True and secret["secretName"] == ref["name"]
        item = str(PurePosixPath(root_cert).relative_to(mounts[0]))
        assert item in {i["path"] for i in secret["items"]}
        assert {i["key"] for i in secret["items"]} <= set(example["stringData"])


def test_config_keys_are_kmsd_flags(deployment):
    known = cli_flags_in_source()
    unknown = set(deployment.config) - known - {"pool", "store"}
    assert not unknown, f"kmsd.toml keys kmsd does not know: {unknown}"
    assert set(deployment.config["pool"]) <= {"workers", "depths"}
    assert set(deployment.config.get("store", {})) <= {"url", "max_connections", "timeout_ms"}
    assert set(deployment.config["pool"]["depths"]) <= {
        "RSA_2048", "RSA_3072", "RSA_4096", "EC_P256", "EC_P256K"}


def test_the_container_reads_the_generated_config(deployment):
    args = deployment.container["args"]
    config_path = PurePosixPath(args[args.index("--config") + 1])
    mount = deployment.mounts[str(config_path.parent)]
    assert mount["readOnly"] is True
    assert "configMap" in deployment.volumes[mount["name"]]
    assert config_path.name == "kmsd.toml"


def test_ports_line_up_with_the_config_and_services(deployment):
    config, ports = deployment.config, deployment.ports
    assert port_of(config["listen"]) == ports["grpc"]
    assert port_of(config["metrics_listen"]) == ports["metrics"]
    pod_labels = deployment.pod["metadata"]["labels"]
    services = by_kind(deployment.docs, "Service")
    assert services
    for service in services:
        selector = service["spec"]["selector"]
        assert selector.items() <= pod_labels.items(), f"{service['metadata']['name']} selects no pod"
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, f"targetPort {port['targetPort']} is no container port"
            if port["targetPort"] == "grpc":
                assert port["name"] == "grpc" and port["appProtocol"] == "grpc"
                assert port["port"] == ports["grpc"]


def test_prometheus_scrape_annotations_name_the_metrics_listener(deployment):
    annotations = deployment.pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == port_of(deployment.config["metrics_listen"])
    assert annotations["prometheus.io/path"] == "/metrics"


def test_probes(deployment):
    c = deployment.container
    tls = "tls_cert" in deployment.config
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        spec = c[probe]
        if tls:
            # The kubelet's gRPC probe cannot speak TLS: a TCP probe on the gRPC port.
            assert "grpc" not in spec and spec["tcpSocket"]["port"] in ("grpc", deployment.ports["grpc"])
        else:
            assert set(spec) & {"grpc", "tcpSocket", "httpGet", "exec"} == {"grpc"}
            assert spec["grpc"]["port"] == deployment.ports["grpc"]  # a number: no names here
            assert spec["grpc"].get("service", "") in HEALTH_SERVICES
    if not tls:
        assert c["readinessProbe"]["grpc"]["service"] == "kms.v1.CryptoService"
    # Draining (health NOT_SERVING after SIGTERM) must end before the SIGKILL and must
    # not look like a dead process.
    grace = deployment.pod["spec"]["terminationGracePeriodSeconds"]
    assert deployment.config["shutdown_grace_secs"] < grace
    live = c["livenessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] > grace


def test_plaintext_only_where_allowed(deployment):
    config = deployment.config
    loopback = config["listen"].startswith(("127.", "[::1]", "localhost"))
    if "tls_cert" in config:
        assert not config.get("allow_plaintext", False)
        assert "tls_key" in config and "tls_client_ca" in config
    else:
        assert loopback or config.get("allow_plaintext") is True


def test_secrets_come_from_secret_volumes_only(deployment):
    example = one(load_docs(BASE / "secret.example.yaml"), "Secret", "kmsd-secrets")
    for key in SECRET_MOUNT_KEYS & set(deployment.config):
        path = deployment.config[key]
        mounts = [m for m in deployment.mounts if under(path, m)]
        assert len(mounts) == 1, f"{key} = {path} is under no mount"
        mount = deployment.mounts[mounts[0]]
        assert mount["readOnly"] is True
        secret = deployment.volumes[mount["name"]].get("secret")
        assert secret, f"{key} = {path} is not on a Secret volume"
        # Readable by the pod's group (fsGroup), by nobody else.
        assert secret["defaultMode"] & 0o007 == 0 and secret["defaultMode"] & 0o040
        item = PurePosixPath(path).relative_to(mounts[0])
        keys = {i["path"]: i["key"] for i in secret["items"]}
        assert str(item) in keys, f"{path}: no item {item} in Secret {secret['secretName']}"
        if secret["secretName"] == "kmsd-secrets":
            assert keys[str(item)] in example["stringData"]
    assert "root_key_file" in deployment.config and "auth_config" in deployment.config
    # No key material or token hash inline in the ConfigMap.
    assert not re.search(r"[0-9a-fA-F]{64}|BEGIN [A-Z ]*PRIVATE KEY|token", json.dumps(deployment.config))


def test_restrictive_security_context(deployment):
    pod = deployment.pod["spec"]
    assert pod["automountServiceAccountToken"] is False
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True
    assert psc["runAsUser"] != 0 and psc["runAsGroup"] != 0
    assert psc["fsGroup"] == psc["runAsGroup"]
    assert psc["seccompProfile"]["type"] == "RuntimeDefault"
    csc = deployment.container["securityContext"]
    assert csc["allowPrivilegeEscalation"] is False
    assert csc.get("privileged", False) is False
    assert csc["readOnlyRootFilesystem"] is True
    assert csc["capabilities"]["drop"] == ["ALL"] and not csc["capabilities"].get("add")
    # With a read-only root, whatever kmsd writes must be on the data volume.
    for key in ("data_dir", "audit_log"):
        if key in deployment.config:
            path = deployment.config[key]
            assert path == deployment.config["data_dir"] or under(path, deployment.config["data_dir"])
    # The image's USER (deploy/Dockerfile) is the UID the pod runs as.
    user = re.findall(r"^USER\s+(\S+)", (DEPLOY / "Dockerfile").read_text(), re.M)[-1]
    assert user == f"{psc['runAsUser']}:{psc['runAsGroup']}"


def test_resource_requests_and_limits(deployment):
    resources = deployment.container["resources"]
    for kind in ("cpu", "memory"):
        assert quantity(resources["requests"][kind]) <= quantity(resources["limits"][kind])
    # The pool's key generation threads fit the CPU limit.
    assert deployment.config["pool"]["workers"] <= quantity(resources["limits"]["cpu"])


def test_disruption_budget_covers_the_pod(deployment):
    pdb = one(deployment.docs, "PodDisruptionBudget")
    labels = deployment.pod["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    if deployment.kind == "Deployment":
        # Interchangeable replicas: a drain takes one at a time, the rest serve.
        assert pdb["spec"]["maxUnavailable"] == 1 < deployment.sts["spec"]["replicas"]
        assert "minAvailable" not in pdb["spec"]
    else:
        assert pdb["spec"]["minAvailable"] == deployment.sts["spec"]["replicas"]
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


# === the mesh examples ===


def test_istio_requires_mtls_and_names_spiffe_principals():
    docs = load_docs(DEPLOY / "mesh" / "istio.yaml")
    base_docs, _ = kustomize_static(BASE)
    pod_labels = one(base_docs, "StatefulSet", "kmsd")["spec"]["template"]["metadata"]["labels"]
    peer = one(docs, "PeerAuthentication")
    assert peer["spec"]["mtls"]["mode"] == "STRICT"
    policy = one(docs, "AuthorizationPolicy")
    for doc in (peer, policy):
        assert doc["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    principals = [p for rule in policy["spec"]["rules"] for src in rule.get("from", [])
                  for p in src["source"]["principals"]]
    assert principals
    for principal in principals:
        assert re.fullmatch(r"[\w.-]+/ns/[\w-]+/sa/[\w-]+", principal), principal
    grpc_paths = [p for rule in policy["spec"]["rules"] for op in rule["to"]
                  for p in op["operation"].get("paths", []) if p.startswith("/kms.v1.")]
    assert grpc_paths


def test_linkerd_server_and_policies_line_up():
    docs = load_docs(DEPLOY / "mesh" / "linkerd.yaml")
    server = one(docs, "Server")
    assert server["spec"]["port"] == "grpc" and server["spec"]["proxyProtocol"] == "gRPC"
    routes = {d["metadata"]["name"] for d in by_kind(docs, "HTTPRoute")}
    authns = {d["metadata"]["name"] for d in by_kind(docs, "MeshTLSAuthentication")}
    authns |= {d["metadata"]["name"] for d in by_kind(docs, "NetworkAuthentication")}
    for route in by_kind(docs, "HTTPRoute"):
        assert route["spec"]["parentRefs"][0]["name"] == server["metadata"]["name"]
    policies = by_kind(docs, "AuthorizationPolicy")
    assert {p["spec"]["targetRef"]["name"] for p in policies} == routes
    for policy in policies:
        for ref in policy["spec"]["requiredAuthenticationRefs"]:
            assert ref["name"] in authns


# === the scheduled backup ===


def kmsctl_flags_in_source() -> set[str]:
    """Every long flag kmsctl declares (clap derives --a-b from a field a_b)."""
    flags = set()
    for path in (REPO / "kmsctl" / "src").rglob("*.rs"):
        text = path.read_text()
        for match in re.finditer(r"#\[arg\(([^]]*)\]\s*pub (\w+):", text, re.S):
            if "long" in match.group(1):
                flags.add("--" + match.group(2).replace("_", "-"))
    return flags


def test_backup_cronjob_runs_kmsctl_with_flags_it_has():
    docs, _ = kustomize_static(BACKUP)
    cron = one(docs, "CronJob", "kmsd-backup")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == one(docs, "ServiceAccount")["metadata"]["name"]
    (container,) = pod["containers"]
    assert container["command"] == ["/usr/local/bin/kmsctl"]
    flags = kmsctl_flags_in_source()
    used = {arg.split("=")[0] for arg in container["args"] if arg.startswith("--")}
    assert used <= flags, used - flags
    assert "backup" in container["args"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    out_dir = next(a.split("=", 1)[1] for a in container["args"] if a.startswith("--out-dir="))
    volumes = {v["name"]: v for v in pod["volumes"]}
    claim = volumes[mounts[out_dir]]["persistentVolumeClaim"]["claimName"]
    assert claim == one(docs, "PersistentVolumeClaim")["metadata"]["name"]
    token = next(a.split("=", 1)[1] for a in container["args"] if a.startswith("--token-file="))
    assert any(under(token, mount) and "secret" in volumes[name] for mount, name in mounts.items())


def test_mesh_policies_let_the_backup_job_call_backup_only():
    istio = one(load_docs(DEPLOY / "mesh" / "istio.yaml"), "AuthorizationPolicy")
    backup_rules = [r for r in istio["spec"]["rules"] for src in r.get("from", [])
                    if "cluster.local/ns/kms/sa/kms-backup" in src["source"]["principals"]]
    assert backup_rules
    for rule in backup_rules:
        paths = [p for op in rule["to"] for p in op["operation"]["paths"]]
        assert paths == ["/kms.v1.AdminService/Backup"]
    linkerd = load_docs(DEPLOY / "mesh" / "linkerd.yaml")
    route = one(linkerd, "HTTPRoute", "kmsd-backup")
    assert route["spec"]["rules"][0]["matches"][0]["path"] == {
        "type": "Exact", "value": "/kms.v1.AdminService/Backup"}
    clients = one(linkerd, "MeshTLSAuthentication", "kmsd-backup-clients")
    assert {"kind": "ServiceAccount", "name": "kms-backup", "namespace": "kms"} in \
        clients["spec"]["identityRefs"]
    general = one(linkerd, "MeshTLSAuthentication", "kmsd-clients")
    assert all(ref["name"] != "kms-backup" for ref in general["spec"]["identityRefs"])


# === the container build ===


def dockerfile() -> str:
    return (DEPLOY / "Dockerfile").read_text()


def test_dockerfile_is_multi_stage_and_runs_unprivileged():
    text = dockerfile()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M | re.I)
    assert len(stages) >= 2, "not a multi-stage build"
    build_names = {name for _, name in stages[:-1] if name}
    runtime = text[text.rfind("\nFROM ") :]
    assert re.search(r"^COPY --from=(\S+)", runtime, re.M).group(1) in build_names
    assert "distroless" in stages[-1][0] or "scratch" in stages[-1][0], "runtime image is not minimal"
    users = re.findall(r"^USER\s+(\S+)", runtime, re.M)
    assert users, "the runtime stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "USER must be a numeric non-root UID"
    assert "cargo build --release --locked" in text
    assert re.search(r'^ENTRYPOINT \["/usr/local/bin/kmsd"\]', runtime, re.M)


def test_dockerfile_ships_kmsctl_beside_kmsd():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    build = re.search(r"^RUN .*?cargo build (.*?)\n\n", dockerfile, re.M | re.S)
    assert build, "no cargo build in the build stage"
    for binary in ("kmsd", "kmsctl"):
        assert f"-p {binary}" in build.group(1) and f"--bin {binary}" in build.group(1)
    runtime = dockerfile.split("AS runtime", 1)[1]
    copies = re.findall(r"^COPY --from=build \S+ (\S+)$", runtime, re.M)
    assert set(copies) == {"/usr/local/bin/kmsd", "/usr/local/bin/kmsctl"}
    # Both run as the image's non-root USER (test above), after the copies.
    assert runtime.index("USER") > max(runtime.index(c) for c in copies)


def test_dockerfile_labels_the_binary_version():
    text = dockerfile()
    cargo_version = tomllib.loads((REPO / "Cargo.toml").read_text())["package"]["version"]
    runtime = text[text.rfind("\nFROM ") :]
    assert re.search(r"^ARG VERSION=(\S+)$", runtime, re.M).group(1) == cargo_version
    assert 'org.opencontainers.image.version="${VERSION}"' in runtime


def test_dockerignore_keeps_build_output_and_keys_out():
    patterns = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {"target", ".git", "kmsd-data", "**/*.key", ".venv"} <= patterns
    # What the build reads must stay in the context.
    for needed in ("src", "proto", "Cargo.toml", "Cargo.lock", "build.rs", "tests", "benches"):
        assert needed not in patterns
