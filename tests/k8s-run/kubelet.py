"""A pod as a kubelet runs it, for one container: its files written as the volumes project
them, a process started in the pod's network namespace and a mount namespace of its own
(`unshare --mount`) where every volume is bind-mounted at its mountPath exactly as written,
the image's binaries at their /usr/local/bin paths, the root filesystem read-only when the
securityContext says so, as the pod's user and groups (fsGroup as a supplementary group, files
group-owned by it), capabilities dropped and no_new_privs; then its probes with their
periods and thresholds, and termination: out of the Service endpoints, preStop, SIGTERM,
terminationGracePeriodSeconds, SIGKILL.
"""
import ctypes
import os
import shlex
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

from k8s import ManifestError, named_port

IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
IMAGE_BINARIES = ["crm-service", "erp-service", "sync-bridge", "tandemctl"]
# Ports of the other components: a pod connecting to one of them on its own loopback is a pod
# without that peer's address (it fell back to a built-in localhost default).
TRAP_PORTS = [50051, 50052, 50053, 50061, 50062, 9092, 9093, 5432]

_libc = ctypes.CDLL("libc.so.6", use_errno=True)
CLONE_NEWNET = 0x40000000


def in_netns(netns: str, fn):
    """Runs fn() on a thread that has entered network namespace `netns` (sockets made there
    stay there)."""
    result = {}

    def body():
        fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns")
        finally:
            os.close(fd)
        try:
            result["value"] = fn()
        except Exception as e:  # noqa: BLE001
            result["error"] = e

    t = threading.Thread(target=body)
    t.start()
    t.join()
    if "error" in result:
        raise result["error"]
    return result.get("value")


class LoopbackTrap:
    """Listeners on the pod's 127.0.0.1 for the other components' ports: records who dialled."""

    def __init__(self, netns, own_ports, hits: list, pod_name):
        self.socks = []
        ports = [p for p in TRAP_PORTS if p not in own_ports]

        def make():
            out = []
            for p in ports:
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    s.close()
                    continue
                s.listen(16)
                out.append((p, s))
            return out

        self.socks = in_netns(netns, make)
        for port, s in self.socks:
            threading.Thread(target=self._accept, args=(s, port, hits, pod_name), daemon=True).start()

    @staticmethod
    def _accept(s, port, hits, pod_name):
        while True:
            try:
                conn, _ = s.accept()
            except OSError:
                return
            hits.append((pod_name, port, time.time()))
            conn.close()

    def close(self):
        for _, s in self.socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def grpc_health(ip, port, timeout):
    """The kubelet's gRPC probe: plaintext grpc.health.v1.Health/Check, SERVING or fail."""
    import grpc
    channel = grpc.insecure_channel(f"{ip}:{port}")
    try:
        call = channel.unary_unary("/grpc.health.v1.Health/Check",
                                   request_serializer=lambda b: b, response_deserializer=lambda b: b)
        reply = call(b"", timeout=timeout)
        return reply == b"\x08\x01", f"status bytes {reply!r}"
    except grpc.RpcError as e:
        return False, f"{e.code().name}: {e.details()}"
    finally:
        channel.close()


class Pod:
    def __init__(self, run, name, ns, labels, pod_spec, container, env, mounts, events):
        self.run, self.name, self.ns, self.labels = run, name, ns, labels
        self.spec, self.container, self.env, self.mounts = pod_spec, container, env, mounts
        self.events = events          # shared list of (time, pod, message) for the report
        self.dir = run.work / "pods" / name
        self.dir.mkdir(parents=True)
        self.log = self.dir / "log"
        self.netns = self.ip = None
        self.proc = None
        self.started = self.ready = False
        self.terminating = False
        self.failure = None           # why the kubelet would restart or never start it
        self.stop = threading.Event()
        self.exit_info = None
        self.trap = None
        self.own_ports = {p["containerPort"] for p in container.get("ports") or []}

    # ---------------------------------------------------------------- start
    def start(self):
        self.netns, self.ip = self.run.net.add_pod(self.ns)
        self.trap = LoopbackTrap(self.netns, self.own_ports, self.run.trap_hits, self.name)
        script = self._script()
        (self.dir / "start.sh").write_text(script)
        cmd = ["ip", "netns", "exec", self.netns, "unshare", "--mount", "--propagation", "private",
               "sh", "-c", script]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=open(self.log, "ab"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.run.pids.append(self.proc.pid)
        self.t0 = time.time()
        threading.Thread(target=self._kubelet, daemon=True).start()

    def _script(self):
        sc = dict(self.spec.get("securityContext") or {})
        sc.update(self.container.get("securityContext") or {})
        uid = sc.get("runAsUser", 0)
        gid = sc.get("runAsGroup", 0)
        fs_group = (self.spec.get("securityContext") or {}).get("fsGroup")
        if sc.get("runAsNonRoot") and uid == 0:
            raise ManifestError(f"pod {self.name}: runAsNonRoot without a numeric runAsUser "
                                "(kubelet: container has runAsNonRoot and image will run as root)")
        # Files of each volume, as the kubelet projects them (group fsGroup when set).
        binds = []
        for i, (mount_path, files, read_only, kind) in enumerate(self.mounts):
            src = self.dir / f"vol{i}"
            if kind == "emptyDir":
                src.mkdir()
                os.chown(src, 0, fs_group if fs_group is not None else 0)
                os.chmod(src, 0o2777 if fs_group is None else 0o2775)
                binds.append((src, mount_path, read_only, True))
                continue
            if "" in files:  # subPath: a single file
                data, mode = files[""]
                src.write_bytes(data)
                os.chmod(src, mode)
                os.chown(src, 0, fs_group if fs_group is not None else 0)
                binds.append((src, mount_path, True, False))
                continue
            src.mkdir()
            os.chmod(src, 0o755)
            for rel, (data, mode) in files.items():
                f = src / rel
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_bytes(data)
                os.chmod(f, mode)
                os.chown(f, 0, fs_group if fs_group is not None else 0)
            binds.append((src, mount_path, True, True))
        for b in IMAGE_BINARIES:
            binds.append((self.run.bin_dir / b, f"/usr/local/bin/{b}", True, False))
        # Parents that do not exist on this machine get an overlay (in this mount namespace
        # only), so the pod's paths stay exactly as written without touching the host.
        overlays = []
        for _, target, _, _ in binds:
            p = Path(target)
            if p.exists():
                continue
            parent = p.parent
            while not parent.exists():
                parent = parent.parent
            if str(parent) == "/":
                raise ManifestError(f"pod {self.name}: mountPath {target} under / is not emulated")
            if str(parent) not in overlays:
                overlays.append(str(parent))
        lines = ["set -e"]
        hosts = self.dir / "hosts"
        hosts.write_text("")
        lines.append(f"mount --bind /etc/hosts {q(hosts)}")  # ip netns exec's per-pod hosts
        for i, o in enumerate(sorted(overlays, key=len)):
            u, w = self.dir / f"ov{i}u", self.dir / f"ov{i}w"
            u.mkdir()
            w.mkdir()
            lines.append(f"mount -t overlay overlay -o lowerdir={o},upperdir={u},workdir={w} {q(o)}")
        lines.append(f"mount --bind {q(hosts)} /etc/hosts")
        for src, target, read_only, is_dir in binds:
            if is_dir:
                lines.append(f"mkdir -p {q(target)}")
            else:
                lines.append(f"mkdir -p {q(str(Path(target).parent))}; [ -e {q(target)} ] || touch {q(target)}")
            lines.append(f"mount --bind {q(str(src))} {q(target)}")
            if read_only:
                lines.append(f"mount -o remount,bind,ro {q(target)}")
        if sc.get("readOnlyRootFilesystem"):
            lines.append("mount -o remount,bind,ro /")
            for o in overlays:
                lines.append(f"mount -o remount,bind,ro {q(o)}")
        env = {"PATH": IMAGE_PATH, "HOSTNAME": self.name, "HOME": "/"}
        env.update(self.env)
        command = list(self.container.get("command") or []) + list(self.container.get("args") or [])
        if not command:
            raise ManifestError(f"pod {self.name}: no command (the image has no ENTRYPOINT)")
        priv = ["setpriv", f"--reuid={uid}", f"--regid={gid}"]
        groups = [str(g) for g in ([fs_group] if fs_group is not None else []) +
                  list((self.spec.get("securityContext") or {}).get("supplementalGroups") or [])]
        priv += [f"--groups={','.join(groups)}"] if groups else ["--clear-groups"]
        if sc.get("allowPrivilegeEscalation") is False:
            priv.append("--no-new-privs")
        if "ALL" in ((sc.get("capabilities") or {}).get("drop") or []):
            priv += ["--inh-caps=-all", "--bounding-set=-all"]
        workdir = self.container.get("workingDir", "/")
        lines.append(f"cd {q(workdir)}")
        lines.append("exec " + " ".join(q(x) for x in priv) + " env -i " +
                     " ".join(q(f"{k}={v}") for k, v in env.items()) + " " + " ".join(q(x) for x in command))
        return "\n".join(lines) + "\n"

    def exec_in(self, command, timeout):
        """`kubectl exec`: the command in the container's namespaces, as its user, its env."""
        sc = dict(self.spec.get("securityContext") or {})
        sc.update(self.container.get("securityContext") or {})
        env = {"PATH": IMAGE_PATH, "HOME": "/"}
        env.update(self.env)
        cmd = ["nsenter", "-t", str(self.proc.pid), "-m", "-n", "--",
               "setpriv", f"--reuid={sc.get('runAsUser', 0)}", f"--regid={sc.get('runAsGroup', 0)}",
               "--clear-groups", "env", "-i"] + [f"{k}={v}" for k, v in env.items()] + list(command)
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            return r.returncode == 0, (r.stdout + r.stderr).strip()[-400:]
        except subprocess.TimeoutExpired:
            return False, f"timed out after {timeout}s"

    # ---------------------------------------------------------------- probes
    def probe(self, spec):
        ok, why = self._probe(spec)
        return ok, "".join(ch if ch.isprintable() else "?" for ch in why)[:300]

    def _probe(self, spec):
        timeout = spec.get("timeoutSeconds", 1)
        try:
            if "httpGet" in spec:
                h = spec["httpGet"]
                port = named_port(self.container, h["port"])
                scheme = h.get("scheme", "HTTP").lower()
                url = f"{scheme}://{h.get('host') or self.ip}:{port}{h.get('path', '/')}"
                try:
                    with urllib.request.urlopen(url, timeout=timeout) as r:
                        return 200 <= r.status < 400, f"GET {url}: {r.status}"
                except urllib.error.HTTPError as e:
                    return False, f"GET {url}: HTTP {e.code} {e.read()[:200]!r}"
            if "tcpSocket" in spec:
                port = named_port(self.container, spec["tcpSocket"]["port"])
                with socket.create_connection((self.ip, port), timeout=timeout):
                    return True, f"tcp {port} open"
            if "grpc" in spec:
                port = named_port(self.container, spec["grpc"]["port"])
                ok, why = grpc_health(self.ip, port, timeout)
                return ok, f"grpc health {self.ip}:{port} (plaintext, as the kubelet): {why}"
            if "exec" in spec:
                ok, out = self.exec_in(spec["exec"]["command"], timeout)
                return ok, f"exec {spec['exec']['command']}: {out}"
        except ManifestError:
            raise
        except Exception as e:  # noqa: BLE001
            return False, f"{type(e).__name__}: {e}"
        raise ManifestError(f"pod {self.name}: probe {spec} not understood")

    def _event(self, msg):
        self.events.append((time.time(), self.name, msg))

    def _exited(self):
        if self.proc.poll() is not None and not self.terminating:
            tail = self.log.read_text(errors="replace").strip().splitlines()[-8:]
            self.failure = f"container exited with code {self.proc.returncode}:\n      " + "\n      ".join(tail)
            self._set_ready(False)
            return True
        return False

    def _set_ready(self, ready):
        if ready != self.ready:
            self.ready = ready
            self._event("Ready" if ready else "not Ready")
            if not self.terminating or not ready:
                self.run.net.set_ready(self.ns, self.labels, self.ip, ready)

    def _kubelet(self):
        c = self.container
        try:
            startup = c.get("startupProbe")
            if startup:
                if self.stop.wait(startup.get("initialDelaySeconds", 0)):
                    return
                fails = 0
                while True:
                    if self._exited():
                        return
                    ok, why = self.probe(startup)
                    if ok:
                        break
                    fails += 1
                    self.last_probe = why
                    if fails >= startup.get("failureThreshold", 3):
                        self.failure = (f"startup probe failed {fails} times "
                                        f"({startup.get('periodSeconds', 10)} s apart): {why}; "
                                        "the kubelet would kill and restart the container")
                        self._event(self.failure)
                        return
                    if self.stop.wait(startup.get("periodSeconds", 10)):
                        return
            self.started = True
            self.started_after = time.time() - self.t0
            self._event(f"started after {self.started_after:.1f} s")
            readiness, liveness = c.get("readinessProbe"), c.get("livenessProbe")
            now = time.time()
            due_r = now + (readiness or {}).get("initialDelaySeconds", 0)
            due_l = now + (liveness or {}).get("initialDelaySeconds", 0)
            r_ok = r_fail = l_fail = 0
            if not readiness:
                self._set_ready(True)
            while not self.stop.is_set():
                if self._exited():
                    return
                now = time.time()
                if readiness and now >= due_r and not self.terminating:
                    ok, why = self.probe(readiness)
                    self.last_probe = why
                    if ok:
                        r_ok, r_fail = r_ok + 1, 0
                        if r_ok >= readiness.get("successThreshold", 1):
                            self._set_ready(True)
                    else:
                        r_ok, r_fail = 0, r_fail + 1
                        if r_fail >= readiness.get("failureThreshold", 3) or not self.ready:
                            if self.ready:
                                self._event(f"readiness probe failed {r_fail} times: {why}")
                            self._set_ready(False)
                    due_r = time.time() + readiness.get("periodSeconds", 10)
                if liveness and now >= due_l and not self.terminating:
                    ok, why = self.probe(liveness)
                    l_fail = 0 if ok else l_fail + 1
                    if l_fail >= liveness.get("failureThreshold", 3):
                        self.failure = f"liveness probe failed {l_fail} times: {why}; the kubelet would restart it"
                        self._event(self.failure)
                        self._set_ready(False)
                        return
                    due_l = time.time() + liveness.get("periodSeconds", 10)
                self.stop.wait(0.2)
        except ManifestError as e:
            self.failure = str(e)
            self._event(self.failure)

    # ---------------------------------------------------------------- stop
    def terminate(self):
        """As a kubelet deleting the pod: out of the endpoints at once, preStop, SIGTERM; the
        grace period (counted from the start of preStop) then SIGKILL. Answers what happened."""
        grace = self.spec.get("terminationGracePeriodSeconds", 30)
        self.terminating = True
        self.run.net.set_ready(self.ns, self.labels, self.ip, False)
        self.ready = False
        t0 = time.time()
        notes = []
        pre = ((self.container.get("lifecycle") or {}).get("preStop"))
        if pre and self.proc.poll() is None:
            if "exec" in pre:
                ok, out = self.exec_in(pre["exec"]["command"], grace)
                notes.append(f"preStop exec {'ok' if ok else 'failed: ' + out}")
            elif "sleep" in pre:
                time.sleep(min(pre["sleep"]["seconds"], grace))
                notes.append(f"preStop sleep {pre['sleep']['seconds']} s")
            elif "httpGet" in pre:
                ok, why = self.probe({"httpGet": pre["httpGet"], "timeoutSeconds": grace})
                notes.append(f"preStop {why}")
        killed = False
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=max(0.0, grace - (time.time() - t0)))
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
                killed = True
        self.stop.set()
        took = time.time() - t0
        self.exit_info = (self.proc.returncode, took, killed, notes)
        self._event(f"terminated: exit {self.proc.returncode} after {took:.1f} s of {grace} s"
                    + (" (SIGKILL)" if killed else "") + ("; " + "; ".join(notes) if notes else ""))
        if self.trap:
            self.trap.close()
        self.run.net.remove_pod(self.netns)
        return self.exit_info

    def kill_now(self):
        self.stop.set()
        if self.proc and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        if self.trap:
            self.trap.close()


def q(s):
    return shlex.quote(str(s))
