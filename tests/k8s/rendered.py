"""The rendered overlays as the checks see them: objects, pod templates, and each container's
environment resolved as the kubelet would (ConfigMap values filled in, `$(NAME)` expanded,
Secret values replaced by a visible placeholder)."""

import re
import sys
from pathlib import Path

import yaml


class CheckFailed(Exception):
    """A check found a defect; the message says where and what."""


def fail(check, message):
    raise CheckFailed(f"FAIL [{check}]: {message}")


def ok(check, where, proves):
    print(f"ok   [{check}] {where}: {proves}")
    sys.stdout.flush()


# libyaml's parser when PyYAML has it (ten times faster), else the pure-Python one.
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(path):
    """The objects of a YAML stream (Lists flattened, empty documents dropped)."""
    objects = []
    for doc in yaml.load_all(Path(path).read_text(), Loader=LOADER):
        if doc is None:
            continue
        objects.extend(doc.get("items", []) if doc.get("kind") == "List" else [doc])
    return objects


def secret_placeholder(name, key):
    return f"«secret {name}/{key}»"


SECRET_RE = re.compile(r"«secret ([^/»]+)/([^»]+)»")


class Documented:
    """The Secrets and keys the repository documents: the ones an operator creates by hand
    (secret.example.yaml) and the ones the operators generate (operator-secrets.example.yaml)."""

    def __init__(self, k8s):
        self.secrets = {}
        for name in ("secret.example.yaml", "operator-secrets.example.yaml"):
            path = Path(k8s) / "base" / name
            if not path.is_file():
                fail("secrets", f"{path} is missing")
            for o in load_yaml(path):
                self.secrets[o["metadata"]["name"]] = o

    def keys(self, name):
        secret = self.secrets.get(name, {})
        return set(secret.get("stringData", {})) | set(secret.get("data", {}))

    def value(self, name, key):
        return str(self.secrets.get(name, {}).get("stringData", {}).get(key, ""))


class Render:
    def __init__(self, overlay, path):
        self.overlay = overlay
        self.objects = load_yaml(path)

    def of_kind(self, kind):
        return [o for o in self.objects if o["kind"] == kind]

    def find(self, kind, name, check="render"):
        for o in self.objects:
            if o["kind"] == kind and o["metadata"]["name"] == name:
                return o
        fail(check, f"{self.overlay} has no {kind} {name}")

    def workloads(self):
        """(description, object, pod spec) of every object with a pod template."""
        for o in self.objects:
            pod = o.get("spec") if o["kind"] == "Pod" else (o.get("spec") or {}).get("template", {}).get("spec")
            if pod is not None:
                yield f"{o['kind']} {o['metadata']['name']}", o, pod

    def containers(self):
        for name, o, pod in self.workloads():
            for c in pod.get("initContainers", []) + pod.get("containers", []):
                yield f"{name}/{c['name']}", pod, c

    def configmap(self, where, name, check="env"):
        for o in self.of_kind("ConfigMap"):
            if o["metadata"]["name"] == name:
                return o.get("data", {})
        fail(check, f"{self.overlay} {where}: ConfigMap {name} is not in the render")

    def env(self, where, container):
        """What the process sees: envFrom, then env in order, ConfigMap references resolved,
        Secret values as «secret name/key», `$(NAME)` of an earlier variable expanded
        (`$$` escapes), as Kubernetes does."""
        env = {}
        for source in container.get("envFrom", []):
            prefix = source.get("prefix", "")
            if "configMapRef" in source:
                data = self.configmap(where, source["configMapRef"]["name"])
                env.update({prefix + k: v for k, v in data.items()})
            elif "secretRef" in source:
                fail("env", f"{self.overlay} {where}: envFrom a whole Secret ({source['secretRef']['name']}); "
                     "name each key (secretKeyRef) so the checks can follow it")
        for e in container.get("env", []):
            value_from = e.get("valueFrom", {})
            if "configMapKeyRef" in value_from:
                ref = value_from["configMapKeyRef"]
                data = self.configmap(where, ref["name"])
                if ref["key"] not in data:
                    if ref.get("optional"):
                        continue
                    fail("env", f"{self.overlay} {where}: ConfigMap {ref['name']} has no key {ref['key']}")
                env[e["name"]] = data[ref["key"]]
            elif "secretKeyRef" in value_from:
                ref = value_from["secretKeyRef"]
                env[e["name"]] = secret_placeholder(ref["name"], ref["key"])
            elif value_from:
                env[e["name"]] = "«field»"
            else:
                env[e["name"]] = expand(e.get("value", ""), env)
        return env

    def deployment_container(self, deployment):
        pod = self.find("Deployment", deployment)["spec"]["template"]["spec"]
        return pod, pod["containers"][0]


def expand(value, env):
    """Kubernetes' `$(NAME)` expansion against the variables defined so far."""
    def one(match):
        if match.group(0).startswith("$$"):
            return match.group(0)[1:]
        return env.get(match.group(1), match.group(0))
    return re.sub(r"\$\$\([A-Za-z_][A-Za-z0-9_]*\)|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", one, value)


def is_only_secret(value):
    return SECRET_RE.fullmatch(value) is not None


# Every topic the code uses, read from the Rust sources (proto/src/events).
def code_topics(root):
    events = Path(root) / "proto" / "src" / "events"
    consts = {}
    for source in sorted(events.glob("*.rs")):
        text = source.read_text()
        for block in re.findall(r"pub mod topics \{(.*?)\n\}", text, re.S):
            for const, name in re.findall(r'pub const ([A-Z_]+): &str = "([^"]+)";', block):
                consts[const] = (source.stem, name)
    by_source = {}
    for const, (source, name) in consts.items():
        by_source.setdefault(source, set()).add(name)
    mod = (events / "mod.rs").read_text()
    change = re.search(r"pub const CHANGE_EVENTS: &\[&str\] = &\[(.*?)\];", mod, re.S)
    dead = consts.get("DEAD_LETTER", (None, None))[1]
    dead_state = consts.get("DEAD_LETTER_STATE", (None, None))[1]
    if not change or not dead or not dead_state or not by_source.get("crm") or not by_source.get("erp"):
        fail("topics", f"could not read the code's topic lists from {events}")
    change_events = {consts[c][1] for c in re.findall(r"[A-Z_]+", change.group(1))}
    return {
        "all": {name for _, name in consts.values()},
        "crm": by_source["crm"],
        "erp": by_source["erp"],
        "integration": by_source.get("integration", set()),
        "change_events": change_events,
        "dead_letter": dead,
        "dead_letter_state": dead_state,
    }
