#!/usr/bin/env bash
# Renders the Kubernetes overlays (deploy/k8s/overlays/{local,prod}) and checks what they
# promise: the security settings are wired in, the bridge reaches the services' internal
# ports, nothing points at loopback, images are pinned. Needs kubectl (with its built-in
# kustomize) and python3 (standard library only); no cluster.
#
#   tests/k8s/render.sh [K8S_DIR]     # K8S_DIR defaults to deploy/k8s
#
# Prints one line per check saying what it proves; stops at the first failure with a message
# and a non-zero exit.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
k8s=${1:-$root/deploy/k8s}
overlays=(local prod)

for tool in kubectl python3; do
    command -v "$tool" >/dev/null || { echo "FAIL: $tool is not installed" >&2; exit 1; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# kustomize prints YAML only. `kubectl patch --local` with an empty merge patch decodes any
# kind (CRDs included) without a cluster and prints it unchanged as JSON, one object after
# another, so the checks below need no YAML parser.
to_json() {
    kubectl patch --local --type merge -p '{}' -o json -f "$1"
}

for overlay in "${overlays[@]}"; do
    dir=$k8s/overlays/$overlay
    if ! kubectl kustomize "$dir" >"$work/$overlay.yaml" 2>"$work/$overlay.err"; then
        echo "FAIL [render]: kubectl kustomize $dir failed:" >&2
        sed 's/^/    /' "$work/$overlay.err" >&2
        exit 1
    fi
    if ! to_json "$work/$overlay.yaml" >"$work/$overlay.json" 2>"$work/$overlay.err"; then
        echo "FAIL [render]: the output of overlays/$overlay is not valid Kubernetes YAML:" >&2
        sed 's/^/    /' "$work/$overlay.err" >&2
        exit 1
    fi
    echo "ok   [render] overlays/$overlay renders with kubectl kustomize"
done
for example in secret certificates; do
    file=$k8s/base/$example.example.yaml
    [[ -f $file ]] || { echo "FAIL [render]: $file is missing" >&2; exit 1; }
    to_json "$file" >"$work/$example.example.json"
done

TANDEM_ROOT=$root python3 - "$work" "${overlays[@]}" <<'PY'
import json
import re
import sys
from pathlib import Path

work = Path(sys.argv[1])
overlays = sys.argv[2:]


def load(path):
    """The objects of a stream of JSON documents, Lists flattened."""
    text, decoder, at, objects = path.read_text(), json.JSONDecoder(), 0, []
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at == len(text):
            return objects
        obj, at = decoder.raw_decode(text, at)
        objects.extend(obj.get("items", []) if obj.get("kind") == "List" else [obj])


def fail(check, message):
    print(f"FAIL [{check}]: {message}", file=sys.stderr)
    sys.exit(1)


def ok(check, overlay, proves):
    print(f"ok   [{check}] {overlay}: {proves}")


SECRET = object()  # an env value that comes from a Secret (not visible here)
examples = {o["metadata"]["name"]: o for o in load(work / "secret.example.json")}


def example_keys(name):
    secret = examples.get(name, {})
    return set(secret.get("stringData", {})) | set(secret.get("data", {}))


class Render:
    def __init__(self, overlay):
        self.overlay = overlay
        self.objects = load(work / f"{overlay}.json")

    def find(self, kind, name):
        for o in self.objects:
            if o["kind"] == kind and o["metadata"]["name"] == name:
                return o
        fail("render", f"{self.overlay} has no {kind} {name}")

    def workloads(self):
        """(name, pod spec) of every object with a pod template."""
        for o in self.objects:
            pod = o.get("spec", {}).get("template", {}).get("spec")
            if pod is not None:
                yield f"{o['kind']} {o['metadata']['name']}", pod

    def containers(self):
        for name, pod in self.workloads():
            for c in pod.get("initContainers", []) + pod.get("containers", []):
                yield f"{name}/{c['name']}", pod, c

    def configmap(self, where, name):
        for o in self.objects:
            if o["kind"] == "ConfigMap" and o["metadata"]["name"] == name:
                return o.get("data", {})
        fail("env", f"{self.overlay} {where}: ConfigMap {name} is not in the render")

    def env(self, where, container):
        """What the process sees: envFrom, then env, ConfigMap references resolved."""
        env = {}
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                data = self.configmap(where, source["configMapRef"]["name"])
                env.update({source.get("prefix", "") + k: v for k, v in data.items()})
        for e in container.get("env", []):
            value_from = e.get("valueFrom", {})
            if "configMapKeyRef" in value_from:
                ref = value_from["configMapKeyRef"]
                data = self.configmap(where, ref["name"])
                if ref["key"] not in data:
                    fail("env", f"{self.overlay} {where}: ConfigMap {ref['name']} has no key {ref['key']}")
                env[e["name"]] = data[ref["key"]]
            elif "secretKeyRef" in value_from:
                env[e["name"]] = SECRET
            else:
                env[e["name"]] = e.get("value", "")
        return env

    def container_of(self, deployment):
        pod = self.find("Deployment", deployment)["spec"]["template"]["spec"]
        return pod, pod["containers"][0]


renders = [Render(overlay) for overlay in overlays]
by_name = {r.overlay: r for r in renders}

# 1. In production the public ports serve no reflection.
if "prod" in by_name:
    r = by_name["prod"]
    for deployment, key in (("crm-service", "CRM__GRPC__REFLECTION"), ("erp-service", "ERP__GRPC__REFLECTION")):
        _, c = r.container_of(deployment)
        value = r.env(deployment, c).get(key)
        if value != "false":
            fail("reflection", f"prod Deployment {deployment}: {key} is {value!r}, expected \"false\"")
    ok("reflection", "prod", 'CRM__GRPC__REFLECTION and ERP__GRPC__REFLECTION are "false"')

for r in renders:
    # 2. Each service's Service exposes `grpc` and `sync`, and the pod listens on them on
    #    every interface (the processes' defaults bind 127.0.0.1, unreachable from a Service).
    sync_port = {}
    for service, prefix in (("crm-service", "CRM"), ("erp-service", "ERP")):
        ports = {p["name"]: p for p in r.find("Service", service)["spec"]["ports"]}
        _, c = r.container_of(service)
        env = r.env(service, c)
        container_ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        for name, section in (("grpc", "GRPC"), ("sync", "SYNC")):
            if name not in ports:
                fail("ports", f"{r.overlay} Service {service} has no port named {name!r} (has {sorted(ports)})")
            target = ports[name].get("targetPort", ports[name]["port"])
            number = container_ports.get(target, target)
            if not isinstance(number, int):
                fail("ports", f"{r.overlay} Service {service} port {name}: targetPort {target!r} is no container port")
            listen = env.get(f"{prefix}__{section}__LISTEN")
            if listen != f"0.0.0.0:{number}":
                fail("ports", f"{r.overlay} {service}: {prefix}__{section}__LISTEN is {listen!r}, "
                     f"but the Service's {name} port sends to container port {number}")
        sync_port[service] = ports["sync"]["port"]
    ok("ports", r.overlay, "crm-service and erp-service expose `grpc` and `sync`, and the pods listen on them on 0.0.0.0")

    # 3. The bridge calls both services on their internal (sync) ports, over TLS.
    _, c = r.container_of("sync-bridge")
    env = r.env("sync-bridge", c)
    for key, service in (("BRIDGE__CRM__URL", "crm-service"), ("BRIDGE__ERP__URL", "erp-service")):
        expected = f"https://{service}:{sync_port[service]}"
        if env.get(key) != expected:
            fail("bridge", f"{r.overlay} sync-bridge: {key} is {env.get(key)!r}, expected {expected!r} "
                 f"(the Service's sync port)")
    ok("bridge", r.overlay, "BRIDGE__CRM__URL and BRIDGE__ERP__URL are https:// to the Services' sync ports")

    # 4. Every pod runs with the runtime's default seccomp profile, as a non-root user.
    for name, pod in r.workloads():
        context = pod.get("securityContext", {})
        if context.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            fail("seccomp", f"{r.overlay} {name}: pod securityContext.seccompProfile is "
                 f"{context.get('seccompProfile')!r}, expected {{type: RuntimeDefault}}")
        if context.get("runAsNonRoot") is not True:
            fail("seccomp", f"{r.overlay} {name}: pod securityContext.runAsNonRoot is not true")
    ok("seccomp", r.overlay, "every pod has seccompProfile RuntimeDefault and runAsNonRoot")

    # 5. No setting points at loopback (it would mean this pod, not the service meant).
    loopback = re.compile(r"127\.0\.0\.1|localhost|\[::1\]", re.IGNORECASE)
    for where, _, c in r.containers():
        for key, value in r.env(where, c).items():
            if value is not SECRET and loopback.search(value):
                fail("loopback", f"{r.overlay} {where}: {key}={value!r} points at loopback")
    ok("loopback", r.overlay, "no env value (ConfigMap references resolved) names 127.0.0.1, localhost or ::1")

    # 6. Images are pinned.
    for where, _, c in r.containers():
        image = c.get("image", "")
        last = image.split("/")[-1]  # a registry's host:port holds a colon too
        tag = last.split(":", 1)[1] if ":" in last else ""
        if "@sha256:" not in image and tag in ("", "latest"):
            fail("images", f"{r.overlay} {where}: image {image!r} is not pinned (needs a tag other than latest, or a digest)")
    ok("images", r.overlay, "every image has a pinned tag or digest, none is latest")

    # 7. Every Secret the pods use, and every key, is documented in base/secret.example.yaml,
    #    and every file a *_FILE (or AUTH__KEYS) setting names is in a mounted volume.
    for where, pod, c in r.containers():
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        files = {}  # every file the mounts put in the container -> the Secret it comes from
        for mount in c.get("volumeMounts", []):
            volume = volumes.get(mount["name"])
            if volume is None:
                fail("secrets", f"{r.overlay} {where}: volumeMount {mount['name']} has no volume")
            if "secret" in volume:
                sources = [{"name": volume["secret"]["secretName"], "items": volume["secret"].get("items")}]
            else:
                sources = [s["secret"] for s in volume.get("projected", {}).get("sources", []) if "secret" in s]
            for source in sources:
                keys = example_keys(source["name"])
                if not keys:
                    fail("secrets", f"{r.overlay} {where}: Secret {source['name']} is not in base/secret.example.yaml")
                for item in source.get("items") or [{"key": k, "path": k} for k in keys]:
                    if item["key"] not in keys:
                        fail("secrets", f"{r.overlay} {where}: Secret {source['name']} key {item['key']} "
                             f"is not in base/secret.example.yaml")
                    files[f"{mount['mountPath'].rstrip('/')}/{item['path']}"] = source["name"]
        paths = {}  # setting -> a file it names
        for e in c.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                if ref["key"] not in example_keys(ref["name"]):
                    fail("secrets", f"{r.overlay} {where}: {e['name']} reads Secret {ref['name']} key {ref['key']}, "
                         f"which base/secret.example.yaml does not document")
                # A database URL's CA file, as the documented URL names it.
                example = examples[ref["name"]].get("stringData", {}).get(ref["key"], "")
                for path in re.findall(r"sslrootcert=([^&]+)", example):
                    paths[f"{e['name']} (sslrootcert in the example)"] = path
        for key, value in r.env(where, c).items():
            if (key.endswith("_FILE") or key.endswith("__AUTH__KEYS")) and value and value is not SECRET:
                paths[key] = value
        for key, path in paths.items():
            if path not in files:
                fail("secrets", f"{r.overlay} {where}: {key} names {path}, which no mounted Secret provides")
    ok("secrets", r.overlay, "every Secret and key used is in secret.example.yaml; every file a setting names is mounted")

    # 8. Topics are managed by the operator (Strimzi KafkaTopics) only.
    for where, _, c in r.containers():
        env = r.env(where, c)
        for key in [k for k in env if k.endswith("__KAFKA__BROKERS")]:
            create = key.replace("__BROKERS", "__CREATE_TOPICS")
            if env.get(create) != "false":
                fail("kafka", f"{r.overlay} {where}: {create} is {env.get(create)!r}, expected \"false\"")
    ok("kafka", r.overlay, "every Kafka client runs with CREATE_TOPICS=false")

# 9. In production every Kafka client uses TLS and SCRAM, with the password from a file.
if "prod" in by_name:
    r = by_name["prod"]
    for deployment, prefix in (("crm-service", "CRM"), ("erp-service", "ERP"), ("sync-bridge", "BRIDGE")):
        _, c = r.container_of(deployment)
        env = r.env(deployment, c)
        wanted = {"SECURITY_PROTOCOL": "SASL_SSL", "SASL_MECHANISM": "SCRAM-SHA-512"}
        for key, value in wanted.items():
            if env.get(f"{prefix}__KAFKA__{key}") != value:
                fail("kafka", f"prod {deployment}: {prefix}__KAFKA__{key} is {env.get(f'{prefix}__KAFKA__{key}')!r}, expected {value!r}")
        for key in ("SSL_CA_FILE", "SASL_USERNAME", "SASL_PASSWORD_FILE"):
            if not env.get(f"{prefix}__KAFKA__{key}"):
                fail("kafka", f"prod {deployment}: {prefix}__KAFKA__{key} is not set")
    ok("kafka", "prod", "the three processes speak SASL_SSL with SCRAM-SHA-512, CA and password from files")

# 10. The example certificates name what clients dial.
certificates = {o["metadata"]["name"]: o["spec"] for o in load(work / "certificates.example.json")}
for service in ("crm-service", "erp-service"):
    names = set(certificates.get(service, {}).get("dnsNames", []))
    for wanted in (service, f"{service}.tandem.svc"):
        if wanted not in names:
            fail("certificates", f"certificates.example.yaml: {service}'s certificate does not name {wanted}")
if "sync-bridge" not in certificates.get("sync-bridge", {}).get("dnsNames", []):
    fail("certificates", "certificates.example.yaml: the bridge's certificate does not name sync-bridge")
ok("certificates", "base", "the example server certificates name the Services' DNS names, the bridge's names sync-bridge")

# 11. Every topic the code uses is a KafkaTopic exactly once, in the Kafka cluster's namespace.
import os
events = Path(os.environ["TANDEM_ROOT"]) / "proto" / "src" / "events"
used = set()
for source in events.glob("*.rs"):
    text = source.read_text()
    for block in re.findall(r"pub mod topics \{(.*?)\n\}", text, re.S):
        used.update(re.findall(r'pub const [A-Z_]+: &str = "([^"]+)";', block))
if not used or "tandem.dead-letter" not in used:
    fail("topics", f"could not read the code's topic list from {events} (found {sorted(used)})")
for overlay in overlays:
    declared = {}
    for o in load(work / f"{overlay}.json"):
        if o.get("kind") == "KafkaTopic":
            name = o["metadata"]["name"]
            declared.setdefault(name, []).append(o["metadata"].get("namespace"))
            if o["metadata"].get("labels", {}).get("strimzi.io/cluster") != "tandem-kafka":
                fail("topics", f"{overlay}: KafkaTopic {name} is not labelled strimzi.io/cluster=tandem-kafka")
    missing = sorted(used - set(declared))
    if missing:
        fail("topics", f"{overlay}: no KafkaTopic for {missing}")
    extra = sorted(set(declared) - used)
    if extra:
        fail("topics", f"{overlay}: KafkaTopics the code never uses: {extra}")
    for name, namespaces in declared.items():
        if namespaces != ["kafka"]:
            fail("topics", f"{overlay}: KafkaTopic {name} is declared in namespaces {namespaces}, expected once in kafka")
    ok("topics", overlay, f"the {len(used)} topics the code uses are KafkaTopics, once each, in namespace kafka")
PY
echo "all Kubernetes manifest checks passed"
