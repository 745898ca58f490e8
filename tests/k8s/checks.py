"""Offline checks of the rendered Kubernetes overlays (tests/k8s/render.sh renders them and
runs this). One line per check says what it proves; the first failure stops the run with a
message naming the object and the defect, and exit status 1.

    checks.py RENDER_DIR OVERLAY...     # RENDER_DIR holds OVERLAY.yaml for each overlay
"""

import os
import re
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
    schemas = schema.schemas()
    renders = [Render(overlay, Path(render_dir) / f"{overlay}.yaml") for overlay in overlays]
    examples = [o for name in ("secret.example.yaml", "operator-secrets.example.yaml", "certificates.example.yaml")
                for o in load_yaml(K8S / "base" / name)]
    schema.validate([o for o in examples if o["kind"] == "Secret"], "base/*.example.yaml", schemas)
    ok("schema", "base", "the documented Secrets are valid Kubernetes Secrets")
    check_certificates(examples)
    check_image_build(ROOT)
    check_tandemctl_pod(schemas, documented)
    check_recovery_examples(schemas, next(r for r in renders if r.overlay == "prod"))
    for r in renders:
        schema.check_schemas(r, schemas)
        if r.overlay == "prod":
            policy.check_reflection(r)
        policy.check_ports(r)
        policy.check_probes(r)
        policy.check_shutdown(r, ROOT)
        policy.check_bridge_assignment(r)
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
    for client in ("sync-bridge", "tandemctl"):
        if client not in certificates.get(client, {}).get("dnsNames", []):
            fail("certificates", f"certificates.example.yaml: {client}'s certificate does not name {client}")
    ok("certificates", "base", "the example server certificates name the Services' DNS names, the clients' name sync-bridge and tandemctl")


def check_tandemctl_pod(schemas, documented):
    """The operator's tandemctl pod (base/tandemctl.example.yaml) follows the Deployments' rules,
    and uses the ops Kafka user and a certificate of its own."""
    r = Render("tandemctl.example", K8S / "base" / "tandemctl.example.yaml")
    schema.validate(r.objects, r.overlay, schemas)
    policy.check_pod_security(r, namespaces=())
    policy.check_loopback(r)
    policy.check_images(r)
    policy.check_secrets(r, documented)
    pod = r.find("Pod", "tandemctl")
    if pod["metadata"].get("labels", {}).get("app.kubernetes.io/name") != "tandemctl":
        fail("tandemctl", "tandemctl.example.yaml: the pod lacks app.kubernetes.io/name=tandemctl (the network policies' label)")
    if pod["spec"].get("automountServiceAccountToken") is not False:
        fail("tandemctl", "tandemctl.example.yaml: automountServiceAccountToken is not false")
    container = pod["spec"]["containers"][0]
    env = r.env("tandemctl", container)
    if env.get("BRIDGE__KAFKA__SASL_USERNAME") != "tandem-ops":
        fail("tandemctl", "tandemctl.example.yaml: Kafka user is not tandem-ops")
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    if volumes["tls"]["secret"]["secretName"] != "tandemctl-tls":
        fail("tandemctl", "tandemctl.example.yaml: not its own certificate (Secret tandemctl-tls)")
    ok("tandemctl", "base", "the operator's tandemctl pod: schema-valid, restricted, labelled for the network "
       "policies, no token, Kafka user tandem-ops, certificate tandemctl-tls")


def check_recovery_examples(schemas, backup):
    """Each recovery example (examples/recovery/*.yaml) is a valid Cluster that re-creates a
    Cluster of the render under its own name, reads the archive the backup component writes
    (its ObjectStore, serverName = the cluster's name), and archives under a new serverName."""
    stores = {o["metadata"]["name"] for o in backup.objects if o["kind"] == "ObjectStore"}
    clusters = {o["metadata"]["name"]: o for o in backup.objects if o["kind"] == "Cluster"}
    examples = sorted((K8S / "examples" / "recovery").glob("*.yaml"))
    if not examples:
        fail("recovery", "no example in deploy/k8s/examples/recovery")
    for path in examples:
        r = Render(f"examples/recovery/{path.name}", path)
        schema.validate(r.objects, r.overlay, schemas)
        for cluster in (o for o in r.objects if o["kind"] == "Cluster"):
            name, spec = cluster["metadata"]["name"], cluster["spec"]
            where = f"{path.name}: Cluster {name}"
            if name not in clusters:
                fail("recovery", f"{where} re-creates no Cluster of the prod render ({sorted(clusters)})")
            source = spec.get("bootstrap", {}).get("recovery", {}).get("source")
            external = {e["name"]: e for e in spec.get("externalClusters", [])}
            if source not in external:
                fail("recovery", f"{where}: bootstrap.recovery.source {source!r} is no externalCluster")
            read = external[source].get("plugin", {}).get("parameters", {})
            if read.get("barmanObjectName") not in stores or read.get("serverName") != name:
                fail("recovery", f"{where}: reads {read}, not the archive components/backup writes "
                     f"(barmanObjectName one of {sorted(stores)}, serverName {name!r})")
            archive = next((p.get("parameters", {}) for p in spec.get("plugins", []) if p.get("isWALArchiver")), {})
            if archive.get("serverName") in (None, name):
                fail("recovery", f"{where}: archives under serverName {archive.get('serverName')!r}; a restored "
                     "cluster must archive under a new one, or it writes over the archive it came from")
            owner = clusters[name]["spec"]["bootstrap"]["initdb"]
            recovery = spec["bootstrap"]["recovery"]
            if (recovery.get("database"), recovery.get("owner")) != (owner.get("database"), owner.get("owner")):
                fail("recovery", f"{where}: database/owner {recovery.get('database')}/{recovery.get('owner')} "
                     f"differ from the Cluster's {owner.get('database')}/{owner.get('owner')}")
    ok("recovery", "examples", f"{len(examples)} recovery example(s): schema-valid, re-create a rendered Cluster "
       "from the backup component's archive, archive under a new serverName")


def check_image_build(root):
    """The image holds the three processes and tandemctl, runs as a numeric non-root user,
    and its build context leaves out build output and history."""
    containerfile = (root / "deploy" / "Containerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", containerfile, re.M)
    if not users or not re.fullmatch(r"[1-9][0-9]*(:[0-9]+)?", users[-1]):
        fail("image", f"deploy/Containerfile: the last USER is {users[-1:] or 'missing'}; expected a numeric non-root uid")
    for binary in ("crm-service", "erp-service", "sync-bridge", "tandemctl"):
        if f"target/release/{binary}" not in containerfile:
            fail("image", f"deploy/Containerfile: does not copy {binary} into the image")
    if re.search(r"^FROM\s+\S+:latest\b|^FROM\s+[^:@\s]+(\s|$)", containerfile, re.M):
        fail("image", "deploy/Containerfile: a base image is `latest` or untagged")
    ignore = (root / ".dockerignore").read_text().split() if (root / ".dockerignore").is_file() else []
    for wanted in ("target/", ".git/"):
        if wanted not in ignore:
            fail("image", f".dockerignore: does not leave out {wanted}")
    ok("image", "deploy/Containerfile", "crm-service, erp-service, sync-bridge and tandemctl in one image, numeric "
       f"non-root USER {users[-1]}, tagged base images; .dockerignore leaves out target/ and .git/")


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
