"""Offline checks of the rendered Kubernetes overlays (tests/k8s/render.sh renders them and
runs this). One line per check says what it proves; the first failure stops the run with a
message naming the object and the defect, and exit status 1.

    checks.py RENDER_DIR OVERLAY...     # RENDER_DIR holds OVERLAY.yaml for each overlay
"""

import os
import sys
from pathlib import Path

import monitoring
import netpol
import policy
import schema
import topics as kafka_topics
from rendered import CheckFailed, Documented, Render, code_topics, fail, load_yaml, ok

HERE = Path(__file__).resolve().parent
ROOT = Path(os.environ.get("TANDEM_ROOT", HERE.parent.parent))
K8S = Path(os.environ.get("TANDEM_K8S", ROOT / "deploy" / "k8s"))


def run(render_dir, overlays):
    documented = Documented(K8S)
    topics = code_topics(ROOT)
    schemas = schema.Schemas()
    renders = [Render(overlay, Path(render_dir) / f"{overlay}.yaml") for overlay in overlays]
    examples = [o for name in ("secret.example.yaml", "operator-secrets.example.yaml", "certificates.example.yaml")
                for o in load_yaml(K8S / "base" / name)]
    schema.validate([o for o in examples if o["kind"] == "Secret"], "base/*.example.yaml", schemas)
    ok("schema", "base", "the documented Secrets are valid Kubernetes Secrets")
    check_certificates(examples)
    for r in renders:
        schema.check_schemas(r, schemas)
        if r.overlay == "prod":
            policy.check_reflection(r)
        policy.check_ports(r)
        policy.check_probes(r)
        policy.check_pod_security(r)
        policy.check_service_accounts(r)
        policy.check_loopback(r)
        policy.check_images(r)
        policy.check_secrets(r, documented)
        policy.check_databases(r, documented)
        policy.check_kafka_clients(r)
        kafka_topics.check_topics(r, topics)
        if r.overlay == "prod":
            policy.check_kafka_prod(r)
            kafka_topics.check_users(r, topics)
            policy.check_backups(r)
            monitoring.check_metric_names(r, ROOT, K8S / "monitoring" / "dashboard.json")
            monitoring.check_alert_tests(r, HERE / "alerts.test.yaml")
        policy.check_production_shape(r)
        netpol.check_network(r)


def check_certificates(examples):
    """The example certificates name what clients dial."""
    certificates = {o["metadata"]["name"]: o["spec"] for o in examples if o["kind"] == "Certificate"}
    for service in ("crm-service", "erp-service"):
        names = set(certificates.get(service, {}).get("dnsNames", []))
        for wanted in (service, f"{service}.tandem.svc"):
            if wanted not in names:
                fail("certificates", f"certificates.example.yaml: {service}'s certificate does not name {wanted}")
    if "sync-bridge" not in certificates.get("sync-bridge", {}).get("dnsNames", []):
        fail("certificates", "certificates.example.yaml: the bridge's certificate does not name sync-bridge")
    ok("certificates", "base", "the example server certificates name the Services' DNS names, the bridge's names sync-bridge")


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        run(argv[1], argv[2:])
    except CheckFailed as e:
        print(e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
