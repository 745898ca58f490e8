"""Pod networking: one Linux bridge per run, one network namespace per pod (veth into the
bridge, its own address), and per pod a hosts file that plays cluster DNS: every Service name
(`svc`, `svc.ns`, `svc.ns.svc`, `svc.ns.svc.cluster.local`; the short forms only inside the
Service's namespace, as the pod's DNS search path would) maps to the addresses of the Service's
Ready pods. `ip netns exec` bind-mounts /etc/netns/<name>/hosts over /etc/hosts, and the file
is rewritten in place, so a running process sees the endpoints change (existing connections
stay, as with kube-proxy).

Everything is named `<prefix>...` (prefix unique per run) and removed by cleanup().
"""
import ipaddress
import os
import subprocess
import threading
from pathlib import Path


def sh(*args, check=True, timeout=30):
    run = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and run.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {run.stderr.strip() or run.stdout.strip()}")
    return run


def free_subnet(seed: int) -> ipaddress.IPv4Network:
    """A /24 under 10.0.0.0/8 that no route on this machine covers."""
    routes = sh("ip", "-4", "route", "show", "table", "all", check=False).stdout
    used = []
    for line in routes.splitlines():
        word = line.split()[0] if line.split() else ""
        if word in ("local", "broadcast", "unicast"):
            word = line.split()[1]
        try:
            used.append(ipaddress.ip_network(word, strict=False))
        except ValueError:
            pass
    for i in range(200):
        n = (seed + i * 7919) % 50000
        net = ipaddress.ip_network(f"10.{128 + n // 256 % 120}.{n % 256}.0/24")
        if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
            return net
    raise RuntimeError("no free 10.x.y.0/24 subnet for the pod network")


class Network:
    def __init__(self, prefix: str, seed: int):
        self.prefix = prefix
        self.subnet = free_subnet(seed)
        hosts = list(self.subnet.hosts())
        self.gateway = str(hosts[0])
        self._free = [str(h) for h in hosts[1:]]
        self.bridge = f"{prefix}br"
        self.namespaces = []   # netns names created
        self.links = []        # host-side veth names
        self.lock = threading.Lock()
        self.services = {}     # (ns, name) -> selector dict
        self.endpoints = {}    # (ns, name) -> [ip] (Ready pods, newest first)
        self.hosts_files = {}  # netns name -> (pod k8s namespace, path)
        self._n = 0
        self.made_etc_netns = not Path("/etc/netns").exists()
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")

    def add_pod(self, k8s_ns: str) -> tuple:
        """A new network namespace with its own address; answers (netns name, ip)."""
        with self.lock:
            self._n += 1
            n = self._n
            ip = self._free.pop(0)
        name = f"{self.prefix}{n}"
        host_if, pod_if = f"{self.prefix}v{n}", f"{self.prefix}p{n}"
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", pod_if)
        self.links.append(host_if)
        sh("ip", "link", "set", pod_if, "netns", name)
        sh("ip", "link", "set", host_if, "master", self.bridge)
        sh("ip", "link", "set", host_if, "up")
        sh("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
        sh("ip", "netns", "exec", name, "ip", "link", "set", pod_if, "name", "eth0")
        sh("ip", "netns", "exec", name, "ip", "addr", "add", f"{ip}/{self.subnet.prefixlen}", "dev", "eth0")
        sh("ip", "netns", "exec", name, "ip", "link", "set", "eth0", "up")
        sh("ip", "netns", "exec", name, "ip", "route", "add", "default", "via", self.gateway)
        hosts_dir = Path("/etc/netns") / name
        hosts_dir.mkdir(parents=True, exist_ok=True)
        path = hosts_dir / "hosts"
        path.write_text("")
        with self.lock:
            self.hosts_files[name] = (k8s_ns, path)
        self.write_hosts()
        return name, ip

    def remove_pod(self, name: str):
        with self.lock:
            self.hosts_files.pop(name, None)
        sh("ip", "netns", "del", name, check=False)
        sh("ip", "link", "del", name.replace(self.prefix, self.prefix + "v", 1), check=False)
        _rm_tree(Path("/etc/netns") / name)

    def add_service(self, ns: str, name: str, selector: dict):
        with self.lock:
            self.services[(ns, name)] = selector
            self.endpoints.setdefault((ns, name), [])

    def set_ready(self, ns: str, labels: dict, ip: str, ready: bool):
        """Endpoints follow readiness: a Ready pod joins every Service selecting it."""
        from k8s import selector_matches
        changed = False
        with self.lock:
            for (sns, sname), selector in self.services.items():
                if sns != ns or not selector or not selector_matches({"matchLabels": selector}, labels):
                    continue
                eps = self.endpoints[(sns, sname)]
                if ready and ip not in eps:
                    eps.insert(0, ip)
                    changed = True
                elif not ready and ip in eps:
                    eps.remove(ip)
                    changed = True
        if changed:
            self.write_hosts()

    def lookup(self, ns, name):
        with self.lock:
            return list(self.endpoints.get((ns, name), []))

    def write_hosts(self):
        with self.lock:
            for netns, (pod_ns, path) in self.hosts_files.items():
                lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost"]
                for (sns, sname), eps in sorted(self.endpoints.items()):
                    names = [f"{sname}.{sns}", f"{sname}.{sns}.svc", f"{sname}.{sns}.svc.cluster.local"]
                    if sns == pod_ns:
                        names.insert(0, sname)
                    for ip in eps:
                        lines.append(f"{ip}\t{' '.join(names)}")
                text = "\n".join(lines) + "\n"
                # In place (same inode): the bind mount over /etc/hosts keeps pointing at it.
                with open(path, "r+") as f:
                    f.seek(0)
                    f.write(text)
                    f.truncate()

    def cleanup(self):
        for name in list(self.namespaces):
            sh("ip", "netns", "del", name, check=False)
            _rm_tree(Path("/etc/netns") / name)
        for link in self.links:
            sh("ip", "link", "del", link, check=False)
        sh("ip", "link", "del", self.bridge, check=False)
        if self.made_etc_netns:
            try:
                Path("/etc/netns").rmdir()  # only when empty (another run may use it)
            except OSError:
                pass


def _rm_tree(path: Path):
    if path.is_dir():
        for child in path.iterdir():
            child.unlink()
        path.rmdir()
