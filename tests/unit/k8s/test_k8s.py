"""k8s/ checked without a cluster: every overlay renders with the real kustomize; core kinds
validate against Kubernetes' OpenAPI schemas and KubeRay kinds against the KubeRay CRDs; the
RayService's serveConfigV2 validates against Ray Serve's own schema and each application builds;
the monitoring shipped to Kubernetes is the monitoring tested against the real Prometheus."""

from __future__ import annotations

import functools
import importlib
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from ecgstream.settings import TopicSettings
from tests.paths import REPO_ROOT

ROOT = REPO_ROOT
OVERLAYS = ("dev", "prod")
KUBERNETES_VERSION = "1.32.0"
KUBERAY_SCHEMAS = ROOT / "k8s" / "schemas" / "kuberay"  # vendored, see its README
KUBERAY_CRDS = {"RayService": "ray.io_rayservices.yaml", "RayCluster": "ray.io_rayclusters.yaml",
                "RayJob": "ray.io_rayjobs.yaml"}  # fmt: skip
# operators whose CRD schemas are not available offline: checked for shape, not schema
OPERATOR_KINDS = {
    ("kafka.strimzi.io/v1beta2", "Kafka"), ("kafka.strimzi.io/v1beta2", "KafkaNodePool"),
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"), ("kafka.strimzi.io/v1beta2", "KafkaUser"),
    ("postgresql.cnpg.io/v1", "Cluster"),
    ("monitoring.coreos.com/v1", "PodMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule"),
}  # fmt: skip


@functools.cache
def kustomize() -> str:
    done = subprocess.run(
        [str(ROOT / "scripts/ensure-kustomize.sh")], capture_output=True, text=True, check=True
    )
    return done.stdout.strip().splitlines()[-1]


@functools.cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    done = subprocess.run(
        [kustomize(), "build", str(ROOT / "k8s/overlays" / overlay)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return tuple(d for d in yaml.safe_load_all(done.stdout) if d)


def _one(overlay: str, kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        d for d in rendered(overlay)
        if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]  # fmt: skip
    assert len(found) == 1, f"{overlay}: {len(found)} {kind} {name or ''}"
    return found[0]


def _crd_schema(kind: str) -> dict[str, Any]:
    crd = yaml.safe_load((KUBERAY_SCHEMAS / KUBERAY_CRDS[kind]).read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return version["schema"]["openAPIV3Schema"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_manifest_renders_and_validates(overlay: str) -> None:
    documents = rendered(overlay)
    kinds = {(d["apiVersion"], d["kind"]) for d in documents}
    assert ("ray.io/v1", "RayService") in kinds and kinds >= OPERATOR_KINDS
    for document in documents:
        where = f"{overlay}: {document['kind']}/{document['metadata']['name']}"
        assert document["metadata"].get("namespace") == (
            "ecgstream-dev" if overlay == "dev" else "ecgstream"
        ), where
        if document["kind"] in KUBERAY_CRDS:
            jsonschema.validate(document, _crd_schema(document["kind"]))
        elif (document["apiVersion"], document["kind"]) in OPERATOR_KINDS:
            assert isinstance(document.get("spec"), dict) and document["spec"], where
        else:  # a core kind: the Kubernetes OpenAPI schema, strict (no unknown fields)
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_a_wrong_field_is_caught_by_both_validators() -> None:
    """The checks above can fail: a misspelt field in a core kind and in a KubeRay kind."""
    job = dict(_one("dev", "Job"))
    job["spec"] = {**job["spec"], "backofLimit": 3}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)
    service = _one("dev", "RayService")
    broken = {**service, "spec": {**service["spec"], "serveConfigV2": 3}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, _crd_schema("RayService"))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_serve_config_validates_and_every_application_builds(overlay: str) -> None:
    from ray.serve.schema import ServeDeploySchema

    config = yaml.safe_load(_one(overlay, "RayService")["spec"]["serveConfigV2"])
    schema = ServeDeploySchema.model_validate(config)
    names = [app.name for app in schema.applications]
    assert names == ["ecgstream-inference", "ecgstream-api", "ecgstream-stream"]
    from ecgstream.lanes import lane

    assert names[0] == lane("production").serve_app  # the consumers look the classifier up so
    for app in schema.applications:
        module, _, attribute = app.import_path.partition(":")
        builder = getattr(importlib.import_module(module), attribute)
        built = builder({k: str(v) for k, v in (app.args or {}).items()})
        assert type(built).__name__ == "Application", app.name


def test_the_monitoring_in_k8s_is_what_prometheus_was_tested_with() -> None:
    dashboards = _one("prod", "ConfigMap", "ecgstream-grafana-dashboards")
    shipped = sorted((ROOT / "monitoring/grafana/dashboards").glob("*.json"))
    assert sorted(dashboards["data"]) == [p.name for p in shipped]
    for path in shipped:
        assert dashboards["data"][path.name] == path.read_text(), path.name  # byte-identical
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
    rules = yaml.safe_load((ROOT / "monitoring/prometheus/ecgstream-rules.yml").read_text())
    assert _one("prod", "PrometheusRule")["spec"]["groups"] == rules["groups"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_as_non_root_with_requests_and_memory_limits(overlay: str) -> None:
    service = _one(overlay, "RayService")["spec"]["rayClusterConfig"]
    templates = [service["headGroupSpec"]["template"]] + [
        group["template"] for group in service["workerGroupSpecs"]
    ]
    templates.append(_one(overlay, "Job")["spec"]["template"])
    templates.append(_one(overlay, "Deployment")["spec"]["template"])  # the central station
    for template in templates:
        assert template["spec"]["securityContext"]["runAsNonRoot"] is True
        for container in template["spec"]["containers"]:
            assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
            assert container["image"].startswith("registry.example.com/ecgstream")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_authenticated_tls_endpoints_are_open_beyond_the_namespace(overlay: str) -> None:
    policies = [d for d in rendered(overlay) if d["kind"] == "NetworkPolicy"]
    deny = [p for p in policies if p["spec"]["podSelector"] == {} and "ingress" not in p["spec"]]
    assert deny, "no default deny"
    open_to_anyone = []
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            sources = rule.get("from")
            if sources is None:
                open_to_anyone.append((policy["spec"]["podSelector"], rule["ports"]))
            else:
                for source in sources:  # other namespaces only by an explicit label
                    if "namespaceSelector" in source:
                        assert source["namespaceSelector"]["matchLabels"], policy
    # from anywhere: only Kafka's external listener, which is TLS with SCRAM
    assert open_to_anyone == [
        (
            {"matchLabels": {"strimzi.io/cluster": "ecgstream", "strimzi.io/broker-role": "true"}},
            [{"protocol": "TCP", "port": 9094}],
        )
    ]
    kafka = _one(overlay, "Kafka")["spec"]["kafka"]
    assert kafka["authorization"]["type"] == "simple"
    for listener in kafka["listeners"]:
        assert listener["tls"] is True and listener["authentication"]["type"] == "scram-sha-512"
    assert {listener["port"] for listener in kafka["listeners"]} == {9093, 9094}
    for name in ("ecgstream-api", "ecgstream-station"):  # HTTPS in front of each
        ingress = _one(overlay, "Ingress", name)["spec"]
        assert ingress["tls"] and ingress["tls"][0]["secretName"]
    station = _one(overlay, "Deployment", "ecgstream-station")["spec"]
    assert station["replicas"] == 1  # one escalation clock (k8s/base/station.yaml)
    env = {e["name"]: e for e in station["template"]["spec"]["containers"][0]["env"]}
    assert env["ECGSTREAM_KAFKA__USERNAME"]["value"] == "subscriber"  # read only
    assert env["ECGSTREAM_STATION__PAGER_USERNAME"]["value"] == "pager"


def test_kafka_users_have_the_local_secure_stacks_grants() -> None:
    from cluster.kafka_security import KafkaSecurity
    from ecgstream.settings import Settings

    resource = {"topic": "topic", "group": "group", "transactional-id": "transactionalId"}
    expected = {
        (grant.user, resource[grant.resource], name, grant.prefixed, tuple(grant.operations))
        for grant in KafkaSecurity(Settings(), Path("/nonexistent")).grants()
        for name in grant.names
    }
    declared = {
        (
            user["metadata"]["name"],
            acl["resource"]["type"],
            acl["resource"]["name"],
            acl["resource"]["patternType"] == "prefix",
            tuple(acl["operations"]),
        )
        for user in rendered("prod")
        if user["kind"] == "KafkaUser"
        for acl in user["spec"]["authorization"]["acls"]
    }
    assert declared == expected


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_process_connects_with_tls_and_credentials_from_secrets(overlay: str) -> None:
    settings = _one(overlay, "ConfigMap", "ecgstream-settings")["data"]
    assert settings["ECGSTREAM_KAFKA__SECURITY_PROTOCOL"] == "SASL_SSL"
    assert settings["ECGSTREAM_KAFKA__BOOTSTRAP_SERVERS"].endswith(":9093")
    assert not any("PASSWORD" in k or "DSN" in k for k in settings)  # secrets are not settings
    service = _one(overlay, "RayService")["spec"]["rayClusterConfig"]
    containers = [c for c in service["headGroupSpec"]["template"]["spec"]["containers"]]
    for group in service["workerGroupSpecs"]:
        containers += group["template"]["spec"]["containers"]
    containers += _one(overlay, "Job")["spec"]["template"]["spec"]["containers"]
    containers += _one(overlay, "Deployment")["spec"]["template"]["spec"]["containers"]
    for container in containers:
        env = {e["name"]: e for e in container["env"]}
        assert "sslmode=verify-full" in env["ECGSTREAM_POSTGRES__DSN"]["value"]
        for entry in env.values():  # every secret value comes from a Secret, none is inline
            if "PASSWORD" in entry["name"] or entry["name"] == "PG_APP_URI":
                assert "secretKeyRef" in entry["valueFrom"], entry
    hba = _one(overlay, "Cluster")["spec"]["postgresql"]["pg_hba"]
    assert hba[0].startswith("hostnossl all all") and hba[0].endswith("reject")


def test_topics_partitions_and_settings_agree() -> None:
    for overlay, partitions, replicas in (("dev", 8, 1), ("prod", 32, 3)):
        topics = [d for d in rendered(overlay) if d["kind"] == "KafkaTopic"]
        assert sorted(t["spec"]["topicName"] for t in topics) == sorted(TopicSettings().all())
        assert {t["spec"]["partitions"] for t in topics} == {partitions}
        assert {t["spec"]["replicas"] for t in topics} == {replicas}
        settings = _one(overlay, "ConfigMap", "ecgstream-settings")["data"]
        assert settings["ECGSTREAM_TOPICS__PARTITIONS"] == str(partitions)
        assert settings["ECGSTREAM_TOPICS__REPLICATION_FACTOR"] == str(replicas)
    # at most one consumer per partition
    assert (
        _one("prod", "ConfigMap", "ecgstream-settings")["data"]["ECGSTREAM_SCALING__MAX_CONSUMERS"]
        == "32"
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_autoscaling_is_one_set_of_numbers_in_the_configmap_serve_config_and_worker_group(
    overlay: str,
) -> None:
    from ecgstream.lanes import lane
    from ecgstream.settings import ScalingSettings
    from serve_app.inference import DEPLOYMENT_NAME

    data = _one(overlay, "ConfigMap", "ecgstream-settings")["data"]
    prefix = "ECGSTREAM_SCALING__"
    scaling = ScalingSettings(
        **{k.removeprefix(prefix).lower(): v for k, v in data.items() if k.startswith(prefix)}
    )
    assert scaling.autoscale
    assert scaling.max_consumers <= int(data["ECGSTREAM_TOPICS__PARTITIONS"])
    service = _one(overlay, "RayService")
    apps = {a["name"]: a for a in yaml.safe_load(service["spec"]["serveConfigV2"])["applications"]}
    inference = apps["ecgstream-inference"]
    assert "replicas" not in inference["args"]  # Serve decides, within the config's bounds
    (deployment,) = inference["deployments"]
    assert deployment["name"] == DEPLOYMENT_NAME
    configured = deployment["autoscaling_config"]
    expected = scaling.classifier_autoscaling()
    for key in ("min_replicas", "max_replicas", "target_ongoing_requests"):
        assert configured[key] == expected[key], (overlay, key)
    start = int(apps["ecgstream-stream"]["args"]["consumers"])
    assert scaling.min_consumers <= start <= scaling.max_consumers
    # Ray's autoscaler can place everything at its ceiling within the CPU group's maxReplicas
    cluster = service["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    cpu = next(g for g in cluster["workerGroupSpecs"] if g["groupName"] == "cpu")
    assert 0 < cpu["minReplicas"] <= cpu["replicas"] <= cpu["maxReplicas"]
    per_worker = float(cpu["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"])
    head = float(cluster["headGroupSpec"]["rayStartParams"]["num-cpus"])
    actor = lane("production").actor_cpus
    api = int(apps["ecgstream-api"]["args"]["replicas"]) * 0.25
    ceiling = actor * (scaling.max_consumers + scaling.classifier_max_replicas) + api
    assert head + cpu["maxReplicas"] * per_worker >= ceiling, overlay


def test_the_image_copies_files_that_exist_and_ray_versions_agree() -> None:
    dockerfile = (ROOT / "k8s/image/Dockerfile").read_text()
    copied = [
        source
        for line in dockerfile.splitlines()
        if line.startswith("COPY") and "--from=" not in line  # not from a build stage
        for source in line.split()[1:-1]
        if not source.startswith("--")
    ]
    assert "requirements.lock" in copied and "serve_app" in copied
    for source in copied:
        assert (ROOT / source).exists(), source
    base = re.search(r"ARG BASE=rayproject/ray:([0-9.]+)-", dockerfile)
    lock = re.search(r"^ray==([0-9.]+)$", (ROOT / "requirements.lock").read_text(), re.M)
    assert base and lock and base[1] == lock[1]
    for overlay in OVERLAYS:
        assert _one(overlay, "RayService")["spec"]["rayClusterConfig"]["rayVersion"] == lock[1]
