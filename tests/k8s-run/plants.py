"""Defects planted into the rendered manifests (in memory; deploy/ is never touched), each
with the failure the run must report (tests/k8s-run/defects.sh runs them all).

    run.sh --plant NAME
"""


def _deployment(objects, name):
    return next(o for o in objects if o.get("kind") == "Deployment" and o["metadata"]["name"] == name)


def _container(objects, name):
    return _deployment(objects, name)["spec"]["template"]["spec"]["containers"][0]


def bridge_no_crm_url(objects, examples):
    """The first manifests' bridge: no BRIDGE__CRM__URL (it falls back to its localhost default)."""
    c = _container(objects, "sync-bridge")
    c["env"] = [e for e in c["env"] if e["name"] != "BRIDGE__CRM__URL"]


def readiness_on_tls_port(objects, examples):
    """The CRM's readiness probe asks /readyz on the TLS gRPC port instead of the http port."""
    _container(objects, "crm-service")["readinessProbe"]["httpGet"]["port"] = "grpc"


def grpc_probe_on_tls_port(objects, examples):
    """The ERP's readiness as a kubelet gRPC probe on its public port (TLS; the kubelet speaks plaintext)."""
    c = _container(objects, "erp-service")
    c["readinessProbe"] = {"grpc": {"port": 50052}, "periodSeconds": 2, "failureThreshold": 3}


def drop_secret_key(objects, examples):
    """The documented crm-runtime Secret without its `password` key."""
    for s in examples:
        if s["metadata"]["name"] == "crm-runtime":
            (s.get("stringData") or {}).pop("password", None)
            (s.get("data") or {}).pop("password", None)
            return
    raise SystemExit("plant drop-secret-key: no crm-runtime Secret in secret.example.yaml")


def topic_wrong_namespace(objects, examples):
    """KafkaTopic erp.stock in the services' namespace, where Strimzi's topic operator never looks."""
    for o in objects:
        if o.get("kind") == "KafkaTopic" and o["metadata"]["name"] == "erp.stock":
            o["metadata"]["namespace"] = "tandem"


def service_selector_typo(objects, examples):
    """Service erp-service selects no pod (a typo in its selector)."""
    for o in objects:
        if o.get("kind") == "Service" and o["metadata"]["name"] == "erp-service":
            o["spec"]["selector"] = {"app.kubernetes.io/name": "erp-servcie"}


def grace_too_short(objects, examples):
    """The CRM's preStop outlasts its terminationGracePeriodSeconds."""
    spec = _deployment(objects, "crm-service")["spec"]["template"]["spec"]
    spec["terminationGracePeriodSeconds"] = 2
    spec["containers"][0]["lifecycle"] = {"preStop": {"sleep": {"seconds": 5}}}


PLANTS = {
    "bridge-no-crm-url": (bridge_no_crm_url, "dialled 127.0.0.1:50061"),
    "readiness-on-tls-port": (readiness_on_tls_port, "crm-service"),
    "grpc-probe-on-tls-port": (grpc_probe_on_tls_port, "plaintext, as the kubelet"),
    "drop-secret-key": (drop_secret_key, "couldn't find key password in secret tandem/crm-runtime"),
    "topic-wrong-namespace": (topic_wrong_namespace, "tandem/erp.stock"),
    "service-selector-typo": (service_selector_typo, "erp-service"),
    "grace-too-short": (grace_too_short, "SIGKILLed"),
}
