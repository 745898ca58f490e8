"""Stand-ins for what the operators and the site's administrator would create.

- CloudNativePG: per `Cluster`, a PostgreSQL 15 "pod" (its own network namespace) reachable as
  `<cluster>-rw|-ro|-r[.<ns>[.svc[.cluster.local]]]`, ssl=on with a server certificate for
  those names from a CA of the cluster's own, the database and owner of
  spec.bootstrap.initdb, spec.managed.roles with the passwords of their Secrets,
  postInitSQL / postInitApplicationSQL; and the Secrets CloudNativePG generates:
  `<cluster>-app` (username, user, password, host, port, dbname, pgpass, uri, jdbc-uri,
  fqdn-uri, fqdn-jdbc-uri) and `<cluster>-ca` (ca.crt, ca.key).
- Strimzi: per `Kafka`, tansu (one node) reachable as `<name>-kafka-bootstrap` (and
  `-kafka-brokers`) on the listener port the pods use; TLS listeners through stunnel with a
  certificate from the cluster CA; SCRAM-SHA-512 users from the `KafkaUser`s; every
  `KafkaTopic` of the Kafka's namespace labelled for it; the Secrets Strimzi writes:
  `<name>-cluster-ca-cert` (ca.crt) and one per KafkaUser (password, sasl.jaas.config).
- The administrator: every Secret documented in secret.example.yaml, with real values
  (certificates naming the Services, the development JWKS, random keys, URLs pointing at the
  stand-ins with their passwords).
"""
import os
import secrets as rnd
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit, quote

from k8s import ManifestError, name_of, ns_of, secret_data

PG_BIN = Path("/usr/lib/postgresql/15/bin")
REPO = Path(__file__).resolve().parents[2]


def sh(*args, timeout=60, **kw):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))}: {r.stderr.strip() or r.stdout.strip()}")
    return r.stdout


# -------------------------------------------------------------------- PKI (openssl)
class CA:
    def __init__(self, directory: Path, name: str):
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.crt, self.key = directory / "ca.crt", directory / "ca.key"
        sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
           "-keyout", self.key, "-out", self.crt, "-days", "2", "-subj", f"/CN={name}",
           "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def issue(self, stem: str, names: list, usage: str):
        """A leaf certificate (P-256, PKCS#8 key) for DNS names `names`; usage server|client."""
        key, csr, crt, ext = (self.dir / f"{stem}.{s}" for s in ("key", "csr", "crt", "ext"))
        san = ",".join(f"IP:{n}" if n.replace(".", "").isdigit() else f"DNS:{n}" for n in names)
        ext.write_text(f"basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                       f"extendedKeyUsage={'serverAuth' if usage == 'server' else 'clientAuth'}\n"
                       f"subjectAltName={san}\n")
        sh("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
           "-keyout", key, "-out", csr, "-subj", f"/CN={names[0]}")
        sh("openssl", "x509", "-req", "-in", csr, "-CA", self.crt, "-CAkey", self.key,
           "-set_serial", str(rnd.randbits(62)), "-days", "2", "-out", crt, "-extfile", ext)
        return crt, key


def svc_names(name, ns):
    return [name, f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.cluster.local"]


def password():
    return rnd.token_urlsafe(24)


# -------------------------------------------------------------------- PostgreSQL
class Postgres:
    """One PostgreSQL "pod" for a CloudNativePG Cluster (or, for manifests without one, for a
    database host their URLs name)."""

    def __init__(self, run, ns, name, service_names, ca: CA, database, owner, roles):
        self.run, self.ns, self.name = run, ns, name
        self.service_names, self.ca = service_names, ca
        self.database, self.owner = database, owner
        self.roles = roles  # name -> {"password":..., "login": bool, "superuser": bool, "in_roles": [...]}
        self.init_sql, self.init_app_sql = [], []
        self.dir = run.work / f"pg-{name}"
        self.proc = None

    def start(self):
        d = self.dir
        d.mkdir()
        os.chmod(d, 0o755)
        names = [n for s in self.service_names for n in svc_names(s, self.ns)]
        crt, key = self.ca.issue(f"pg-{self.name}", names, "server")
        for f in (crt, key):
            shutil.copy(f, d / f.name)
            shutil.chown(d / f.name, "postgres", "postgres")
        os.chmod(d / key.name, 0o600)
        data, sock = d / "data", d / "sock"
        for p in (data, sock):
            p.mkdir()
            shutil.chown(p, "postgres", "postgres")
        asp = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]
        sh(*asp, PG_BIN / "initdb", "-D", data, "-U", "postgres", "-E", "UTF8", "--auth-local=trust",
           "--auth-host=scram-sha-256", timeout=120)
        # CloudNativePG's pg_hba ends with `host all all all scram-sha-256` (TLS or not).
        (data / "pg_hba.conf").write_text("local all all trust\nhost all all 0.0.0.0/0 scram-sha-256\n")
        self.netns, self.ip = self.run.net.add_pod(self.ns)
        cmd = ["ip", "netns", "exec", self.netns, *asp, str(PG_BIN / "postgres"), "-D", str(data),
               "-c", "listen_addresses=*", "-c", "port=5432", "-c", f"unix_socket_directories={sock}",
               "-c", "ssl=on", "-c", f"ssl_cert_file={d / crt.name}", "-c", f"ssl_key_file={d / key.name}",
               "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "max_connections=200",
               "-c", "password_encryption=scram-sha-256"]
        self.proc = subprocess.Popen(cmd, stdout=open(d / "log", "ab"), stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.run.pids.append(self.proc.pid)
        deadline = time.time() + 60
        while not (sock / ".s.PGSQL.5432").exists():
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"PostgreSQL {self.name} did not start: {(d / 'log').read_text()[-800:]}")
            time.sleep(0.1)
        self.sock = sock
        while subprocess.run([str(PG_BIN / "pg_isready"), "-q", "-h", str(sock), "-U", "postgres"]).returncode != 0:
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"PostgreSQL {self.name} not accepting connections: {(d / 'log').read_text()[-800:]}")
            time.sleep(0.1)
        sql = []
        for role, r in self.roles.items():
            opts = ("LOGIN" if r.get("login", True) else "NOLOGIN") + (" SUPERUSER" if r.get("superuser") else "")
            pw = f" PASSWORD {lit(r['password'])}" if r.get("password") else ""
            sql.append(f"CREATE ROLE {ident(role)} {opts}{pw};")
        for role, r in self.roles.items():
            for member_of in r.get("in_roles") or []:
                sql.append(f"GRANT {ident(member_of)} TO {ident(role)};")
        sql.append(f"CREATE DATABASE {ident(self.database)} OWNER {ident(self.owner)};")
        sql += self.init_sql
        self.psql("postgres", sql)
        if self.init_app_sql:
            self.psql(self.database, self.init_app_sql)

    def psql(self, db, statements):
        """Each statement on its own (-c each: CREATE DATABASE cannot run in a transaction)."""
        args = [a for st in statements for a in ("-c", st)]
        sh("setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", PG_BIN / "psql", "-X", "-q",
           "-v", "ON_ERROR_STOP=1", "-h", self.sock, "-U", "postgres", "-d", db, *args)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def lit(s):
    return "'" + s.replace("'", "''") + "'"


def ident(s):
    return '"' + s.replace('"', '""') + '"'


# -------------------------------------------------------------------- Kafka (tansu)
class Broker:
    """tansu for a Strimzi Kafka (or, for manifests without one, at the address their
    ConfigMap names), on one listener: plaintext, or TLS through stunnel; SCRAM when the
    listener authenticates."""

    def __init__(self, run, ns, name, bootstrap, port, tls, scram, ca: CA):
        self.run, self.ns, self.name = run, ns, name
        self.bootstrap, self.port, self.tls, self.scram, self.ca = bootstrap, port, tls, scram, ca
        self.users = {}    # name -> password
        self.topics = []   # (name, partitions, {config})
        self.dir = run.work / f"kafka-{name}"
        self.procs = []

    def start(self):
        d = self.dir
        d.mkdir()
        self.netns, self.ip = self.run.net.add_pod(self.ns)
        inner = self.port + 10000 if self.tls else self.port
        host = f"{self.bootstrap}.{self.ns}.svc"
        advertised = f"tcp://{host}:{self.port}"
        listen = f"tcp://{'127.0.0.1' if self.tls else '0.0.0.0'}:{inner}"

        def launch(auth):
            cmd = ["ip", "netns", "exec", self.netns, "env", "-i", "PATH=/usr/bin:/bin", self.run.tansu, "broker",
                   "--listener-url", listen, "--advertised-listener-url", advertised,
                   "--storage-engine", "sqlite://tansu.db"] + (["--authentication"] if auth else [])
            p = subprocess.Popen(cmd, cwd=d, stdout=open(d / "tansu.log", "ab"), stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
            self.run.pids.append(p.pid)
            self.wait_port("127.0.0.1", inner, p)
            sh(sys.executable, str(REPO / "scripts/tansu_index.py"), str(d / "tansu.db"))
            return p

        p = launch(False)
        admin = f"tcp://127.0.0.1:{inner}"
        for topic, partitions, config in self.topics:
            args = ["topic", "create", "--broker", admin, "--partitions", str(partitions)]
            for k, v in config.items():
                args += ["--config", f"{k}={v}"]
            sh("ip", "netns", "exec", self.netns, self.run.tansu, *args, topic, cwd=d)
        for user, pw in self.users.items():
            sh("ip", "netns", "exec", self.netns, self.run.tansu, "user", "create", "--broker", admin,
               "--mechanism", "scram512", user, pw, cwd=d)
        if self.scram:
            p.terminate()
            p.wait(timeout=15)
            p = launch(True)
        self.procs.append(p)
        if self.tls:
            crt, key = self.ca.issue(f"kafka-{self.name}", svc_names(self.bootstrap, self.ns)
                                     + svc_names(f"{self.name}-kafka-brokers", self.ns), "server")
            conf = d / "stunnel.conf"
            conf.write_text(f"foreground = yes\npid =\ndebug = 4\noutput = {d / 'stunnel.log'}\n\n[kafka]\n"
                            f"accept = 0.0.0.0:{self.port}\nconnect = 127.0.0.1:{inner}\n"
                            f"cert = {crt}\nkey = {key}\nsslVersionMin = TLSv1.2\n")
            s = subprocess.Popen(["ip", "netns", "exec", self.netns, shutil.which("stunnel4") or "stunnel", conf],
                                 cwd=d, stdout=open(d / "stunnel.out", "ab"), stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
            self.run.pids.append(s.pid)
            self.procs.append(s)
            self.wait_port(self.ip, self.port, s)

    def wait_port(self, ip, port, proc):
        import socket
        from kubelet import in_netns
        deadline = time.time() + 30

        def try_connect():
            with socket.create_connection((ip, port), timeout=0.5):
                return True

        while True:
            try:
                in_netns(self.netns, try_connect)
                return
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"broker {self.name}: nothing on {ip}:{port}; see {self.dir}")
                time.sleep(0.1)

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()


# -------------------------------------------------------------------- planning
def plan_cnpg(run, objects):
    """Postgres stand-ins and their Secrets for every CloudNativePG Cluster."""
    out = []
    for c in [o for o in objects if o.get("kind") == "Cluster" and o["apiVersion"].startswith("postgresql.cnpg.io/")]:
        ns, name, spec = ns_of(c), name_of(c), c.get("spec") or {}
        init = (spec.get("bootstrap") or {}).get("initdb") or {}
        database, owner = init.get("database", "app"), init.get("owner") or init.get("database", "app")
        ca = CA(run.work / f"ca-cnpg-{name}", f"{name} CA")
        roles = {}
        owner_pw = password()
        if init.get("secret"):
            got = run.hand_secret_value(ns, init["secret"]["name"], "password")
            owner_pw = got or owner_pw
        roles[owner] = {"password": owner_pw, "login": True}
        for r in ((spec.get("managed") or {}).get("roles") or []):
            if r.get("ensure", "present") != "present":
                continue
            pw = None
            if r.get("passwordSecret"):
                pw = run.hand_secret_value(ns, r["passwordSecret"]["name"], "password", username=r["name"])
            roles[r["name"]] = {"password": pw, "login": r.get("login", False),
                                "superuser": r.get("superuser", False), "in_roles": r.get("inRoles") or []}
        pg = Postgres(run, ns, name, [f"{name}-rw", f"{name}-ro", f"{name}-r"], ca, database, owner, roles)
        pg.init_sql = list(init.get("postInitSQL") or [])
        pg.init_app_sql = list(init.get("postInitApplicationSQL") or [])
        for kind in ("postInitSQLRefs", "postInitApplicationSQLRefs"):
            if init.get(kind):
                raise ManifestError(f"Cluster {ns}/{name}: bootstrap.initdb.{kind} is not emulated")
        host = f"{name}-rw"
        fqdn = f"{host}.{ns}.svc.cluster.local"
        pw = quote(owner_pw, safe="")
        run.store.put_secret(ns, f"{name}-app", {
            "username": owner, "user": owner, "password": owner_pw, "host": host, "port": "5432",
            "dbname": database, "pgpass": f"{host}:5432:{database}:{owner}:{owner_pw}\n",
            "uri": f"postgresql://{owner}:{pw}@{host}.{ns}:5432/{database}",
            "jdbc-uri": f"jdbc:postgresql://{host}.{ns}:5432/{database}?password={pw}&user={owner}",
            "fqdn-uri": f"postgresql://{owner}:{pw}@{fqdn}:5432/{database}",
            "fqdn-jdbc-uri": f"jdbc:postgresql://{fqdn}:5432/{database}?password={pw}&user={owner}",
        }, "CloudNativePG (stand-in)")
        run.store.put_secret(ns, f"{name}-ca", {"ca.crt": ca.crt.read_bytes(), "ca.key": ca.key.read_bytes()},
                             "CloudNativePG (stand-in)")
        run.db_cas.append(ca)
        out.append(pg)
    return out


def plan_strimzi(run, objects, pods_brokers):
    """tansu stand-ins for every Strimzi Kafka: the listener the pods use."""
    out = []
    kafkas = [o for o in objects if o.get("kind") == "Kafka" and o["apiVersion"].startswith("kafka.strimzi.io/")]
    for k in kafkas:
        ns, name = ns_of(k), name_of(k)
        bootstrap = f"{name}-kafka-bootstrap"
        listeners = ((k.get("spec") or {}).get("kafka") or {}).get("listeners") or []
        used = sorted({int(p) for h, p in pods_brokers if h.split(".")[0] == bootstrap})
        chosen = [l for l in listeners if l["port"] in used]
        if not chosen:
            raise ManifestError(f"Kafka {ns}/{name}: the pods bootstrap from ports {used or 'none'} of {bootstrap}, "
                                f"but its listeners are {[l['port'] for l in listeners]}")
        if len(chosen) > 1:
            raise ManifestError(f"Kafka {ns}/{name}: the pods use listeners {[l['port'] for l in chosen]}; "
                                "the stand-in serves one listener per run (not emulated)")
        lst = chosen[0]
        auth = (lst.get("authentication") or {}).get("type")
        if auth not in (None, "scram-sha-512"):
            raise ManifestError(f"Kafka {ns}/{name}: listener authentication {auth} is not emulated")
        ca = CA(run.work / f"ca-strimzi-{name}", f"{name} cluster CA")
        b = Broker(run, ns, name, bootstrap, lst["port"], bool(lst.get("tls")), auth == "scram-sha-512", ca)
        run.store.put_secret(ns, f"{name}-cluster-ca-cert", {"ca.crt": ca.crt.read_bytes()}, "Strimzi (stand-in)")
        for u in [o for o in objects if o.get("kind") == "KafkaUser" and ns_of(o) == ns
                  and (o["metadata"].get("labels") or {}).get("strimzi.io/cluster") == name]:
            uauth = ((u.get("spec") or {}).get("authentication") or {}).get("type")
            if uauth != "scram-sha-512":
                raise ManifestError(f"KafkaUser {ns}/{name_of(u)}: authentication {uauth} is not emulated")
            pw = password()
            b.users[name_of(u)] = pw
            run.kafka_passwords[name_of(u)] = pw
            run.store.put_secret(ns, name_of(u), {
                "password": pw,
                "sasl.jaas.config": 'org.apache.kafka.common.security.scram.ScramLoginModule required '
                                    f'username="{name_of(u)}" password="{pw}";'}, "Strimzi (stand-in)")
        add_topics(run, objects, b, ns, name)
        run.kafka_cas.append(ca)
        out.append(b)
    return out


def add_topics(run, objects, broker, ns, cluster):
    """The topic operator: KafkaTopics of the Kafka's namespace labelled for it. Others are
    reported (a real topic operator ignores them)."""
    for t in [o for o in objects if o.get("kind") == "KafkaTopic"]:
        label = (t["metadata"].get("labels") or {}).get("strimzi.io/cluster")
        spec = t.get("spec") or {}
        topic = spec.get("topicName") or name_of(t)
        if ns_of(t) != ns or label != cluster:
            run.ignored_topics.append(f"{ns_of(t)}/{name_of(t)} (label strimzi.io/cluster={label}; "
                                      f"the Kafka cluster is {ns}/{cluster})")
            continue
        config = {k: v for k, v in (spec.get("config") or {}).items()}
        broker.topics.append((topic, spec.get("partitions", 1), config))
        run.topics.append(topic)
