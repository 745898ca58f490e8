"""The NetworkPolicies of namespace tandem deny by default and allow exactly the documented
connections (deploy/k8s/README.md, "Network policy"). Ports are the pods' (a policy sees a
connection after the Service has translated it); a rule without ports allows every port, a
rule without peers every peer."""

from rendered import fail, ok

SYNC_CLIENTS = {"sync-bridge", "tandemctl"}
ANYONE = {"ipBlock": {"cidr": "0.0.0.0/0 (a rule without peers)"}}
# Who may connect to each named port of each pod; a port not listed stays closed.
INGRESS = {
    "crm-service": {"grpc": {"frontends"}, "sync": {"sync clients"}, "http": {"monitoring"}},
    "erp-service": {"grpc": {"frontends"}, "sync": {"sync clients"}, "http": {"monitoring"}},
    "sync-bridge": {"http": {"monitoring"}},
    "tandemctl": {},
    "crm-db": {"postgres": {"crm-service", "crm-db", "cnpg operator"}, "status": {"cnpg operator"}},
    "erp-db": {"postgres": {"erp-service", "erp-db", "cnpg operator"}, "status": {"cnpg operator"}},
}
# Where each pod may connect (what each name means: destinations() below). Destinations in
# OPTIONAL need not be reached (the object store only where backups are rendered).
EGRESS = {
    "crm-service": {"dns", "kafka", "crm-db"},
    "erp-service": {"dns", "kafka", "erp-db"},
    "sync-bridge": {"dns", "kafka", "crm-service sync", "erp-service sync"},
    "tandemctl": {"dns", "kafka", "crm-service sync", "erp-service sync"},
    "crm-db": {"dns", "crm-db", "apiserver", "object store"},
    "erp-db": {"dns", "erp-db", "apiserver", "object store"},
}
# The ports of a CloudNativePG instance's pod.
DB_PORTS = {"postgres": 5432, "status": 8000}


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
    about: the Deployments', an operator's tandemctl pod, and the databases' instances."""
    for o in r.of_kind("Deployment"):
        template = o["spec"]["template"]
        named = {p["name"]: p["containerPort"] for c in template["spec"]["containers"]
                 for p in c.get("ports", []) if "name" in p}
        yield o["metadata"]["name"], o["metadata"].get("namespace"), template["metadata"].get("labels", {}), named
    yield "tandemctl", "tandem", {"app.kubernetes.io/name": "tandemctl"}, {}
    for o in r.of_kind("Cluster"):
        name = o["metadata"]["name"]
        yield f"{name}-db", o["metadata"].get("namespace"), {"cnpg.io/cluster": name, "cnpg.io/podRole": "instance"}, DB_PORTS


def rules(r, namespace, labels, direction):
    """(policy name, rule) of every rule of the given direction that applies to such a pod."""
    for o in r.of_kind("NetworkPolicy"):
        if o["metadata"].get("namespace") != namespace:
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
    if namespace == "monitoring" and not pods:
        return "monitoring"
    names = pinned(pods, "app.kubernetes.io/name")
    if namespace == "cnpg-system" and names == {"cloudnative-pg"}:
        return "cnpg operator"
    if namespace == own and names and names <= SYNC_CLIENTS:
        return "sync clients"
    if namespace == own and names and len(names) == 1 and next(iter(names)) in INGRESS:
        return next(iter(names))
    clusters = pinned(pods, "cnpg.io/cluster")
    if namespace == own and clusters and len(clusters) == 1:
        return f"{next(iter(clusters))}-db"
    if pinned(pods, "tandem.io/frontend") == {"true"}:
        return "frontends"
    return describe(peer, own)


def check_default_deny(r):
    for o in r.of_kind("NetworkPolicy"):
        spec = o.get("spec", {})
        if (o["metadata"].get("namespace") == "tandem" and not any(spec.get("podSelector", {}).values())
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
        admitted = {port: set() for port in expected}
        for policy, rule in rules(r, namespace, labels, "Ingress"):
            ports = rule_ports(rule, named)
            if ports is None:
                fail("ingress", f"{r.overlay} NetworkPolicy {policy}: a rule opens every port of {name}; name the ports")
            for port in sorted(ports, key=str):
                if port not in expected:
                    fail("ingress", f"{r.overlay} NetworkPolicy {policy}: a rule opens {name}'s port {port[1]}/{port[0]}, "
                         f"which should stay closed (open: {sorted((k, sorted(v)) for k, v in INGRESS[name].items())})")
                port_name, who = expected[port]
                for peer in rule.get("from") or [ANYONE]:
                    caller = ingress_class(peer, namespace)
                    if caller not in who:
                        fail("ingress", f"{r.overlay} NetworkPolicy {policy}: a rule opens {name}'s {port_name} port "
                             f"{port[1]} to {describe(peer, namespace)}; only {sorted(who)} may connect")
                    admitted[port].add(caller)
        for port, (port_name, who) in expected.items():
            if admitted[port] != who:
                fail("ingress", f"{r.overlay} {name}: no ingress rule lets {sorted(who - admitted[port])} reach its "
                     f"{port_name} port {port[1]}")
    ok("ingress", r.overlay, "public ports only from frontends (tandem.io/frontend=true), metrics only from "
       "namespace monitoring, each database only from its service, its own instances and the operator "
       "(status 8000), every other port closed")


def destinations(r):
    """name -> (namespace or None for an address block, test on the peer, the (protocol, port) pairs)."""
    named = {name: ports for name, _, _, ports in subjects(r)}
    anything = lambda pods: True
    found = {
        "dns": ("kube-system", lambda pods: pinned(pods, "k8s-app") == {"kube-dns"}, {("UDP", 53), ("TCP", 53)}),
        "kafka": ("kafka", lambda pods: pinned(pods, "strimzi.io/cluster") == {"tandem-kafka"},
                  {("TCP", 9092), ("TCP", 9093)}),
        "apiserver": (None, anything, {("TCP", 443), ("TCP", 6443)}),
        "object store": (None, anything, {("TCP", 443)}),
    }
    for o in r.of_kind("Cluster"):
        cluster = o["metadata"]["name"]
        found[f"{cluster}-db"] = ("tandem", lambda pods, c=cluster: pinned(pods, "cnpg.io/cluster") == {c},
                                  {("TCP", 5432)})
    for service in ("crm-service", "erp-service"):
        found[f"{service} sync"] = ("tandem", lambda pods, s=service: pinned(pods, "app.kubernetes.io/name") == {s},
                                    {("TCP", named[service]["sync"])})
    return found


def egress_classes(peer, own, port, known):
    """Every destination this peer and port stand for."""
    if "ipBlock" in peer:
        return {what for what, (where, _, ports) in known.items() if where is None and port in ports}
    namespace = peer_namespace(peer, own)
    return {what for what, (where, pods, ports) in known.items()
            if where == namespace and pods(peer.get("podSelector", {})) and port in ports}


def check_egress(r):
    known = destinations(r)
    backups = bool(r.of_kind("ObjectStore"))
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
                    what = egress_classes(peer, namespace, port, known) & EGRESS[name]
                    if not what:
                        fail("egress", f"{r.overlay} NetworkPolicy {policy}: {name} may connect to "
                             f"{describe(peer, namespace)} on {port[1]}/{port[0]}, which is not among its "
                             f"destinations {sorted(EGRESS[name])}")
                    reached |= {(w, port) for w in what}
        wanted = EGRESS[name] - (set() if backups else {"object store"})
        missing = {(what, port) for what in wanted for port in known[what][2]} - reached
        if missing:
            fail("egress", f"{r.overlay} {name}: no egress rule lets it reach {sorted(missing)}")
    for where, _, c in r.containers():
        endpoint = next((v for k, v in r.env(where, c).items() if k.endswith("__TELEMETRY__OTLP_ENDPOINT")), "")
        if endpoint:
            fail("egress", f"{r.overlay} {where}: exports to {endpoint!r}, but no policy lets it out: add an "
                 "egress rule for the collector (deploy/k8s/README.md, Network policy) and to this check")
    ok("egress", r.overlay, "each workload (and tandemctl) may connect only to DNS, Kafka 9092/9093, and its own "
       "database (services) or the sync ports (bridge, tandemctl); each database only to DNS, its own instances, "
       "the API server" + (" and the object store" if backups else "") + "; no OTLP endpoint is set")


def check_network(r):
    check_default_deny(r)
    check_sync_ingress(r)
    check_ingress(r)
    check_egress(r)
