"""deploy/, Dockerfile and docker-compose.yml, checked offline: no network, docker or cluster.

- Prometheus: ``promtool check config``, ``check rules`` and ``test rules`` (every alert
  has a firing and a not-firing case); every metric the rules and the dashboard use
  is one the worker exposes; every dashboard query parses.
- docker-compose.yml against the Compose Specification schema (tests/schemas).
- deploy/k8s/base against the Kubernetes JSON schemas of ``kubernetes-validate``
  (strict) and, for the Prometheus Operator kinds, the schemas in tests/schemas; the
  PrometheusRule has exactly the groups of deploy/prometheus/rules.yml.
- What ``kubectl kustomize`` builds from the base and from the example overlay: the
  same schemas; the base applies no Secret and refers to the one that must exist; the
  overlay generates it from an uncommitted secret.env (hashed name, references
  rewritten) and fails without that file; the policy ConfigMap is generated from
  policy.toml (hashed name, mounted), so a policy change is a new pod template.
- The NetworkPolicy: it selects the workers and admits, on the web port alone, only
  the scraper's pods (namespace AND pod selector) and the workers themselves.

promtool comes with Debian's ``prometheus`` package, and kubectl, when none is on the
PATH, with ``kubernetes-client``: ``deploy/local/tools`` installs them.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from suppressor.adapters.metrics import Metrics
from suppressor.adapters.settings import OPTIONS
from suppressor.core.policy import load_policy

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"
K8S = DEPLOY / "k8s"
BASE = K8S / "base"
EXAMPLE = K8S / "overlays" / "example"
SCHEMAS = REPO / "tests" / "schemas"
DASHBOARD = GRAFANA / "dashboards" / "suppressor.json"
COMPOSE = REPO / "docker-compose.yml"
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")  # oldest supported, newest in kubernetes-validate
SETTINGS_ENV = {option.env for option in OPTIONS}
JOB = "suppressor"
WORKER_LABELS = {"app.kubernetes.io/name": "suppressor", "app.kubernetes.io/component": "worker"}
SECRET = "suppressor-kafka"  # the workers' Secret: the base references it, creates none
ADMIN_TOKEN = "SUPPRESSOR_ADMIN_TOKEN"  # optional in that Secret: no token, no admin path
HASH_SUFFIX = "-[a-z0-9]{10}"  # what kustomize appends to a generated object's name
# the example overlay's secret.env in the tests (values with spaces and "=" pass verbatim)
EXAMPLE_SECRET = {"SUPPRESSOR_SASL_PASSWORD": "a pass=word", ADMIN_TOKEN: "t0ken"}


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def manifests() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(BASE.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                yield path, document


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in manifests() if doc["kind"] == kind]


def alert_rules() -> list[dict[str, Any]]:
    return [
        rule
        for group in load_yaml(PROMETHEUS / "rules.yml")["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


# --- Prometheus: promtool ----------------------------------------------------------------


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed: run deploy/local/tools (make test does)")
    return found


def run_promtool(promtool: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [promtool, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"promtool {args}:\n{result.stdout}\n{result.stderr}"
    return result


def test_promtool_check_config(promtool: str) -> None:
    out = run_promtool(promtool, "check", "config", PROMETHEUS / "prometheus.yml")
    assert "SUCCESS" in out.stdout


def test_promtool_check_rules(promtool: str) -> None:
    out = run_promtool(promtool, "check", "rules", PROMETHEUS / "rules.yml")
    assert f"SUCCESS: {len(alert_rules())} rules found" in out.stdout


def test_promtool_test_rules(promtool: str) -> None:
    out = run_promtool(promtool, "test", "rules", PROMETHEUS / "rules_test.yml")
    assert "SUCCESS" in out.stdout


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in load_yaml(PROMETHEUS / "rules_test.yml")["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = {rule["alert"] for rule in alert_rules()}
    assert alerts - firing == set(), "alerts without a test in which they fire"
    assert alerts - quiet == set(), "alerts without a test in which they stay quiet"
    assert firing | quiet <= alerts, "tests of alerts that do not exist"


def test_every_alert_says_what_it_means_and_what_to_do() -> None:
    runbook = (DEPLOY / "README.md").read_text()
    headings = {line.lstrip("#").strip() for line in runbook.splitlines() if line.startswith("#")}
    for rule in alert_rules():
        name = rule["alert"]
        annotations = rule["annotations"]
        assert {"summary", "description", "runbook"} <= annotations.keys(), name
        assert f"deploy/README.md#{name.lower()}" in annotations["runbook"], name
        assert name in headings, f"deploy/README.md has no section '{name}'"
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert f'job="{JOB}"' in rule["expr"] or "suppressor_" in rule["expr"], name


def test_scrape_config_scrapes_the_workers_as_job_suppressor() -> None:
    config = load_yaml(PROMETHEUS / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    worker_job = jobs[JOB]
    assert worker_job.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for static in worker_job["static_configs"] for t in static["targets"]]
    compose = load_yaml(COMPOSE)
    workers = [
        name
        for name, service in compose["services"].items()
        if "worker" in service.get("command", [])
    ]
    assert sorted(targets) == sorted(f"{name}:6066" for name in workers)
    assert config["rule_files"] == ["rules.yml"]


# --- metrics used by the rules and the dashboard exist -----------------------------------


def exposed_names() -> set[str]:
    """Every family and sample name the worker's /metrics can show (faust bound)."""
    faust = pytest.importorskip("faust")
    metrics = Metrics(CollectorRegistry())
    app = faust.App("deploy-test", broker="kafka://localhost:1", web_enabled=False)
    metrics.bind_app(app)
    try:
        text = metrics.render().decode()
    finally:
        metrics.unbind()
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "histogram":
            names.update(f"{family.name}_{suffix}" for suffix in ("bucket", "count", "sum"))
        if family.type == "counter":
            names.add(f"{family.name}_total")
    return names


def dashboard_targets() -> list[dict[str, Any]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target for panel in dashboard["panels"] for target in panel.get("targets", [])]


METRIC_NAME = re.compile(r"\b((?:suppressor|process)_[a-z0-9_]+)\b")


def test_every_metric_in_the_rules_and_the_dashboard_is_exposed() -> None:
    exposed = exposed_names()
    used: dict[str, str] = {}
    for rule in alert_rules():
        for name in METRIC_NAME.findall(rule["expr"]):
            used[name] = f"alert {rule['alert']}"
    for target in dashboard_targets():
        for name in METRIC_NAME.findall(target["expr"]):
            used[name] = f"dashboard query {target['expr']!r}"
    assert used, "no metric found: the pattern is wrong"
    missing = {name: where for name, where in used.items() if name not in exposed}
    assert missing == {}


def test_dashboard_queries_are_valid_promql(promtool: str, tmp_path: Path) -> None:
    """Each dashboard query as a recording rule: promtool parses every one."""
    substitutions = {
        "$__rate_interval": "1m",
        "$__range": "1h",
        "$job": JOB,
        "$instance": ".+",
    }
    rules = []
    for number, target in enumerate(dashboard_targets()):
        expr = target["expr"]
        for variable, value in substitutions.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"unknown dashboard variable in {target['expr']!r}"
        rules.append({"record": f"dashboard:query_{number}", "expr": expr})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = run_promtool(promtool, "check", "rules", path)
    assert f"SUCCESS: {len(rules)} rules found" in out.stdout


# --- Grafana -----------------------------------------------------------------------------


def test_dashboard_shows_what_an_sre_needs() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    assert dashboard["uid"] and dashboard["title"]
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel.get("description"), f"panel {panel['title']!r} has no description"
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
    queries = " ".join(target["expr"] for target in dashboard_targets())
    for metric in (
        "suppressor_events_total",
        "suppressor_actions_total",
        "suppressor_suppressed_total",
        "suppressor_dlq_total",
        "suppressor_consumer_lag",
        "suppressor_decision_seconds_bucket",
        "suppressor_event_lag_seconds_bucket",
        "suppressor_stream_time_seconds",
    ):
        assert metric in queries, f"the dashboard does not show {metric}"
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["job"]["current"]["value"] == JOB


def test_grafana_provisioning_matches_the_dashboard_and_compose() -> None:
    datasources = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    (source,) = datasources["datasources"]
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["current"]["value"] == source["uid"]
    assert source["type"] == "prometheus"
    providers = load_yaml(GRAFANA / "provisioning" / "dashboards" / "suppressor.yml")
    (provider,) = providers["providers"]
    grafana = load_yaml(COMPOSE)["services"]["grafana"]
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"])
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    assert source["url"] == "http://prometheus:9090"


# --- docker compose ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose_validator() -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


def test_compose_file_matches_the_compose_specification(
    compose_validator: jsonschema.protocols.Validator,
) -> None:
    errors = [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in compose_validator.iter_errors(load_yaml(COMPOSE))
    ]
    assert errors == []


def test_the_compose_schema_catches_mistakes(
    compose_validator: jsonschema.protocols.Validator,
) -> None:
    compose = load_yaml(COMPOSE)
    compose["services"]["worker-1"]["enviroment"] = {"SUPPRESSOR_BROKER": "kafka:9092"}
    assert not compose_validator.is_valid(compose)
    compose = load_yaml(COMPOSE)
    compose["services"]["kafka"]["ports"] = {"29092": 29092}
    assert not compose_validator.is_valid(compose)
    compose = load_yaml(COMPOSE)
    compose["servics"] = compose.pop("services")
    assert not compose_validator.is_valid(compose)


def test_compose_services_fit_together() -> None:
    compose = load_yaml(COMPOSE)
    services = compose["services"]
    volumes = set(compose.get("volumes", {}))
    assert {"kafka", "topics", "prometheus", "grafana"} <= services.keys()
    workers = [name for name, service in services.items() if service.get("command") == ["worker"]]
    assert len(workers) == 2
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, (name, dependency)
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (REPO / source).exists(), (name, source)
            else:
                assert source in volumes, (name, source)
        for variable in service.get("environment", {}):
            if variable.startswith("SUPPRESSOR_"):
                assert variable in SETTINGS_ENV, f"{name}: {variable} is not a setting"
    kafka = services["kafka"]["environment"]
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    assert kafka["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == 1
    assert kafka["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == 1
    assert kafka["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 1
    assert services["kafka"]["image"].startswith("apache/kafka:3.9.")
    assert services["topics"]["command"] == ["topics"]
    for worker in workers:
        depends = services[worker]["depends_on"]
        assert depends["topics"]["condition"] == "service_completed_successfully"
        assert depends["kafka"]["condition"] == "service_healthy"
        env = services[worker]["environment"]
        assert env["SUPPRESSOR_BROKER"] == "kafka:9092"
        assert any(
            v.endswith(":" + env["SUPPRESSOR_DATA_DIR"]) for v in services[worker]["volumes"]
        )
    prometheus = services["prometheus"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]


# --- Dockerfile -----------------------------------------------------------------------------


def test_dockerfile_builds_a_slim_non_root_worker_image() -> None:
    text = (REPO / "Dockerfile").read_text()
    instructions = [
        line.strip() for line in text.replace("\\\n", " ").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]  # fmt: skip
    froms = [line.split()[1] for line in instructions if line.startswith("FROM ")]
    assert all(image.startswith("python:3.11-slim") for image in froms), froms
    final_stage = instructions[max(i for i, x in enumerate(instructions) if x.startswith("FROM "))]
    users = [line for line in instructions if line.startswith("USER ")]
    assert users and users[-1] not in {"USER root", "USER 0"}
    assert instructions.index(users[-1]) > instructions.index(final_stage)
    assert 'ENTRYPOINT ["suppressor"]' in instructions
    assert 'CMD ["worker"]' in instructions
    assert any("-c constraints.txt" in line for line in instructions if line.startswith("RUN "))
    # everything COPY takes from the context survives .dockerignore
    ignore = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()]
    kept = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert "**" in ignore
    for line in instructions:
        if line.startswith("COPY ") and "--from=" not in line:
            for source in line.split()[1:-1]:
                assert source.rstrip("/") in kept, f"{source} is excluded by .dockerignore"
                assert (REPO / source).exists(), source


# --- Kubernetes -----------------------------------------------------------------------------
#
# The files of deploy/k8s/base are validated as written (no tool needed), then what
# `kubectl kustomize` builds from the base and from the example overlay (with a
# secret.env the test writes in a copy): the generated ConfigMap and Secret, their
# hashed names and the references kustomize rewrites to them.


@pytest.fixture(scope="module")
def kubernetes_validate() -> Any:
    return pytest.importorskip("kubernetes_validate")


@pytest.fixture(scope="module")
def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.skip("kubectl is not installed: run deploy/local/tools (make test does)")
    return found


def kustomize(kubectl: str, directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [kubectl, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def build(kubectl: str, directory: Path) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize DIRECTORY` renders (what `kubectl apply -k` sends)."""
    result = kustomize(kubectl, directory)
    assert result.returncode == 0, f"kubectl kustomize {directory}:\n{result.stderr}"
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def copy_k8s(destination: Path) -> Path:
    """deploy/k8s copied to DESTINATION, leaving out any secret.env a developer made."""
    shutil.copytree(K8S, destination, ignore=shutil.ignore_patterns("secret.env"))
    return destination


def only(documents: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [document for document in documents if document["kind"] == kind]
    return found


def secret_refs(workload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Variable name -> secretKeyRef, over the pod template's containers."""
    return {
        env["name"]: env["valueFrom"]["secretKeyRef"]
        for container in workload["spec"]["template"]["spec"]["containers"]
        for env in container.get("env", [])
        if "secretKeyRef" in env.get("valueFrom", {})
    }


@pytest.fixture(scope="module")
def base(kubectl: str) -> list[dict[str, Any]]:
    return build(kubectl, BASE)


@pytest.fixture(scope="module")
def example(kubectl: str, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    overlay = copy_k8s(tmp_path_factory.mktemp("example") / "k8s") / "overlays" / "example"
    (overlay / "secret.env").write_text(
        "".join(f"{key}={value}\n" for key, value in EXAMPLE_SECRET.items())
    )
    return build(kubectl, overlay)


def crd_validator(kind: str) -> jsonschema.protocols.Validator:
    name = {"PodMonitor": "podmonitor", "PrometheusRule": "prometheusrule"}[kind]
    schema = json.loads((SCHEMAS / f"monitoring.coreos.com_v1_{name}.json").read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


def assert_valid(
    kubernetes_validate: Any, document: dict[str, Any], version: str, where: str
) -> None:
    if document["apiVersion"].startswith("monitoring.coreos.com/"):
        errors = [error.message for error in crd_validator(document["kind"]).iter_errors(document)]
        assert errors == [], f"{where}: {errors}"
        return
    try:
        kubernetes_validate.validate(document, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        pytest.fail(f"{where} ({document['kind']}, Kubernetes {version}): {error}")


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_k8s_manifests_match_the_kubernetes_schemas(kubernetes_validate: Any, version: str) -> None:
    kinds = set()
    for path, document in manifests():
        kinds.add(document["kind"])
        assert_valid(kubernetes_validate, document, version, path.name)
    assert {
        "StatefulSet",
        "Service",
        "ConfigMap",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Job",
        "PodMonitor",
        "PrometheusRule",
    } <= kinds
    assert "Secret" not in kinds


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_what_kustomize_builds_matches_the_kubernetes_schemas(
    kubernetes_validate: Any,
    base: list[dict[str, Any]],
    example: list[dict[str, Any]],
    version: str,
) -> None:
    for where, documents in (("base", base), ("overlays/example", example)):
        for document in documents:
            name = f"{where}: {document['kind']} {document['metadata']['name']}"
            assert_valid(kubernetes_validate, document, version, name)


def test_the_kubernetes_schemas_catch_mistakes(kubernetes_validate: Any) -> None:
    (statefulset,) = by_kind("StatefulSet")
    statefulset["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["prot"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, KUBERNETES_VERSIONS[-1], strict=True)
    (policy,) = by_kind("NetworkPolicy")
    policy["spec"]["ingress"][0]["form"] = policy["spec"]["ingress"][0].pop("from")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(policy, KUBERNETES_VERSIONS[-1], strict=True)
    (podmonitor,) = by_kind("PodMonitor")
    podmonitor["spec"]["podMetricsEndpoints"][0]["interval"] = "15 seconds"
    assert not crd_validator("PodMonitor").is_valid(podmonitor)
    (rule,) = by_kind("PrometheusRule")
    rule["spec"]["groups"][0]["rules"][0]["annotation"] = {}
    assert not crd_validator("PrometheusRule").is_valid(rule)


def test_prometheusrule_has_the_groups_of_rules_yml(promtool: str, tmp_path: Path) -> None:
    (rule,) = by_kind("PrometheusRule")
    assert rule["spec"]["groups"] == load_yaml(PROMETHEUS / "rules.yml")["groups"], (
        "deploy/k8s/base/prometheusrule.yaml is stale: "
        "deploy/k8s/render-prometheusrule > deploy/k8s/base/prometheusrule.yaml"
    )
    rendered = subprocess.run(
        [K8S / "render-prometheusrule"], capture_output=True, text=True, check=True, timeout=30
    )
    assert rendered.stdout == (BASE / "prometheusrule.yaml").read_text()
    extracted = tmp_path / "rules-from-prometheusrule.yml"
    extracted.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    run_promtool(promtool, "check", "rules", extracted)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = load_yaml(BASE / "kustomization.yaml")
    listed = set(kustomization["resources"])
    assert listed == {path.name for path in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    (policy,) = kustomization["configMapGenerator"]
    assert policy == {"name": "suppressor-policy", "files": ["policy.toml"]}
    assert "secretGenerator" not in kustomization
    # no Secret is committed anywhere under deploy/k8s, overlays included
    for path in K8S.rglob("*.yaml"):
        for document in yaml.safe_load_all(path.read_text()):
            assert not (document and document.get("kind") == "Secret"), path


def test_the_base_applies_no_secret_and_needs_an_existing_one(base: list[dict[str, Any]]) -> None:
    assert [doc["metadata"]["name"] for doc in base if doc["kind"] == "Secret"] == []
    statefulset, job = only(base, "StatefulSet"), only(base, "Job")
    for workload in (statefulset, job):
        password = secret_refs(workload)["SUPPRESSOR_SASL_PASSWORD"]
        assert password == {"name": SECRET, "key": "SUPPRESSOR_SASL_PASSWORD", "optional": False}
    # the admin token may be absent from the Secret: then the admin path stays off
    assert secret_refs(statefulset)[ADMIN_TOKEN] == {
        "name": SECRET,
        "key": ADMIN_TOKEN,
        "optional": True,
    }
    assert ADMIN_TOKEN not in secret_refs(job)


def test_the_policy_configmap_is_generated_and_mounted(base: list[dict[str, Any]]) -> None:
    configmaps = {doc["metadata"]["name"]: doc for doc in base if doc["kind"] == "ConfigMap"}
    (policy_name,) = [name for name in configmaps if name != "suppressor-config"]
    assert re.fullmatch("suppressor-policy" + HASH_SUFFIX, policy_name), policy_name
    assert configmaps[policy_name]["data"] == {"policy.toml": (BASE / "policy.toml").read_text()}
    load_policy(BASE / "policy.toml")  # a policy the worker accepts

    statefulset = only(base, "StatefulSet")
    pod = statefulset["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes["policy"]["configMap"] == {"name": policy_name}
    (container,) = pod["containers"]
    (mount,) = [mount for mount in container["volumeMounts"] if mount["name"] == "policy"]
    config = configmaps["suppressor-config"]["data"]
    assert config["SUPPRESSOR_POLICY"] == mount["mountPath"] + "/policy.toml"


def test_a_policy_change_rolls_the_workers(
    kubectl: str, base: list[dict[str, Any]], tmp_path: Path
) -> None:
    k8s = copy_k8s(tmp_path / "k8s")
    policy = k8s / "base" / "policy.toml"
    text = policy.read_text()
    assert "max_similar_items = 3" in text
    policy.write_text(text.replace("max_similar_items = 3", "max_similar_items = 2"))
    changed = build(kubectl, k8s / "base")

    def policy_volume(documents: list[dict[str, Any]]) -> str:
        volumes = only(documents, "StatefulSet")["spec"]["template"]["spec"]["volumes"]
        (volume,) = [volume for volume in volumes if volume["name"] == "policy"]
        return str(volume["configMap"]["name"])

    assert policy_volume(changed) != policy_volume(base)
    assert re.fullmatch("suppressor-policy" + HASH_SUFFIX, policy_volume(changed))
    names = {doc["metadata"]["name"] for doc in changed if doc["kind"] == "ConfigMap"}
    assert policy_volume(changed) in names
    # a new pod template: the StatefulSet's rolling update replaces every worker
    template = only(changed, "StatefulSet")["spec"]["template"]
    assert template != only(base, "StatefulSet")["spec"]["template"]


def test_the_network_policy_lets_only_the_scraper_and_the_workers_reach_the_web_port() -> None:
    (policy,) = by_kind("NetworkPolicy")
    (statefulset,) = by_kind("StatefulSet")
    (service,) = by_kind("Service")
    (config,) = by_kind("ConfigMap")
    spec = policy["spec"]
    template = statefulset["spec"]["template"]
    (container,) = template["spec"]["containers"]
    web = {port["name"]: port["containerPort"] for port in container["ports"]}["web"]
    assert web == int(config["data"]["SUPPRESSOR_WEB_PORT"]) == service["spec"]["ports"][0]["port"]

    # it selects the worker pods, and isolates them for ingress only (egress stays open:
    # Kafka, DNS)
    assert spec["podSelector"] == {"matchLabels": WORKER_LABELS}
    assert spec["podSelector"] == statefulset["spec"]["selector"]
    assert WORKER_LABELS.items() <= template["metadata"]["labels"].items()
    assert spec["policyTypes"] == ["Ingress"]
    assert "egress" not in spec

    # every rule names its peers (a rule without "from" admits everyone) and the web
    # port alone (a rule without "ports" admits every port)
    peers = []
    for rule in spec["ingress"]:
        assert rule.get("from"), f"a rule without peers admits every source: {rule}"
        assert rule.get("ports") == [{"protocol": "TCP", "port": web}], rule
        peers.extend(rule["from"])
    assert all("ipBlock" not in peer for peer in peers), peers

    # the scraper: pods with its labels in its namespace (both selectors in one peer is
    # AND; as two peers, any pod of that namespace or that label anywhere would pass)
    (scraper,) = [peer for peer in peers if "namespaceSelector" in peer]
    assert scraper.keys() == {"namespaceSelector", "podSelector"}
    assert scraper["namespaceSelector"]["matchLabels"], "an empty selector is every namespace"
    assert scraper["podSelector"]["matchLabels"], "an empty selector is every pod"
    assert not WORKER_LABELS.items() <= scraper["podSelector"]["matchLabels"].items()
    # the workers themselves, in their own namespace (faust forwards table-routed requests)
    (workers,) = [peer for peer in peers if "namespaceSelector" not in peer]
    assert workers == {"podSelector": {"matchLabels": WORKER_LABELS}}


def test_the_example_overlay_generates_the_secret(
    base: list[dict[str, Any]], example: list[dict[str, Any]]
) -> None:
    secret = only(example, "Secret")
    name = secret["metadata"]["name"]
    assert re.fullmatch(SECRET + HASH_SUFFIX, name), name
    assert secret["type"] == "Opaque"
    decoded = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
    assert decoded == EXAMPLE_SECRET
    # the references follow the hashed name: a changed secret.env rolls the workers
    for kind in ("StatefulSet", "Job"):
        refs = secret_refs(only(example, kind))
        assert {ref["name"] for ref in refs.values()} == {name}, kind
        assert all(ref["key"] == variable for variable, ref in refs.items()), kind
    # and nothing else differs from the base
    objects = {(doc["kind"], doc["metadata"]["name"]) for doc in example}
    assert objects - {("Secret", name)} == {(doc["kind"], doc["metadata"]["name"]) for doc in base}


def test_the_example_overlay_fails_without_its_secret_file(kubectl: str, tmp_path: Path) -> None:
    overlay = copy_k8s(tmp_path / "k8s") / "overlays" / "example"
    assert not (overlay / "secret.env").exists()
    result = kustomize(kubectl, overlay)
    assert result.returncode != 0
    assert "secret.env" in result.stderr
    assert "kind:" not in result.stdout  # nothing to apply, no placeholder


def test_the_example_secret_file_stays_out_of_git_and_the_example_holds_no_value() -> None:
    example = EXAMPLE / "secret.env.example"
    keys: dict[str, str] = {}
    for line in example.read_text().splitlines():
        match = re.fullmatch(r"(# ?)?(SUPPRESSOR_[A-Z_]+)=(.*)", line)
        if match:
            keys[match[2]] = match[3]
            assert match[3] == "", f"secret.env.example holds a value: {line}"
        else:
            assert line == "" or line.startswith("#"), line
    assert keys.keys() == {"SUPPRESSOR_SASL_PASSWORD", ADMIN_TOKEN}
    assert "SUPPRESSOR_SASL_PASSWORD=" in example.read_text().splitlines()  # not commented out
    git = shutil.which("git")
    if git is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")

    def ignored(path: Path) -> bool:
        result = subprocess.run(
            [git, "-C", str(REPO), "check-ignore", "-q", str(path.relative_to(REPO))],
            timeout=30,
            check=False,
        )
        assert result.returncode in (0, 1), result
        return result.returncode == 0

    assert ignored(EXAMPLE / "secret.env")
    assert not ignored(example)


def test_statefulset_runs_the_workers_as_an_sre_expects() -> None:
    (statefulset,) = by_kind("StatefulSet")
    (config,) = by_kind("ConfigMap")
    (service,) = by_kind("Service")
    (podmonitor,) = by_kind("PodMonitor")
    spec = statefulset["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    (container,) = pod["containers"]

    assert spec["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert podmonitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert labels[podmonitor["spec"]["jobLabel"]] == JOB  # job="suppressor", as the rules expect
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports["web"] == int(config["data"]["SUPPRESSOR_WEB_PORT"])
    assert podmonitor["spec"]["podMetricsEndpoints"][0]["port"] == "web"

    assert pod["terminationGracePeriodSeconds"] >= 30
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["resources"]["requests"].keys() >= {"cpu", "memory"}
    assert "memory" in container["resources"]["limits"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] == "web"

    (claim,) = spec["volumeClaimTemplates"]
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == config["data"]["SUPPRESSOR_DATA_DIR"]
    policy_dir = mounts["policy"]
    assert config["data"]["SUPPRESSOR_POLICY"].startswith(policy_dir + "/")

    # the admin token is read before the admin path (issue 17) makes it a setting
    known = SETTINGS_ENV | {ADMIN_TOKEN}
    for variable in [*config["data"], *(env["name"] for env in container["env"])]:
        assert variable in known, f"{variable} is not a setting"
    assert "SUPPRESSOR_SASL_PASSWORD" not in config["data"]
    assert ADMIN_TOKEN not in config["data"]
    for variable, ref in secret_refs(statefulset).items():
        assert (ref["name"], ref["key"]) == (SECRET, variable)
    assert {"configMapRef": {"name": config["metadata"]["name"]}} in container["envFrom"]


# --- deploy/local/tools ----------------------------------------------------------------------


def test_local_tools_script() -> None:
    script = DEPLOY / "local" / "tools"
    assert script.stat().st_mode & 0o111, "deploy/local/tools must be executable"
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)
    result = subprocess.run([str(script), "--check"], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        pytest.skip(f"tools missing ({result.stdout.strip()}): run deploy/local/tools")
    assert result.stdout == ""
