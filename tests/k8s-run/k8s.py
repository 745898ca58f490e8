"""The rendered manifests: objects, and what a kubelet would make of a Deployment's pod spec.

Only what the manifests use is resolved, and the rest is refused loudly: a pod spec field the
runner does not understand is an error, never silently ignored.
"""
import base64
import json
import subprocess
from pathlib import Path


class ManifestError(Exception):
    """A pod could not be created as the kubelet would refuse it (CreateContainerConfigError)."""


def render(k8s_dir: Path, work: Path) -> list:
    """`kubectl kustomize` of overlays/local (or of the directory itself when it has no
    overlays, as the first manifests had), as JSON objects (kubectl patch --local decodes any
    kind without a cluster, as tests/k8s/render.sh does)."""
    target = k8s_dir / "overlays" / "local"
    if not target.is_dir():
        target = k8s_dir
    yaml_out = work / "render.yaml"
    run = subprocess.run(["kubectl", "kustomize", str(target)], capture_output=True, text=True, timeout=60)
    if run.returncode != 0:
        raise ManifestError(f"kubectl kustomize {target} failed: {run.stderr.strip()}")
    yaml_out.write_text(run.stdout)
    return to_json(yaml_out), target


def to_json(path: Path) -> list:
    run = subprocess.run(
        ["kubectl", "patch", "--local", "--type", "merge", "-p", "{}", "-o", "json", "-f", str(path)],
        capture_output=True, text=True, timeout=60)
    if run.returncode != 0:
        raise ManifestError(f"{path} is not valid Kubernetes YAML: {run.stderr.strip()}")
    text, decoder, at, objects = run.stdout, json.JSONDecoder(), 0, []
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at == len(text):
            return objects
        obj, at = decoder.raw_decode(text, at)
        objects.extend(obj.get("items", []) if obj.get("kind") == "List" else [obj])


def ns_of(obj, default="default"):
    return obj.get("metadata", {}).get("namespace") or default


def name_of(obj):
    return obj["metadata"]["name"]


def secret_data(secret: dict) -> dict:
    """A Secret's keys as bytes (data is base64, stringData plain; stringData wins)."""
    out = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
    out.update({k: v.encode() for k, v in (secret.get("stringData") or {}).items()})
    return out


def configmap_data(cm: dict) -> dict:
    out = {k: v.encode() for k, v in (cm.get("data") or {}).items()}
    out.update({k: base64.b64decode(v) for k, v in (cm.get("binaryData") or {}).items()})
    return out


def selector_matches(selector: dict, labels: dict) -> bool:
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


class Store:
    """The API objects a kubelet can read: Secrets and ConfigMaps by namespace and name."""

    def __init__(self):
        self.secrets = {}     # (ns, name) -> {key: bytes}
        self.configmaps = {}  # (ns, name) -> {key: bytes}
        self.origin = {}      # (ns, name) -> who made it (for messages)

    def put_secret(self, ns, name, data: dict, origin: str):
        self.secrets[(ns, name)] = {k: (v.encode() if isinstance(v, str) else v) for k, v in data.items()}
        self.origin[(ns, name)] = origin


def _ref(store_map, ns, ref, kind, pod):
    name, key, optional = ref["name"], ref.get("key"), ref.get("optional", False)
    obj = store_map.get((ns, name))
    if obj is None:
        if optional:
            return None
        raise ManifestError(f"pod {pod}: {kind} \"{ns}/{name}\" not found (kubelet: CreateContainerConfigError)")
    if key is None:
        return obj
    if key not in obj:
        if optional:
            return None
        raise ManifestError(
            f"pod {pod}: couldn't find key {key} in {kind} {ns}/{name} (it has: {', '.join(sorted(obj)) or 'no keys'}) "
            "(kubelet: CreateContainerConfigError)")
    return obj[key]


def _expand(value: str, env: dict) -> str:
    """$(VAR) references to earlier env entries, as the kubelet expands them; $$ escapes."""
    out, i = [], 0
    while i < len(value):
        if value.startswith("$$", i):
            out.append("$")
            i += 2
        elif value.startswith("$(", i) and ")" in value[i:]:
            end = value.index(")", i)
            name = value[i + 2:end]
            out.append(env[name] if name in env else value[i:end + 1])
            i = end + 1
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


SUPPORTED_VOLUME_KINDS = {"secret", "configMap", "projected", "emptyDir"}


def resolve_container(pod_name: str, ns: str, pod_spec: dict, container: dict, store: Store):
    """env (in order, $(VAR) expanded), envFrom, and files per volume mount:
    [(mountPath, {relative path: (bytes, mode)}, readOnly, kind)]."""
    env = {}
    for src in container.get("envFrom") or []:
        prefix = src.get("prefix", "")
        if "configMapRef" in src:
            data = _ref(store.configmaps, ns, src["configMapRef"], "configmap", pod_name)
        elif "secretRef" in src:
            data = _ref(store.secrets, ns, src["secretRef"], "secret", pod_name)
        else:
            raise ManifestError(f"pod {pod_name}: envFrom {src} not understood")
        for k, v in (data or {}).items():
            env[prefix + k] = v.decode()
    for item in container.get("env") or []:
        name = item["name"]
        if "value" in item:
            env[name] = _expand(item["value"], env)
        elif "valueFrom" in item:
            vf = item["valueFrom"]
            if "configMapKeyRef" in vf:
                v = _ref(store.configmaps, ns, vf["configMapKeyRef"], "configmap", pod_name)
            elif "secretKeyRef" in vf:
                v = _ref(store.secrets, ns, vf["secretKeyRef"], "secret", pod_name)
            elif "fieldRef" in vf:
                v = {"metadata.name": pod_name, "metadata.namespace": ns}.get(vf["fieldRef"]["fieldPath"])
                if v is None:
                    raise ManifestError(f"pod {pod_name}: fieldRef {vf['fieldRef']} not emulated")
                v = v.encode()
            else:
                raise ManifestError(f"pod {pod_name}: env {name} valueFrom {vf} not emulated")
            if v is not None:
                env[name] = v.decode()
        else:
            env[name] = ""
    volumes = {v["name"]: v for v in pod_spec.get("volumes") or []}
    mounts = []
    for vm in container.get("volumeMounts") or []:
        vol = volumes.get(vm["name"])
        if vol is None:
            raise ManifestError(f"pod {pod_name}: volumeMount {vm['name']} names no volume")
        kind = next((k for k in vol if k != "name"), None)
        if kind not in SUPPORTED_VOLUME_KINDS:
            raise ManifestError(f"pod {pod_name}: volume {vol['name']} of kind {kind} not emulated")
        files = {} if kind == "emptyDir" else volume_files(pod_name, ns, vol, kind, store)
        if "subPath" in vm:
            sub = vm["subPath"]
            if sub not in files:
                raise ManifestError(f"pod {pod_name}: subPath {sub} not in volume {vol['name']}")
            files = {"": files[sub]}
        mounts.append((vm["mountPath"], files, vm.get("readOnly", False), kind))
    return env, mounts


def _project(pod, ns, src, kind, default_mode, store, files):
    store_map = store.secrets if kind == "secret" else store.configmaps
    name = src.get("secretName") or src.get("name")
    ref = {"name": name, "optional": src.get("optional", False)}
    data = _ref(store_map, ns, ref, kind, pod)
    if data is None:
        return
    mode = src.get("defaultMode", default_mode)
    if src.get("items"):
        for item in src["items"]:
            if item["key"] not in data:
                if src.get("optional"):
                    continue
                raise ManifestError(
                    f"pod {pod}: volume item key {item['key']} not in {kind} {ns}/{name} "
                    f"(it has: {', '.join(sorted(data))}) (kubelet: MountVolume.SetUp failed)")
            files[item["path"]] = (data[item["key"]], item.get("mode", mode))
    else:
        for key, value in data.items():
            files[key] = (value, mode)


def volume_files(pod, ns, vol, kind, store):
    files = {}
    if kind == "secret":
        _project(pod, ns, vol["secret"], "secret", 0o644, store, files)
    elif kind == "configMap":
        _project(pod, ns, vol["configMap"], "configmap", 0o644, store, files)
    elif kind == "projected":
        default = vol["projected"].get("defaultMode", 0o644)
        for src in vol["projected"].get("sources") or []:
            if "secret" in src:
                _project(pod, ns, dict(src["secret"], defaultMode=default), "secret", default, store, files)
            elif "configMap" in src:
                _project(pod, ns, dict(src["configMap"], defaultMode=default), "configmap", default, store, files)
            else:
                raise ManifestError(f"pod {pod}: projected source {list(src)} not emulated")
    return files


def named_port(container: dict, port):
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return p["containerPort"]
    raise ManifestError(f"container {container['name']}: probe port {port!r} is not one of its named ports")
