"""Proves the checks can fail: plants one defect at a time in a copy of deploy/k8s, renders
it, and expects the named check to fail on it. A defect the checks let through fails this run.

    defects.py             # run by tests/k8s/render.sh after the checks pass
"""

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import checks
from rendered import CheckFailed

# (what, file under deploy/k8s (or, with a leading /, under the repository root), text,
#  its replacement (first occurrence), the check that must fail)
DEFECTS = [
    ("the image running as root", "/deploy/Containerfile", "USER 10001:10001", "USER root", "image"),
    ("target/ in the build context", "/.dockerignore", "\ntarget/\n", "\n", "image"),
    ("a topic added to the code but not declared", "/proto/src/events/mod.rs",
     'pub const DEAD_LETTER: &str = "tandem.dead-letter";',
     'pub const DEAD_LETTER: &str = "tandem.dead-letter";\n    pub const AUDIT: &str = "tandem.audit";', "topics"),
    ("a metric renamed in the code but not in the alerts", "/common/src/metrics_names.rs",
     '"tandem_database_up"', '"tandem_database_reachable"', "metrics"),
    ("an unknown field in a container", "base/crm.yaml",
     '          command: ["/usr/local/bin/crm-service"]\n',
     '          command: ["/usr/local/bin/crm-service"]\n          restartPolicyy: Always\n', "schema"),
    ("a string where Kubernetes wants an integer", "base/bridge.yaml",
     "terminationGracePeriodSeconds: 30", 'terminationGracePeriodSeconds: "30"', "schema"),
    ("an unknown field in the Kafka", "kafka/kafka.yaml", "    version: 3.9.0", "    versions: 3.9.0", "schema"),
    ("a string for a KafkaTopic's partitions", "kafka/topics.yaml", "partitions: 3\n", 'partitions: "3"\n', "schema"),
    ("a misspelt ACL operation", "kafka-users/users.yaml", "operations: [Write, Describe]",
     "operations: [Writes, Describe]", "schema"),
    ("a value outside a CloudNativePG enum", "postgres/clusters.yaml",
     "primaryUpdateStrategy: unsupervised", "primaryUpdateStrategy: automatic", "schema"),
    ("an unknown field in a managed role", "postgres/clusters.yaml", "        login: true", "        logon: true", "schema"),
    ("a bad ObjectStore retention", "components/backup/backup.yaml", 'retentionPolicy: "30d"',
     'retentionPolicy: "30 days"', "schema"),
    ("a bad PodMonitor interval", "monitoring/podmonitor.yaml", "interval: 15s", "interval: 15 seconds", "schema"),
    ("a writable root filesystem", "base/bridge.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false",
     "pod-security"),
    ("no seccomp profile", "base/crm.yaml", "seccompProfile: {type: RuntimeDefault}", "seccompProfile: {type: Unconfined}",
     "pod-security"),
    ("a namespace without restricted enforcement", "kafka/namespace.yaml",
     "pod-security.kubernetes.io/enforce: restricted", "pod-security.kubernetes.io/enforce: baseline", "pod-security"),
    ("a ServiceAccount token mounted", "base/erp.yaml", "automountServiceAccountToken: false",
     "automountServiceAccountToken: true", "serviceaccounts"),
    ("an address on loopback", "base/config.env", "OTLP_ENDPOINT=", "OTLP_ENDPOINT=http://localhost:4317", "loopback"),
    ("a pinned image replaced by latest", "overlays/prod/kustomization.yaml", 'newTag: "0.1.0"', "newTag: latest", "images"),
    ("readiness on the gRPC port (TLS: no probe speaks it)", "base/crm.yaml", "grpc: {port: 9101}",
     "grpc: {port: 50051}", "probes"),
    ("readiness through /readyz instead of gRPC health", "base/erp.yaml", "grpc: {port: 9102}",
     "httpGet: {path: /readyz, port: http}", "probes"),
    ("a restored cluster archiving over the archive it came from", "examples/recovery/crm-recovery.yaml",
     "serverName: crm-restore-1", "serverName: crm", "recovery"),
    ("a misspelt recovery target", "examples/recovery/crm-recovery.yaml", "targetTime:", "targetTimestamp:",
     "schema"),
    ("the bridge taking every partition on several replicas", "base/bridge.yaml",
     "{name: BRIDGE__CONSUMER__ASSIGNMENT, value: group}", "{name: BRIDGE__CONSUMER__ASSIGNMENT, value: all}",
     "bridge"),
    ("no preStop sleep", "base/bridge.yaml", "sleep: {seconds: 5}", "sleep: {seconds: 0}", "shutdown"),
    ("a shutdown grace that outlasts the pod's grace period", "base/crm.yaml",
     '{name: CRM__SHUTDOWN_GRACE_MS, value: "20000"}', '{name: CRM__SHUTDOWN_GRACE_MS, value: "25000"}',
     "shutdown"),
    ("an undocumented Secret key", "base/crm.yaml", "{name: crm-runtime, key: password}",
     "{name: crm-runtime, key: pass}", "secrets"),
    ("the database CA's private key mounted", "base/erp.yaml", "items: [{key: ca.crt, path: ca.crt}]",
     "items: [{key: ca.key, path: ca.crt}]", "secrets"),
    ("a database URL without verify-full", "base/crm.yaml", "sslmode=verify-full", "sslmode=require", "databases"),
    ("a topic of the code missing", "kafka/topics.yaml", "name: erp.stock\n", "name: erp.stocks\n", "topics"),
    ("a topic declared twice (and another missing)", "kafka/topics.yaml",
     "  name: integration.stock\n  labels: {strimzi.io/cluster: tandem-kafka}\nspec:\n",
     "  name: integration.stock\n  labels: {strimzi.io/cluster: tandem-kafka}\nspec:\n  topicName: integration.orders\n",
     "topics"),
    ("order commands compacted", "kafka/topics.yaml", 'config: {cleanup.policy: delete, retention.ms: "604800000"',
     'config: {cleanup.policy: compact, retention.ms: "604800000"', "topics"),
    ("the CRM's user allowed to write an ERP topic", "kafka-users/users.yaml", "name: crm.customers,",
     "name: erp.customers,", "kafka-users"),
    ("the bridge allowed to create topics", "kafka-users/users.yaml", "operations: [Read, Describe]",
     "operations: [Read, Describe, Create]", "kafka-users"),
    ("a scheduled backup removed", "components/backup/backup.yaml", "cluster: {name: erp}", "cluster: {name: crm}",
     "backups"),
    ("a dashboard query on a metric no binary exports", "monitoring/dashboard.json", "tandem_grpc_calls_shed_total",
     "tandem_grpc_calls_dropped_total", "metrics"),
    ("an alert threshold changed without its tests", "monitoring/rules.yaml", "          ) > 5\n", "          ) > 50\n",
     "alerts"),
    ("an HPA-scaled Deployment with fixed replicas", "overlays/prod/kustomization.yaml", '"(crm|erp)-service"',
     '"(crm)-service"', "production"),
    ("a rolling update that stops an old pod first", "base/bridge.yaml", "maxUnavailable: 0", "maxUnavailable: 1",
     "production"),
    ("the CRM allowed to reach the ERP's database", "base/networkpolicy.yaml", "matchLabels: {cnpg.io/cluster: crm}\n      ports",
     "matchLabels: {cnpg.io/cluster: erp}\n      ports", "egress"),
    ("a database's PostgreSQL port open to every namespace", "base/networkpolicy.yaml",
     "namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: cnpg-system}}", "namespaceSelector: {}", "ingress"),
    ("the sync port open to a frontend", "base/networkpolicy.yaml",
     "        - podSelector: {matchLabels: {app.kubernetes.io/name: tandemctl}}\n      ports: [{protocol: TCP, port: 50061}]",
     "        - podSelector: {matchLabels: {tandem.io/frontend: \"true\"}}\n      ports: [{protocol: TCP, port: 50061}]",
     "sync-ingress"),
]


# The files outside deploy/k8s that the checks read, for defects planted there.
ROOT_FILES = ("deploy/Containerfile", ".dockerignore", "proto/src/events", "common/src", "crm-service/src",
              "erp-service/src", "sync-bridge/src")


def copy_root(root, to):
    shutil.rmtree(to, ignore_errors=True)
    for part in ROOT_FILES:
        (to / part).parent.mkdir(parents=True, exist_ok=True)
        if (root / part).is_dir():
            shutil.copytree(root / part, to / part)
        else:
            shutil.copy(root / part, to / part)
    return to


def render(k8s, out):
    for overlay in ("local", "prod"):
        run = subprocess.run(["kubectl", "kustomize", str(k8s / "overlays" / overlay)], capture_output=True, text=True)
        if run.returncode != 0:
            return f"kustomize: {run.stderr.strip()}"
        (out / f"{overlay}.yaml").write_text(run.stdout)
    return None


def plant(index, defect, work, original, original_root):
    """A copy of the manifests (and of the root files) with one defect, rendered: (k8s, root,
    rendered directory, a kustomize error or None)."""
    what, file, text, replacement, _ = defect
    base = work / str(index)
    k8s, root, rendered = base / "k8s", original_root, base / "rendered"
    shutil.copytree(original, k8s)
    rendered.mkdir()
    if file.startswith("/"):
        root = copy_root(original_root, base / "root")
        path = root / file[1:]
    else:
        path = k8s / file
    source = path.read_text()
    if text not in source:
        return k8s, root, rendered, f"{file} no longer contains {text!r}; update the defect"
    path.write_text(source.replace(text, replacement, 1))
    return k8s, root, rendered, render(k8s, rendered)


def main():
    failures = 0
    original, original_root = checks.K8S, checks.ROOT
    with tempfile.TemporaryDirectory() as work, ThreadPoolExecutor(max_workers=4) as pool:
        work = Path(work)
        # Copies and renders run in parallel (kustomize is most of the time); checks one by one.
        planted = list(pool.map(lambda item: plant(*item, work, original, original_root), enumerate(DEFECTS)))
        for (what, file, _, _, check), (k8s, root, rendered, error) in zip(DEFECTS, planted):
            caught = None
            if error is None:
                checks.K8S, checks.ROOT = k8s, root
                try:
                    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
                        checks.run(rendered, ["local", "prod"])
                except CheckFailed as e:
                    caught = str(e)
            if caught and caught.startswith(f"FAIL [{check}]"):
                print(f"ok   [defects] {what} ({file}): caught by [{check}]")
                continue
            failures += 1
            outcome = ("caught by " + caught.split("]")[0] + "]") if caught else \
                "not caught" if error is None else f"not planted: {error}"
            print(f"FAIL [defects]: {what} ({file}) was {outcome}, expected [{check}] to fail", file=sys.stderr)
    checks.K8S, checks.ROOT = original, original_root
    if failures:
        return 1
    print(f"ok   [defects] the checks caught all {len(DEFECTS)} planted defects, each in the check meant for it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
