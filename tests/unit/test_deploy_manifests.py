"""deploy/k8s, deploy/compose and deploy/docker, checked statically (Docker does not run here).

Every Kubernetes object validates against the Kubernetes JSON schemas (strict) or, for the
custom resources, against schemas from the CRD model packages (tests/deploy_schemas.py); the
compose file against the Compose specification's schema. Then what the schemas cannot say:
every CXPULSE_* variable the files set is a real setting and the set of them loads, the
autoscaler never goes past the partition count, workers run as non-root with probes, limits
and a grace period long enough for a flush, and the names the Prometheus rules rely on.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from pipeline.core.config import Settings
from tests.deploy_schemas import compose_errors, crd_kinds, k8s_errors

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
COMPOSE = ROOT / "deploy" / "compose" / "compose.yaml"
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
NOT_K8S = {"kustomization.yaml", "prometheus-adapter-rule.yaml"}
WORKER_KINDS = {"StatefulSet", "Deployment", "Job"}
RULE_JOBS = {"cxpulse-compute", "cxpulse-sink"}  # what deploy/prometheus/rules match


def k8s_docs() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(K8S.rglob("*.yaml")):
        if path.name in NOT_K8S:
            continue
        for doc in yaml.safe_load_all(path.read_text("utf-8")):
            if doc:
                out.append((str(path.relative_to(ROOT)), doc))
    return out


def objects(kind: str) -> list[dict[str, Any]]:
    return [d for _p, d in k8s_docs() if d["kind"] == kind]


def one(kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in objects(kind) if d["metadata"]["name"] == name]
    return doc


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text("utf-8"))


# ---------------------------------------------------------------------------------- schemas


@pytest.mark.parametrize(
    ("where", "doc"), k8s_docs(), ids=lambda v: v if isinstance(v, str) else v["kind"]
)
def test_k8s_object_is_valid_against_its_schema(where: str, doc: dict[str, Any]) -> None:
    assert k8s_errors(doc) == [], where


def test_the_schemas_reject_a_typo() -> None:
    """The validators are strict: an unknown field fails, built-in kind or custom resource."""
    sts = copy.deepcopy(one("StatefulSet", "cxpulse-compute"))
    sts["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    assert k8s_errors(sts)
    scaled = copy.deepcopy(one("ScaledObject", "cxpulse-compute"))
    scaled["spec"]["maxReplicas"] = 3  # KEDA spells it maxReplicaCount
    assert k8s_errors(scaled)
    monitor = copy.deepcopy(one("ServiceMonitor", "cxpulse"))
    monitor["spec"]["endpoints"][0]["interval"] = 15  # a duration string, not a number
    assert k8s_errors(monitor)
    bad = copy.deepcopy(compose())
    bad["services"]["sink"]["stop_grace"] = "120s"
    assert compose_errors(bad)


def test_every_custom_resource_has_a_schema() -> None:
    kinds = {(d["apiVersion"], d["kind"]) for _p, d in k8s_docs()}
    # built-in API groups have no dot (apps/v1, policy/v1) or end in .k8s.io
    custom = {
        (api, kind)
        for api, kind in kinds
        if "." in api.split("/")[0] and not api.split("/")[0].endswith(".k8s.io")
    }
    assert custom == crd_kinds()


def test_compose_file_is_valid_against_the_compose_spec() -> None:
    assert compose_errors(compose()) == []


def test_kustomization_lists_every_manifest_but_the_examples_and_alternatives() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text("utf-8"))
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk - {"secret.example.yaml"}
    assert all((K8S / name).exists() for name in listed)


# ---------------------------------------------------------------------------------- settings


def setting_env_names() -> set[str]:
    """CXPULSE_<FIELD>, and CXPULSE_<SECTION>__<FIELD> for the nested sections."""
    names = {"CXPULSE_CONFIG"}  # the TOML file, read by the settings loader itself
    for name, field in Settings.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            names |= {f"CXPULSE_{name}__{sub}".upper() for sub in kind.model_fields}
        else:
            names.add(f"CXPULSE_{name}".upper())
    return names


def test_setting_names_are_walked_from_the_model() -> None:
    names = setting_env_names()
    assert {"CXPULSE_APP_ID", "CXPULSE_TOPICS__PARTITIONS", "CXPULSE_CLICKHOUSE__DSN"} <= names
    assert "CXPULSE_TOPICS__PARTITION" not in names
    assert "CXPULSE_CLICKHOUSE_DSN" not in names  # one underscore is not a section


def cxpulse_service_envs() -> dict[str, dict[str, str]]:
    """Environment of every compose service that runs the cxpulse image."""
    out = {}
    for name, svc in compose()["services"].items():
        if str(svc.get("image", "")).startswith("cxpulse:"):
            out[name] = {k: str(v) for k, v in (svc.get("environment") or {}).items()}
    return out


def dockerfile_env() -> dict[str, str]:
    text = DOCKERFILE.read_text("utf-8").replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env |= dict(re.findall(r"(\w+)=(\S+)", line))
    return env


def k8s_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for doc in objects("ConfigMap"):
        env |= doc["data"]
    for doc in objects("Secret"):
        env |= doc.get("stringData", {})
    for doc in objects("StatefulSet") + objects("Deployment") + objects("Job"):
        for c in doc["spec"]["template"]["spec"]["containers"]:
            env |= {e["name"]: str(e.get("value", "")) for e in c.get("env", [])}
    return env


@pytest.mark.parametrize("source", ["compose", "dockerfile", "k8s"])
def test_every_cxpulse_variable_is_a_real_setting(source: str) -> None:
    if source == "compose":
        envs = cxpulse_service_envs()
        assert set(envs) >= {"compute", "sink", "init"}
        env = {k: v for e in envs.values() for k, v in e.items()}
    else:
        env = dockerfile_env() if source == "dockerfile" else k8s_env()
    ours = {k for k in env if k.startswith("CXPULSE_")}
    assert ours, source
    assert ours <= setting_env_names(), sorted(ours - setting_env_names())


def load_with(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Settings:
    for key in [k for k in os.environ if k.startswith("CXPULSE_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith("CXPULSE_"):
            # compose interpolation: ${VAR:?...} -> a sample value
            monkeypatch.setenv(key, re.sub(r"\$\{[^}]*\}", "secret", value))
    return Settings()


def test_the_deployed_settings_load(monkeypatch: pytest.MonkeyPatch) -> None:
    sink = cxpulse_service_envs()["sink"]
    settings = load_with(monkeypatch, dockerfile_env() | sink)
    assert settings.clickhouse.dsn.get_secret_value().startswith("http://cxpulse:")
    assert not settings.clickhouse.is_embedded  # workers use the server, never chDB
    assert settings.kafka.replication_factor == 3
    assert settings.ports.web_host == "0.0.0.0"
    k8s = load_with(monkeypatch, k8s_env())
    assert k8s.kafka.security_protocol == "SASL_SSL"
    assert k8s.clickhouse.dsn.get_secret_value().startswith("https://")


# ---------------------------------------------------------------------------------- k8s shape


def partitions() -> int:
    return int(one("ConfigMap", "cxpulse-settings")["data"]["CXPULSE_TOPICS__PARTITIONS"])


def test_autoscaling_never_goes_past_the_partition_count() -> None:
    scaled = one("ScaledObject", "cxpulse-compute")["spec"]
    assert scaled["maxReplicaCount"] == partitions()
    assert scaled["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": "cxpulse-compute",
    }
    (trigger,) = scaled["triggers"]
    defaults = Settings()
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == f"{defaults.app_id}-compute"
    assert trigger["metadata"]["topic"] == defaults.topics.events
    assert trigger["metadata"]["allowIdleConsumers"] == "false"
    hpa = one("HorizontalPodAutoscaler", "cxpulse-compute")["spec"]
    assert hpa["maxReplicas"] == partitions()
    assert hpa["metrics"][0]["external"]["metric"]["name"] == "cxpulse_consumer_lag_messages"
    sts = one("StatefulSet", "cxpulse-compute")["spec"]
    assert sts["replicas"] <= partitions()


def workers() -> list[tuple[str, dict[str, Any]]]:
    return [
        (d["metadata"]["name"], d["spec"]["template"]["spec"])
        for d in objects("StatefulSet") + objects("Deployment") + objects("Job")
    ]


def test_pods_run_unprivileged_with_limits() -> None:
    assert {name for name, _ in workers()} == {"cxpulse-compute", "cxpulse-sink", "cxpulse-init"}
    for name, pod in workers():
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] != 0, name
        assert pod["automountServiceAccountToken"] is False, name
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert set(c["resources"]) == {"requests", "limits"}, name


def test_workers_have_probes_on_the_faust_web_port_and_time_to_flush() -> None:
    data = one("ConfigMap", "cxpulse-settings")["data"]
    defaults = Settings()
    web = {
        "compute": int(data["CXPULSE_PORTS__WORKER_WEB"]),
        "sink": int(data["CXPULSE_PORTS__SINK_WEB"]),
    }
    metrics = {
        "compute": int(data["CXPULSE_PORTS__WORKER_METRICS"]),
        "sink": int(data["CXPULSE_PORTS__SINK_METRICS"]),
    }
    for role in ("compute", "sink"):
        kind = "StatefulSet" if role == "compute" else "Deployment"
        doc = one(kind, f"cxpulse-{role}")
        pod = doc["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        assert c["args"][:2] == ["--role", role]
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports == {"web": web[role], "metrics": metrics[role]}
        assert c["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "web"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "web"}
        assert c["startupProbe"]["httpGet"]["path"] == "/health/live"
        # a flush may wait out the longest ClickHouse backoff, twice
        assert pod["terminationGracePeriodSeconds"] >= 2 * defaults.sink.retry_max_seconds
        annotations = doc["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(metrics[role])


def test_compute_state_lives_on_its_own_volume() -> None:
    sts = one("StatefulSet", "cxpulse-compute")["spec"]
    (claim,) = sts["volumeClaimTemplates"]
    (c,) = sts["template"]["spec"]["containers"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    data_dir = one("ConfigMap", "cxpulse-settings")["data"]["CXPULSE_DATA_DIR"]
    assert mounts[claim["metadata"]["name"]] == data_dir
    assert "$(POD_NAME)" in c["args"]  # a stable worker id names the state directory


def test_scrape_targets_carry_the_job_names_the_rules_use() -> None:
    services = {d["metadata"]["name"]: d for d in objects("Service")}
    assert set(services) == RULE_JOBS  # ServiceMonitor's job label = the Service name
    for svc in services.values():
        assert "metrics" in {p["name"] for p in svc["spec"]["ports"]}
    monitor = one("ServiceMonitor", "cxpulse")["spec"]
    assert monitor["endpoints"][0]["port"] == "metrics"
    for svc in services.values():
        labels = svc["metadata"]["labels"]
        assert all(labels.get(k) == v for k, v in monitor["selector"]["matchLabels"].items())
    assert one("StatefulSet", "cxpulse-compute")["spec"]["serviceName"] == "cxpulse-compute"


def test_disruption_budgets_take_one_worker_at_a_time() -> None:
    budgets = {d["metadata"]["name"]: d["spec"] for d in objects("PodDisruptionBudget")}
    assert budgets == {
        "cxpulse-compute": {
            "maxUnavailable": 1,
            "selector": budgets["cxpulse-compute"]["selector"],
        },
        "cxpulse-sink": {"maxUnavailable": 1, "selector": budgets["cxpulse-sink"]["selector"]},
    }


# ---------------------------------------------------------------------------------- compose, image


def test_compose_stack_has_what_the_pipeline_needs() -> None:
    services = compose()["services"]
    brokers = [s for s in services.values() if str(s.get("image", "")).startswith("apache/kafka:")]
    assert len(brokers) == 3
    assert {s["environment"]["KAFKA_NODE_ID"] for s in brokers} == {1, 2, 3}
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    assert services["compute"]["deploy"]["replicas"] == 2
    assert services["sink"]["deploy"]["replicas"] == 1
    assert services["compute"]["command"] == ["--role", "compute"]
    assert services["sink"]["command"] == ["--role", "sink"]
    assert "cxpulse topics create && cxpulse db migrate" in " ".join(services["init"]["entrypoint"])
    for name in ("compute", "sink"):
        assert services[name]["depends_on"]["init"] == {
            "condition": "service_completed_successfully"
        }
        assert services[name]["stop_grace_period"] == "120s"
    for name in ("prometheus", "alertmanager", "grafana"):
        assert name in services


def test_compose_reuses_the_deploy_files_instead_of_copies() -> None:
    services = compose()["services"]
    mounts = [v for s in services.values() for v in s.get("volumes", []) if v.startswith("..")]
    for mount in mounts:
        assert (COMPOSE.parent / mount.split(":")[0]).resolve().exists(), mount
    assert "../grafana/provisioning:/etc/grafana/provisioning:ro" in mounts
    assert "../grafana/dashboards:/var/lib/grafana/dashboards/cxpulse:ro" in mounts
    assert not list(COMPOSE.parent.rglob("*.json"))  # no duplicated dashboards
    secret = compose()["secrets"]["smtp_password"]["file"]
    assert secret.endswith(".example}")  # the committed file is a placeholder only


def test_no_real_secret_is_committed() -> None:
    example = (COMPOSE.parent / ".env.example").read_text("utf-8")
    assert re.search(r"^CLICKHOUSE_PASSWORD=change-me$", example, re.M)
    assert not (COMPOSE.parent / ".env").exists() or ".env" in (ROOT / ".gitignore").read_text()
    stringdata = one("Secret", "cxpulse-secrets")["stringData"]
    assert all("CHANGE-ME" in v for v in stringdata.values())


def test_worker_image() -> None:
    text = DOCKERFILE.read_text("utf-8")
    stages = re.findall(r"^FROM (\S+)", text, re.M)
    assert stages[-1] == "python:3.11-slim"
    (user,) = re.findall(r"^USER (\S+)", text, re.M)
    assert not user.startswith(("0", "root"))
    assert re.search(r"^HEALTHCHECK .*\n?.*/health/live", text, re.M)
    assert 'ENTRYPOINT ["cxpulse", "worker"]' in text
    assert 'CMD ["--role", "compute"]' in text
    assert re.search(r"pip install --no-index --find-links /wheels cxpulse", text)
    assert (ROOT / "deploy" / "docker" / "healthcheck.py").exists()
