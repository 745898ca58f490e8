"""What the pods promise: restricted Pod Security, their own token-less ServiceAccounts,
nothing pointing at loopback, pinned images, probes on ports the processes listen on, every
Secret and key documented, the services wired to their databases and to Kafka as the
operators provide them, and the production shape (replicas, autoscaling, disruption budgets,
spreading, requests and limits)."""

import re
from urllib.parse import parse_qs, urlsplit

from rendered import SECRET_RE, fail, is_only_secret, ok

SERVICES = {"crm-service": "CRM", "erp-service": "ERP"}
PROCESSES = {**SERVICES, "sync-bridge": "BRIDGE"}
# Volume types the restricted Pod Security Standard allows.
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                      "persistentVolumeClaim", "projected", "secret"}


def check_reflection(r):
    for deployment, prefix in SERVICES.items():
        _, c = r.deployment_container(deployment)
        value = r.env(deployment, c).get(f"{prefix}__GRPC__REFLECTION")
        if value != "false":
            fail("reflection", f"{r.overlay} Deployment {deployment}: {prefix}__GRPC__REFLECTION is {value!r}, expected \"false\"")
    ok("reflection", r.overlay, 'CRM__GRPC__REFLECTION and ERP__GRPC__REFLECTION are "false"')


def check_ports(r):
    """Each service's Service exposes `grpc` and `sync`, and the pod listens on them on every
    interface (the processes' defaults bind 127.0.0.1, unreachable through a Service)."""
    sync_port = {}
    for service, prefix in SERVICES.items():
        ports = {p["name"]: p for p in r.find("Service", service)["spec"]["ports"]}
        _, c = r.deployment_container(service)
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

    _, c = r.deployment_container("sync-bridge")
    env = r.env("sync-bridge", c)
    for key, service in (("BRIDGE__CRM__URL", "crm-service"), ("BRIDGE__ERP__URL", "erp-service")):
        expected = f"https://{service}:{sync_port[service]}"
        if env.get(key) != expected:
            fail("bridge", f"{r.overlay} sync-bridge: {key} is {env.get(key)!r}, expected {expected!r} "
                 f"(the Service's sync port)")
    ok("bridge", r.overlay, "BRIDGE__CRM__URL and BRIDGE__ERP__URL are https:// to the Services' sync ports")


def check_probes(r):
    """Every probe names a port the process listens on with its configuration: the admin
    listener (*__HTTP__LISTEN), which answers /healthz and /readyz over HTTP and the same
    readiness as plaintext gRPC health (the kubelet's gRPC probe speaks no TLS, and the gRPC
    ports do). Readiness goes through gRPC health; it reflects the database (services) and
    the CRM, the ERP and the broker (bridge)."""
    count = 0
    for where, pod, c in r.containers():
        name = where.split(" ", 1)[1].split("/")[0]
        prefix = PROCESSES.get(name)
        if prefix is None:
            continue
        env = r.env(where, c)
        named = {p["name"]: p["containerPort"] for p in c.get("ports", []) if "name" in p}
        listening = {}
        for key, value in env.items():
            m = re.fullmatch(rf"{prefix}__([A-Z_]+)__LISTEN", key)
            if m and re.fullmatch(r"0\.0\.0\.0:\d+", value):
                listening[int(value.rsplit(":", 1)[1])] = m.group(1)
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = c.get(kind)
            if probe is None:
                fail("probes", f"{r.overlay} {where}: no {kind}")
            if "httpGet" in probe:
                port = probe["httpGet"]["port"]
                if probe["httpGet"].get("path") not in ("/healthz", "/readyz"):
                    fail("probes", f"{r.overlay} {where}: {kind} asks {probe['httpGet'].get('path')!r}; "
                         "the processes answer /healthz and /readyz")
            elif "grpc" in probe:
                port = probe["grpc"]["port"]
            else:
                fail("probes", f"{r.overlay} {where}: {kind} is neither httpGet nor grpc")
            number = named.get(port, port)
            if not isinstance(number, int):
                fail("probes", f"{r.overlay} {where}: {kind} port {port!r} is not a named container port")
            if listening.get(number) != "HTTP":
                fail("probes", f"{r.overlay} {where}: {kind} probes port {number}, but the process listens there "
                     f"on {listening.get(number) or 'nothing'} (listeners: {listening}); probes go to "
                     f"{prefix}__HTTP__LISTEN, the admin port (the gRPC ports speak TLS, which no probe does)")
            count += 1
        readiness = c["readinessProbe"]
        if "grpc" not in readiness or readiness["grpc"].get("service", "") != "":
            fail("probes", f"{r.overlay} {where}: readiness is {readiness!r}; it must be the gRPC health "
                 "check (service \"\") on the admin port")
    ok("probes", r.overlay, f"all {count} probes hit the admin port *__HTTP__LISTEN binds on 0.0.0.0; "
       "readiness through gRPC health, liveness and startup through /healthz")


def check_bridge_assignment(r):
    """`consumer.assignment = all` makes one bridge take every partition itself: two replicas
    would both apply every event. So `all` only with exactly one replica and no autoscaler."""
    bridge = r.find("Deployment", "sync-bridge")
    c = bridge["spec"]["template"]["spec"]["containers"][0]
    mode = r.env("Deployment sync-bridge/" + c["name"], c).get("BRIDGE__CONSUMER__ASSIGNMENT", "group")
    replicas = bridge["spec"].get("replicas", 1)
    scaled = any(o["kind"] == "HorizontalPodAutoscaler" and o["spec"]["scaleTargetRef"]["name"] == "sync-bridge"
                 for o in r.objects)
    if mode not in ("group", "all"):
        fail("bridge", f"{r.overlay} sync-bridge: BRIDGE__CONSUMER__ASSIGNMENT is {mode!r}")
    if mode == "all" and (replicas != 1 or scaled):
        fail("bridge", f"{r.overlay} sync-bridge: assignment all with {replicas} replicas"
             + (" and an autoscaler" if scaled else "") + ": every replica would apply every event")
    ok("bridge", r.overlay, f"the bridge runs {replicas} replica(s) in `{mode}` assignment"
       + (" (it takes every partition itself)" if mode == "all" else " (the group shares the partitions)"))


def rust_seconds(root, path, constant):
    """The value of `const <constant>: Duration = Duration::from_secs(N)` in a Rust file."""
    text = (root / path).read_text()
    m = re.search(rf"const {constant}: Duration = Duration::from_secs\((\d+)\)", text)
    if not m:
        fail("shutdown", f"{path}: no `{constant}: Duration = Duration::from_secs(N)` to read")
    return int(m.group(1))


def check_shutdown(r, root):
    """Each pod's stop fits its grace period: the preStop sleep, then *__SHUTDOWN_GRACE_MS
    (draining and flushing share it), the last phase's floor (shutdown::LAST_PHASE_FLOOR) and
    the runtime's bounded exit (runtime::EXIT_GRACE), all within terminationGracePeriodSeconds,
    after which the kubelet sends SIGKILL."""
    floor = rust_seconds(root, "common/src/shutdown.rs", "LAST_PHASE_FLOOR")
    exit_grace = rust_seconds(root, "common/src/runtime.rs", "EXIT_GRACE")
    for o in r.objects:
        if o["kind"] != "Deployment" or o["metadata"]["name"] not in PROCESSES:
            continue
        name = o["metadata"]["name"]
        prefix = PROCESSES[name]
        pod = o["spec"]["template"]["spec"]
        c = pod["containers"][0]
        env = r.env(f"Deployment {name}/{c['name']}", c)
        grace_ms = env.get(f"{prefix}__SHUTDOWN_GRACE_MS")
        if not grace_ms or not str(grace_ms).isdigit():
            fail("shutdown", f"{r.overlay} {name}: {prefix}__SHUTDOWN_GRACE_MS is {grace_ms!r}; set it, so the "
                 "sum below is the one the process runs with")
        pre_stop = c.get("lifecycle", {}).get("preStop", {})
        sleep = pre_stop.get("sleep", {}).get("seconds", 0)
        if not sleep:
            fail("shutdown", f"{r.overlay} {name}: no preStop sleep; endpoints would still send calls to a "
                 "pod that stopped accepting them")
        period = pod.get("terminationGracePeriodSeconds", 30)
        total = sleep + int(grace_ms) / 1000 + floor + exit_grace
        if total > period:
            fail("shutdown", f"{r.overlay} {name}: preStop {sleep} s + shutdown grace {int(grace_ms) / 1000:g} s + "
                 f"last-phase floor {floor} s + exit {exit_grace} s = {total:g} s, more than "
                 f"terminationGracePeriodSeconds {period}: the kubelet would SIGKILL it mid-flush")
    ok("shutdown", r.overlay, f"every pod's preStop sleep + *__SHUTDOWN_GRACE_MS + {floor} s + {exit_grace} s "
       "fits its terminationGracePeriodSeconds")


def check_pod_security(r, namespaces=("tandem", "kafka")):
    """The restricted Pod Security Standard on every pod template, and on the namespaces."""
    count = 0
    for name, _, pod in r.workloads():
        context = pod.get("securityContext", {})
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            if pod.get(key):
                fail("pod-security", f"{r.overlay} {name}: {key} is {pod.get(key)}")
        if context.get("runAsNonRoot") is not True:
            fail("pod-security", f"{r.overlay} {name}: pod securityContext.runAsNonRoot is not true")
        if context.get("runAsUser") == 0:
            fail("pod-security", f"{r.overlay} {name}: pod runs as user 0")
        if context.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            fail("pod-security", f"{r.overlay} {name}: pod securityContext.seccompProfile is "
                 f"{context.get('seccompProfile')!r}, expected {{type: RuntimeDefault}}")
        for volume in pod.get("volumes", []):
            kinds = set(volume) - {"name"}
            if not kinds <= RESTRICTED_VOLUMES:
                fail("pod-security", f"{r.overlay} {name}: volume {volume['name']} is {sorted(kinds)}; "
                     f"restricted allows {sorted(RESTRICTED_VOLUMES)} (no hostPath)")
        for c in pod.get("initContainers", []) + pod.get("containers", []):
            sc = c.get("securityContext", {})
            where = f"{r.overlay} {name}/{c['name']}"
            if sc.get("privileged"):
                fail("pod-security", f"{where}: privileged")
            if sc.get("allowPrivilegeEscalation") is not False:
                fail("pod-security", f"{where}: allowPrivilegeEscalation is not false")
            caps = sc.get("capabilities", {})
            if caps.get("drop") != ["ALL"] or set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
                fail("pod-security", f"{where}: capabilities are {caps}, expected drop [ALL] and nothing added")
            if sc.get("readOnlyRootFilesystem") is not True:
                fail("pod-security", f"{where}: readOnlyRootFilesystem is not true")
            if sc.get("runAsNonRoot") is False or sc.get("runAsUser") == 0:
                fail("pod-security", f"{where}: the container may run as root")
            if sc.get("seccompProfile", {}).get("type", "RuntimeDefault") != "RuntimeDefault":
                fail("pod-security", f"{where}: container seccompProfile is {sc['seccompProfile']}")
            if any("hostPort" in p for p in c.get("ports", [])):
                fail("pod-security", f"{where}: a container port sets hostPort")
            count += 1
    rendered = {o["metadata"]["name"]: o for o in r.of_kind("Namespace")}
    for wanted in namespaces:
        labels = rendered.get(wanted, {}).get("metadata", {}).get("labels", {})
        if labels.get("pod-security.kubernetes.io/enforce") != "restricted":
            fail("pod-security", f"{r.overlay}: namespace {wanted} does not enforce the restricted Pod Security "
                 f"Standard (labels {labels})")
    ok("pod-security", r.overlay, f"every pod template ({count} containers) meets restricted Pod Security "
       "(non-root, RuntimeDefault seccomp, no escalation, drop ALL, read-only root, no host namespaces or "
       "hostPath)" + (f"; namespaces {' and '.join(namespaces)} enforce restricted" if namespaces else ""))


def check_service_accounts(r):
    accounts = {(o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in r.of_kind("ServiceAccount")}
    owner = {}
    for o in r.of_kind("Deployment"):
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


LOOPBACK = re.compile(r"127\.\d+\.\d+\.\d+|localhost|\[::1\]|(?<![0-9a-fA-F:])::1(?![0-9a-fA-F:])", re.IGNORECASE)


def check_loopback(r):
    """No setting or argument points at loopback (it would mean this pod, not the service)."""
    for where, _, c in r.containers():
        for key, value in r.env(where, c).items():
            if LOOPBACK.search(SECRET_RE.sub("", value)):
                fail("loopback", f"{r.overlay} {where}: {key}={value!r} points at loopback")
        for field in ("command", "args"):
            for arg in c.get(field, []):
                if LOOPBACK.search(arg):
                    fail("loopback", f"{r.overlay} {where}: {field} {arg!r} points at loopback")
    for o in r.of_kind("ConfigMap"):
        for key, value in (o.get("data") or {}).items():
            if o["metadata"]["name"].startswith("tandem-config") and LOOPBACK.search(value):
                fail("loopback", f"{r.overlay} ConfigMap {o['metadata']['name']}: {key}={value!r} points at loopback")
    ok("loopback", r.overlay, "no env value (ConfigMaps resolved, $(VAR) expanded), command or arg names "
       "127.0.0.0/8, localhost or ::1")


def check_images(r):
    def pinned(image):
        last = image.split("/")[-1]  # a registry's host:port holds a colon too
        tag = last.split(":", 1)[1] if ":" in last else ""
        return "@sha256:" in image or tag not in ("", "latest")
    for where, _, c in r.containers():
        if not pinned(c.get("image", "")):
            fail("images", f"{r.overlay} {where}: image {c.get('image')!r} is not pinned (a tag other than latest, or a digest)")
    for o in r.of_kind("Cluster"):
        image = o["spec"].get("imageName")
        if image is None or not pinned(image):
            fail("images", f"{r.overlay} Cluster {o['metadata']['name']}: imageName {image!r} is not pinned")
    ok("images", r.overlay, "every container image and PostgreSQL imageName has a pinned tag or digest, none latest")


def mounted_files(r, where, pod, c, documented):
    """Every file the container's Secret mounts provide -> (Secret, key); checks each Secret and
    key is documented and that a CA Secret's private key is never mounted."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    files = {}
    for mount in c.get("volumeMounts", []):
        volume = volumes.get(mount["name"])
        if volume is None:
            fail("secrets", f"{r.overlay} {where}: volumeMount {mount['name']} has no volume")
        if "secret" in volume:
            sources = [{"name": volume["secret"]["secretName"], "items": volume["secret"].get("items")}]
        else:
            sources = [s["secret"] for s in volume.get("projected", {}).get("sources", []) if "secret" in s]
        for source in sources:
            keys = documented.keys(source["name"])
            if not keys:
                fail("secrets", f"{r.overlay} {where}: Secret {source['name']} is documented in neither "
                     "base/secret.example.yaml nor base/operator-secrets.example.yaml")
            items = source.get("items") or [{"key": k, "path": k} for k in sorted(keys)]
            for item in items:
                if item["key"] not in keys:
                    fail("secrets", f"{r.overlay} {where}: Secret {source['name']} has no documented key {item['key']}")
                if item["key"].endswith(".key") and "ca.crt" in keys and "tls.crt" not in keys:
                    fail("secrets", f"{r.overlay} {where}: mounts {item['key']} of {source['name']}, a CA's private "
                         "key; mount ca.crt only (items)")
                files[f"{mount['mountPath'].rstrip('/')}/{item['path']}"] = (source["name"], item["key"])
    return files


def check_secrets(r, documented):
    """Every Secret and key the pods and the operators' resources use is documented; every
    file a setting names (*_FILE, AUTH__KEYS, a URL's sslrootcert) is in a mounted Secret."""
    for where, pod, c in r.containers():
        files = mounted_files(r, where, pod, c, documented)
        for e in c.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref and ref["key"] not in documented.keys(ref["name"]):
                fail("secrets", f"{r.overlay} {where}: {e['name']} reads Secret {ref['name']} key {ref['key']}, "
                     "which neither secret.example.yaml nor operator-secrets.example.yaml documents")
        paths = {}
        for key, value in r.env(where, c).items():
            if (key.endswith("_FILE") or key.endswith("__AUTH__KEYS")) and value and not is_only_secret(value):
                paths[key] = value
            for path in re.findall(r"sslrootcert=([^&]+)", value):
                paths[f"{key} (sslrootcert)"] = path
        for key, path in paths.items():
            if path not in files:
                fail("secrets", f"{r.overlay} {where}: {key} names {path}, which no mounted Secret provides")
    # The operators' resources name Secrets too.
    refs = []
    for o in r.of_kind("Cluster"):
        for role in o["spec"].get("managed", {}).get("roles", []):
            if "passwordSecret" in role:
                refs.append((f"Cluster {o['metadata']['name']} role {role['name']}", role["passwordSecret"]["name"], "password"))
                secret = documented.secrets.get(role["passwordSecret"]["name"], {})
                if secret.get("type") != "kubernetes.io/basic-auth" or documented.value(secret["metadata"]["name"], "username") != role["name"]:
                    fail("secrets", f"{r.overlay} Cluster {o['metadata']['name']}: role {role['name']}'s passwordSecret "
                         f"{role['passwordSecret']['name']} must be documented as kubernetes.io/basic-auth with "
                         f"username {role['name']} (CloudNativePG requires both)")
    for o in r.of_kind("ObjectStore"):
        for field, ref in o["spec"]["configuration"].get("s3Credentials", {}).items():
            if isinstance(ref, dict):
                refs.append((f"ObjectStore {o['metadata']['name']} {field}", ref["name"], ref["key"]))
    for where, name, key in refs:
        if key not in documented.keys(name):
            fail("secrets", f"{r.overlay} {where}: Secret {name} key {key} is not documented in base/secret.example.yaml")
    ok("secrets", r.overlay, "every Secret and key the pods, Clusters and ObjectStores use is documented (by hand "
       "or operator-generated); every file a setting names is mounted; no CA private key is mounted")


def check_databases(r, documented):
    """Each service talks to its own CloudNativePG Cluster: the runtime role for serving and
    the owner for migrations, on the primary's Service, verify-full against the cluster's CA."""
    clusters = {o["metadata"]["name"]: o for o in r.of_kind("Cluster")}
    for service, prefix in SERVICES.items():
        db = service.split("-")[0]
        cluster = clusters.get(db)
        if cluster is None:
            fail("databases", f"{r.overlay}: no CloudNativePG Cluster {db} for {service}")
        spec = cluster["spec"]
        initdb = spec.get("bootstrap", {}).get("initdb", {})
        if initdb.get("database") != db or not initdb.get("owner"):
            fail("databases", f"{r.overlay} Cluster {db}: bootstrap.initdb must create database {db} with an owner")
        roles = [x for x in spec.get("managed", {}).get("roles", []) if x.get("ensure", "present") == "present"]
        if len(roles) != 1 or roles[0].get("superuser") or roles[0].get("createdb") or roles[0].get("createrole") \
                or not roles[0].get("login") or "passwordSecret" not in roles[0]:
            fail("databases", f"{r.overlay} Cluster {db}: expected one managed runtime role with login, a password "
                 "Secret, and no superuser, createdb or createrole")
        pod, c = r.deployment_container(service)
        env = r.env(service, c)
        files = mounted_files(r, service, pod, c, documented)
        for key, user_secret in ((f"{prefix}__DATABASE__URL", roles[0]["passwordSecret"]["name"]),
                                 (f"{prefix}__DATABASE__MIGRATION_URL", f"{db}-app")):
            url = env.get(key, "")
            # Secret placeholders hold '/' and spaces: parse with plain tokens in their place.
            parts = urlsplit(SECRET_RE.sub("secret", url))
            query = parse_qs(parts.query)
            secrets = set(SECRET_RE.findall(url))
            expected_host = f"{db}-rw.tandem.svc"
            if parts.scheme not in ("postgres", "postgresql") or parts.hostname != expected_host \
                    or parts.port != 5432 or parts.path != f"/{db}":
                fail("databases", f"{r.overlay} {service}: {key} is {url!r}; expected postgres://…@{expected_host}:5432/{db}")
            if secrets != {(user_secret, "username"), (user_secret, "password")}:
                fail("databases", f"{r.overlay} {service}: {key} takes its user and password from {sorted(secrets)}, "
                     f"expected Secret {user_secret} (username, password)")
            if query.get("sslmode") != ["verify-full"]:
                fail("databases", f"{r.overlay} {service}: {key} has sslmode {query.get('sslmode')}, expected verify-full")
            root = query.get("sslrootcert", [""])[0]
            if files.get(root) != (f"{db}-ca", "ca.crt"):
                fail("databases", f"{r.overlay} {service}: {key}'s sslrootcert {root!r} is {files.get(root)}, "
                     f"expected ca.crt of the Secret {db}-ca (the cluster's CA)")
    ok("databases", r.overlay, "crm-service and erp-service reach their own Cluster's primary "
       "(<db>-rw.tandem.svc) as the managed runtime role, migrate as the initdb owner (<db>-app), "
       "verify-full against <db>-ca")


def check_kafka_clients(r):
    for where, _, c in r.containers():
        env = r.env(where, c)
        for key in [k for k in env if k.endswith("__KAFKA__BROKERS")]:
            create = key.replace("__BROKERS", "__CREATE_TOPICS")
            if env.get(create) != "false":
                fail("kafka", f"{r.overlay} {where}: {create} is {env.get(create)!r}, expected \"false\"")
            host = env[key].split(",")[0].rsplit(":", 1)[0]
            kafkas = [o for o in r.of_kind("Kafka")]
            wanted = {f"{k['metadata']['name']}-kafka-bootstrap.{k['metadata'].get('namespace')}.svc" for k in kafkas}
            if host not in wanted:
                fail("kafka", f"{r.overlay} {where}: {key} is {env[key]!r}, not the bootstrap Service of the "
                     f"Kafka in the render ({sorted(wanted)})")
    ok("kafka", r.overlay, "every Kafka client runs with CREATE_TOPICS=false against the rendered cluster's bootstrap Service")


def check_kafka_prod(r):
    """In production every Kafka client uses TLS and SCRAM as its own KafkaUser, whose
    password Secret (written by the User Operator) is mounted, on the TLS listener's port."""
    kafka = r.of_kind("Kafka")[0]
    listeners = {l["port"]: l for l in kafka["spec"]["kafka"]["listeners"]}
    users = {o["metadata"]["name"]: o for o in r.of_kind("KafkaUser")}
    watched = kafka["spec"].get("entityOperator", {}).get("userOperator", {}).get("watchedNamespace")
    for deployment, prefix in PROCESSES.items():
        pod, c = r.deployment_container(deployment)
        env = r.env(deployment, c)
        wanted = {"SECURITY_PROTOCOL": "SASL_SSL", "SASL_MECHANISM": "SCRAM-SHA-512"}
        for key, value in wanted.items():
            if env.get(f"{prefix}__KAFKA__{key}") != value:
                fail("kafka", f"prod {deployment}: {prefix}__KAFKA__{key} is {env.get(f'{prefix}__KAFKA__{key}')!r}, expected {value!r}")
        port = int(env[f"{prefix}__KAFKA__BROKERS"].rsplit(":", 1)[1])
        listener = listeners.get(port, {})
        if not listener.get("tls") or listener.get("authentication", {}).get("type") != "scram-sha-512":
            fail("kafka", f"prod {deployment}: brokers port {port} is not a TLS listener with SCRAM-SHA-512 ({listener})")
        user = env.get(f"{prefix}__KAFKA__SASL_USERNAME")
        if user not in users or users[user]["metadata"].get("namespace") != watched:
            fail("kafka", f"prod {deployment}: SASL user {user!r} is not a KafkaUser in namespace {watched!r} "
                 "(the User Operator's watchedNamespace)")
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        files = {}
        for mount in c.get("volumeMounts", []):
            v = volumes[mount["name"]]
            sources = [{"name": v["secret"]["secretName"], "items": v["secret"].get("items")}] if "secret" in v else \
                [s["secret"] for s in v.get("projected", {}).get("sources", []) if "secret" in s]
            for s in sources:
                for item in s.get("items") or []:
                    files[f"{mount['mountPath'].rstrip('/')}/{item['path']}"] = (s["name"], item["key"])
        if files.get(env.get(f"{prefix}__KAFKA__SASL_PASSWORD_FILE")) != (user, "password"):
            fail("kafka", f"prod {deployment}: {prefix}__KAFKA__SASL_PASSWORD_FILE is not the `password` of the "
                 f"KafkaUser's Secret {user}")
        ca = f"{kafka['metadata']['name']}-cluster-ca-cert"
        if files.get(env.get(f"{prefix}__KAFKA__SSL_CA_FILE")) != (ca, "ca.crt"):
            fail("kafka", f"prod {deployment}: {prefix}__KAFKA__SSL_CA_FILE is not ca.crt of {ca}")
    ok("kafka", "prod", "the three processes speak SASL_SSL/SCRAM-SHA-512 to the TLS listener as their own "
       "KafkaUser, password from the User Operator's Secret, CA from the cluster CA Secret")


def check_production_shape(r):
    """Several replicas, autoscaling for the services, a PDB for every Deployment, spreading,
    and requests and limits on every container."""
    hpas = {o["spec"]["scaleTargetRef"]["name"]: o for o in r.of_kind("HorizontalPodAutoscaler")}
    pdbs = r.of_kind("PodDisruptionBudget")
    for o in r.of_kind("Deployment"):
        name = o["metadata"]["name"]
        labels = o["spec"]["template"]["metadata"]["labels"]
        if not any(all(labels.get(k) == v for k, v in p["spec"]["selector"].get("matchLabels", {}).items())
                   and p["metadata"].get("namespace") == o["metadata"].get("namespace") for p in pdbs):
            fail("production", f"{r.overlay} Deployment {name}: no PodDisruptionBudget selects its pods")
        rolling = o["spec"].get("strategy", {})
        if rolling.get("type") != "RollingUpdate" or rolling.get("rollingUpdate", {}).get("maxUnavailable") != 0:
            fail("production", f"{r.overlay} Deployment {name}: strategy {rolling}; expected RollingUpdate with "
                 "maxUnavailable 0 (a new pod ready before an old one stops)")
        if r.overlay != "prod":
            continue
        if name in SERVICES:
            hpa = hpas.get(name)
            if hpa is None or hpa["spec"].get("minReplicas", 1) < 2 or hpa["spec"]["maxReplicas"] <= hpa["spec"]["minReplicas"]:
                fail("production", f"prod Deployment {name}: needs an HPA with minReplicas >= 2 and room to grow")
            if "replicas" in o["spec"]:
                fail("production", f"prod Deployment {name}: sets replicas while an HPA scales it (apply would reset it)")
        elif o["spec"].get("replicas", 1) < 2:
            fail("production", f"prod Deployment {name}: {o['spec'].get('replicas', 1)} replica(s)")
        keys = {t["topologyKey"] for t in o["spec"]["template"]["spec"].get("topologySpreadConstraints", [])}
        if not {"topology.kubernetes.io/zone", "kubernetes.io/hostname"} <= keys:
            fail("production", f"prod Deployment {name}: no topology spread over zones and hosts ({sorted(keys)})")
    for where, _, c in r.containers():
        resources = c.get("resources", {})
        for part in ("requests", "limits"):
            if not {"cpu", "memory"} <= set(resources.get(part, {})):
                fail("production", f"{r.overlay} {where}: resources.{part} must set cpu and memory ({resources})")
    for o in r.of_kind("Cluster") + r.of_kind("KafkaNodePool"):
        resources = o["spec"].get("resources", {})
        if not resources.get("requests") or not resources.get("limits", {}).get("memory"):
            fail("production", f"{r.overlay} {o['kind']} {o['metadata']['name']}: needs requests and a memory limit")
    if r.overlay == "prod":
        for o in r.of_kind("Cluster"):
            if o["spec"]["instances"] < 3:
                fail("production", f"prod Cluster {o['metadata']['name']}: {o['spec']['instances']} instances, expected 3")
        for o in r.of_kind("KafkaNodePool"):
            if o["spec"]["replicas"] < 3:
                fail("production", f"prod KafkaNodePool {o['metadata']['name']}: {o['spec']['replicas']} nodes, expected 3")
    ok("production", r.overlay, "a PDB per Deployment, rolling updates with maxUnavailable 0, requests and limits (cpu, memory) on every container"
       + ("; services autoscaled (HPA, no fixed replicas), the bridge on several replicas, spread over zones "
          "and hosts, 3 PostgreSQL instances and 3 Kafka nodes" if r.overlay == "prod" else ""))


def check_backups(r):
    """Each database archives WAL to an ObjectStore in the render and has a ScheduledBackup."""
    stores = {o["metadata"]["name"] for o in r.of_kind("ObjectStore")}
    scheduled = {o["spec"]["cluster"]["name"]: o for o in r.of_kind("ScheduledBackup")}
    for o in r.of_kind("Cluster"):
        name = o["metadata"]["name"]
        archivers = [p for p in o["spec"].get("plugins", []) if p.get("isWALArchiver")]
        if len(archivers) != 1 or archivers[0]["parameters"].get("barmanObjectName") not in stores:
            fail("backups", f"{r.overlay} Cluster {name}: needs one WAL-archiving plugin naming an ObjectStore of the render")
        backup = scheduled.get(name)
        if backup is None or backup["spec"].get("method") != "plugin" \
                or backup["spec"].get("pluginConfiguration", {}).get("name") != archivers[0]["name"]:
            fail("backups", f"{r.overlay} Cluster {name}: needs a ScheduledBackup through the same plugin")
    ok("backups", r.overlay, "crm and erp archive WAL through the Barman Cloud plugin to an ObjectStore and take scheduled base backups")
