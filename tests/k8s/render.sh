#!/usr/bin/env bash
# Renders the Kubernetes overlays (deploy/k8s/overlays/{local,prod}) and checks what they
# promise: the security settings are wired in, the bridge reaches the services' internal
# ports, nothing points at loopback, images are pinned, each workload has its own token-less
# ServiceAccount, and the NetworkPolicies deny by default and allow only the documented
# connections. Needs kubectl (with its built-in kustomize) and python3 (standard library
# only); no cluster.
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

# 12-16. Service accounts and network policies. Ports are the pods' (a policy sees a connection
# after the Service has translated it); a rule without ports allows every port, a rule without
# peers every peer.

SYNC_CLIENTS = {"sync-bridge", "tandemctl"}
ANYONE = {"ipBlock": {"cidr": "0.0.0.0/0 (a rule without peers)"}}
# Who may connect to each named port of each pod; a port not listed stays closed.
INGRESS = {
    "crm-service": {"grpc": "frontends", "sync": "sync clients", "http": "monitoring"},
    "erp-service": {"grpc": "frontends", "sync": "sync clients", "http": "monitoring"},
    "sync-bridge": {"http": "monitoring"},
    "tandemctl": {},
}
# Where each pod may connect (what each name means: destinations() below).
EGRESS = {
    "crm-service": {"dns", "kafka", "database"},
    "erp-service": {"dns", "kafka", "database"},
    "sync-bridge": {"dns", "kafka", "crm-service sync", "erp-service sync"},
    "tandemctl": {"dns", "kafka", "crm-service sync", "erp-service sync"},
}


def selects(selector, labels):
    """Whether a label selector matches these labels (an empty selector matches everything)."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for e in selector.get("matchExpressions", []):
        key, op, values = e["key"], e["operator"], e.get("values", [])
        has, value = key in labels, labels.get(key)
        if (op == "In" and not (has and value in values)) or (op == "NotIn" and has and value in values) \
                or (op == "Exists" and not has) or (op == "DoesNotExist" and has):
            return False
    return True


def pinned(selector, key):
    """The values a selector allows for label `key`; None when it leaves the label free."""
    allowed = None
    if key in selector.get("matchLabels", {}):
        allowed = {selector["matchLabels"][key]}
    for e in selector.get("matchExpressions", []):
        if e["key"] == key and e["operator"] == "In":
            allowed = set(e["values"]) if allowed is None else allowed & set(e["values"])
    return allowed


def requires(selector, key):
    """Whether a selector matches only pods that carry label `key`."""
    return pinned(selector, key) is not None or any(
        e["key"] == key and e["operator"] == "Exists" for e in selector.get("matchExpressions", []))


def peer_namespace(peer, own):
    """The namespace of a peer's pods: `own` without a namespaceSelector, the one its selector
    pins by kubernetes.io/metadata.name, else "*" (any, or a set these files do not show)."""
    if "namespaceSelector" not in peer:
        return own
    names = pinned(peer["namespaceSelector"], "kubernetes.io/metadata.name")
    return next(iter(names)) if names and len(names) == 1 else "*"


def describe(peer, own):
    if "ipBlock" in peer:
        return f"addresses {peer['ipBlock'].get('cidr')}"
    return f"pods {peer.get('podSelector', {})} in namespace {peer_namespace(peer, own)}"


def rule_ports(rule, named):
    """The (protocol, port) pairs a rule allows, named ports resolved with `named`; None: all."""
    allowed = set()
    for p in rule.get("ports") or []:
        if "port" not in p:
            return None
        port = named.get(p["port"], p["port"])
        last = p.get("endPort", port) if isinstance(port, int) else port
        allowed.update((p.get("protocol", "TCP"), n) for n in
                       (range(port, last + 1) if isinstance(port, int) else [port]))
    return allowed or None


def subjects(r):
    """(name, namespace, pod labels, container ports by name) of every pod the policies are
    about: the Deployments', and an operator's tandemctl pod in namespace tandem."""
    for o in r.objects:
        if o["kind"] == "Deployment":
            template = o["spec"]["template"]
            named = {p["name"]: p["containerPort"] for c in template["spec"]["containers"]
                     for p in c.get("ports", []) if "name" in p}
            yield o["metadata"]["name"], o["metadata"].get("namespace"), template["metadata"].get("labels", {}), named
    yield "tandemctl", "tandem", {"app.kubernetes.io/name": "tandemctl"}, {}


def rules(r, namespace, labels, direction):
    """(policy name, rule) of every rule of the given direction that applies to such a pod."""
    for o in r.objects:
        if o["kind"] != "NetworkPolicy" or o["metadata"].get("namespace") != namespace:
            continue
        spec = o["spec"]
        types = spec.get("policyTypes") or ["Ingress"] + (["Egress"] if "egress" in spec else [])
        if direction in types and selects(spec.get("podSelector", {}), labels):
            for rule in spec.get(direction.lower()) or []:
                yield o["metadata"]["name"], rule


def ingress_class(peer, own):
    """Which caller a peer of an ingress rule stands for, or a description of it."""
    namespace, pods = peer_namespace(peer, own), peer.get("podSelector", {})
    if "ipBlock" in peer:
        return describe(peer, own)
    if namespace == "monitoring":
        return "monitoring"
    names = pinned(pods, "app.kubernetes.io/name")
    if namespace == own and names and names <= SYNC_CLIENTS:
        return "sync clients"
    if pinned(pods, "tandem.io/frontend") == {"true"}:
        return "frontends"
    return describe(peer, own)


def check_service_accounts(r):
    accounts = {(o["metadata"].get("namespace"), o["metadata"]["name"]): o
                for o in r.objects if o["kind"] == "ServiceAccount"}
    owner = {}
    for o in r.objects:
        if o["kind"] != "Deployment":
            continue
        name, namespace = o["metadata"]["name"], o["metadata"].get("namespace")
        pod = o["spec"]["template"]["spec"]
        account = pod.get("serviceAccountName") or pod.get("serviceAccount") or "default"
        if account == "default" or (namespace, account) not in accounts:
            fail("serviceaccounts", f"{r.overlay} Deployment {name}: serviceAccountName {account!r} "
                 f"is not a ServiceAccount of its own in the render")
        if account in owner:
            fail("serviceaccounts", f"{r.overlay} Deployments {owner[account]} and {name} share ServiceAccount {account}")
        owner[account] = name
        if accounts[(namespace, account)].get("automountServiceAccountToken") is not False:
            fail("serviceaccounts", f"{r.overlay} ServiceAccount {account}: automountServiceAccountToken is not false")
        if pod.get("automountServiceAccountToken") is not False:
            fail("serviceaccounts", f"{r.overlay} Deployment {name}: pod automountServiceAccountToken is not false")
    ok("serviceaccounts", r.overlay, "every Deployment runs as a ServiceAccount of its own, "
       "automountServiceAccountToken false on the ServiceAccount and on the pod")


def check_default_deny(r):
    for o in r.objects:
        spec = o.get("spec", {})
        if (o["kind"] == "NetworkPolicy" and o["metadata"].get("namespace") == "tandem"
                and not any(spec.get("podSelector", {}).values())
                and {"Ingress", "Egress"} <= set(spec.get("policyTypes", []))
                and not spec.get("ingress") and not spec.get("egress")):
            ok("default-deny", r.overlay, f"NetworkPolicy {o['metadata']['name']} selects every pod of "
               "namespace tandem for Ingress and Egress and allows nothing")
            return
    fail("default-deny", f"{r.overlay}: no NetworkPolicy in namespace tandem with an empty podSelector, "
         "policyTypes Ingress and Egress, and no rules")


def check_sync_ingress(r):
    pods = {name: (namespace, labels, named) for name, namespace, labels, named in subjects(r)}
    for service in ("crm-service", "erp-service"):
        namespace, labels, named = pods[service]
        sync = named["sync"]
        admitted = set()
        for policy, rule in rules(r, namespace, labels, "Ingress"):
            ports = rule_ports(rule, named)
            if ports is not None and ("TCP", sync) not in ports:
                continue
            peers = rule.get("from") or []
            if not peers:
                fail("sync-ingress", f"{r.overlay} NetworkPolicy {policy}: a rule opens {service}'s sync port {sync} to anyone")
            for peer in peers:
                if ingress_class(peer, namespace) != "sync clients":
                    fail("sync-ingress", f"{r.overlay} NetworkPolicy {policy}: a rule opens {service}'s sync port "
                         f"{sync} to {describe(peer, namespace)}; only the bridge's and tandemctl's pods may connect")
                admitted |= {c for c in SYNC_CLIENTS if selects(peer["podSelector"], pods[c][1])}
        if admitted != SYNC_CLIENTS:
            fail("sync-ingress", f"{r.overlay} {service}: no ingress rule lets {sorted(SYNC_CLIENTS - admitted)} "
                 f"reach the sync port {sync}")
    ok("sync-ingress", r.overlay, "the sync ports 50061/50062 take connections from the bridge's and "
       "tandemctl's pods in namespace tandem, and from no one else")


def check_ingress(r):
    for name, namespace, labels, named in subjects(r):
        expected = {("TCP", named[port]): (port, who) for port, who in INGRESS[name].items()}
        open_to = set()
        for policy, rule in rules(r, namespace, labels, "Ingress"):
            ports = rule_ports(rule, named)
            if ports is None:
                fail("ingress", f"{r.overlay} NetworkPolicy {policy}: a rule opens every port of {name}; name the ports")
            for port in sorted(ports, key=str):
                if port not in expected:
                    fail("ingress", f"{r.overlay} NetworkPolicy {policy}: a rule opens {name}'s port {port[1]}/{port[0]}, "
                         f"which should stay closed (open: {sorted(INGRESS[name].items())})")
                port_name, who = expected[port]
                for peer in rule.get("from") or [ANYONE]:
                    if ingress_class(peer, namespace) != who:
                        fail("ingress", f"{r.overlay} NetworkPolicy {policy}: a rule opens {name}'s {port_name} port "
                             f"{port[1]} to {describe(peer, namespace)}; only {who} may connect")
                open_to.add(port)
        if open_to != set(expected):
            fail("ingress", f"{r.overlay} {name}: no ingress rule opens {sorted(expected[p] for p in set(expected) - open_to)}")
    ok("ingress", r.overlay, "public ports only from frontends (tandem.io/frontend=true), metrics only from "
       "namespace monitoring, every other port closed, on every workload and tandemctl")


def destinations(r):
    """name -> (namespace, test on the peer's pod selector, the (protocol, port) pairs)."""
    named = {name: ports for name, _, _, ports in subjects(r)}
    anything = lambda pods: True
    found = {
        "dns": ("kube-system", anything, {("UDP", 53), ("TCP", 53)}),
        "kafka": ("kafka", anything, {("TCP", 9092), ("TCP", 9093)}),
        "database": ("tandem", lambda pods: requires(pods, "cnpg.io/cluster"), {("TCP", 5432)}),
    }
    for service in ("crm-service", "erp-service"):
        found[f"{service} sync"] = ("tandem", lambda pods, s=service: pinned(pods, "app.kubernetes.io/name") == {s},
                                    {("TCP", named[service]["sync"])})
    return found


def egress_class(peer, own, port, known):
    namespace = peer_namespace(peer, own)
    for what, (where, pods, ports) in known.items():
        if "ipBlock" not in peer and namespace == where and pods(peer.get("podSelector", {})) and port in ports:
            return what
    return None


def check_egress(r):
    known = destinations(r)
    for name, namespace, labels, named in subjects(r):
        reached = set()
        for policy, rule in rules(r, namespace, labels, "Egress"):
            ports = rule_ports(rule, {})
            peers = rule.get("to") or []
            if ports is None or not peers:
                fail("egress", f"{r.overlay} NetworkPolicy {policy}: an egress rule of {name} allows "
                     f"{'every port' if ports is None else 'every destination'}; name both")
            for peer in peers:
                for port in sorted(ports, key=str):
                    what = egress_class(peer, namespace, port, known)
                    if what not in EGRESS[name]:
                        fail("egress", f"{r.overlay} NetworkPolicy {policy}: {name} may connect to "
                             f"{describe(peer, namespace)} on {port[1]}/{port[0]}, which is not among its "
                             f"destinations {sorted(EGRESS[name])}")
                    reached.add((what, port))
        missing = {(what, port) for what in EGRESS[name] for port in known[what][2]} - reached
        if missing:
            fail("egress", f"{r.overlay} {name}: no egress rule lets it reach {sorted(missing)}")
    for where, _, c in r.containers():
        endpoint = next((v for k, v in r.env(where, c).items() if k.endswith("__TELEMETRY__OTLP_ENDPOINT")), "")
        if endpoint:
            fail("egress", f"{r.overlay} {where}: exports to {endpoint!r}, but no policy lets it out: add an "
                 "egress rule for the collector (deploy/k8s/README.md, Network policy) and to this check")
    ok("egress", r.overlay, "each workload (and tandemctl) may connect only to DNS, Kafka 9092/9093, and its "
       "database (services) or the sync ports (bridge, tandemctl); no OTLP endpoint is set")


for r in renders:
    check_service_accounts(r)
    check_default_deny(r)
    check_sync_ingress(r)
    check_ingress(r)
    check_egress(r)
PY
echo "all Kubernetes manifest checks passed"
