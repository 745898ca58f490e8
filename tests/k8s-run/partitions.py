"""Network partitions (issue 14, item 3): under a steady write load, cut and later heal, at
seeded-random moments, the links between the bridge and the broker, the bridge and the ERP,
the CRM and its database, and the CRM and the ERP and the broker; then check against what the
clients were told.

A cut drops every packet both ways between two pods' addresses: an nftables table of its own
(`tkcut<N>`, family inet, DROP in input and output, matching the peer's address) in each of
the two pods' network namespaces, so connections hang as in a real partition (no RST, no ICMP).
A heal deletes those tables; cleanup() deletes whatever is left (also on failure or Ctrl-C).

The load (run as `partitions.py load CONFIG` inside the frontend pod) creates customers and
stock changes on two threads, each call with a request id (AIP-155) and a 3 s deadline, and
records each outcome: acknowledged, refused (UNAVAILABLE: the service said it could not), or
unknown (a timeout or any other error). After the last heal `partitions.py count CONFIG`
resolves every unknown by retrying it with the same request id (the first result, or the
effect now), then waits until: every acknowledged customer is exactly once in the CRM and the
ERP, no customer of this load exists that was not acknowledged (a refused or never-made one),
the ERP's on hand is the base plus every acknowledged change exactly, and the CRM's available
equals the ERP's.
"""
import json
import random
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent


# ---------------------------------------------------------------------------- orchestration
class Partitions:
    def __init__(self, run, seed):
        self.run, self.seed = run, seed
        self.rng = random.Random(seed)
        self.active = {}      # cut id -> [(netns, table)]
        self.lock = threading.Lock()
        self.n = 0

    # -- nftables
    def _nft(self, netns, script):
        r = subprocess.run(["ip", "netns", "exec", netns, "nft", "-f", "-"], input=script, text=True,
                           capture_output=True, timeout=15)
        if r.returncode != 0:
            raise RuntimeError(f"nft in {netns}: {r.stderr.strip()}")

    def cut(self, a, b):
        """a, b: (netns, ip). Drops both ways; answers the cut's id."""
        with self.lock:
            self.n += 1
            cid = self.n
            self.active[cid] = []
        table = f"{self.run.prefix}cut{cid}"
        for (netns, _), (_, peer) in ((a, b), (b, a)):
            with self.lock:
                self.active[cid].append((netns, table))
            self._nft(netns, f"""table inet {table} {{
  chain in {{ type filter hook input priority -50; policy accept; ip saddr {peer} drop; }}
  chain out {{ type filter hook output priority -50; policy accept; ip daddr {peer} drop; }}
}}
""")
        return cid

    def heal(self, cid):
        with self.lock:
            tables = self.active.pop(cid, [])
        for netns, table in tables:
            subprocess.run(["ip", "netns", "exec", netns, "nft", "delete", "table", "inet", table],
                           capture_output=True, timeout=15)

    def cleanup(self):
        for cid in list(self.active):
            self.heal(cid)

    # -- the pods
    def links(self):
        run = self.run
        import operators as ops

        def live(dep):
            ps = [p for p in run.pods.get(dep, []) if p.proc and p.proc.poll() is None and not p.terminating]
            if not ps:
                run.fail("partitions", f"no running {dep} pod", True)
            return ps[0]

        crm, erp, bridge = live("crm-service"), live("erp-service"), live("sync-bridge")
        brokers = [s for s in run.standins if isinstance(s, ops.Broker)]
        def database(pod, key):
            host = urlsplit(pod.env.get(key, "")).hostname or ""
            found = next((s for s in run.standins if isinstance(s, ops.Postgres)
                          and host.split(".")[0] in s.service_names), None)
            if found is None:
                run.fail("partitions", f"no database stand-in for {key} (host {host!r})", True)
            return found

        crm_db = database(crm, "CRM__DATABASE__URL")
        erp_db = database(erp, "ERP__DATABASE__URL")
        if not brokers:
            run.fail("partitions", "no broker stand-in", True)
        k = brokers[0]
        ep = lambda x: (x.netns, x.ip)  # noqa: E731
        self.bridge = bridge
        return [("bridge", "broker", ep(bridge), ep(k)), ("bridge", "erp", ep(bridge), ep(erp)),
                ("bridge", "crm", ep(bridge), ep(crm)),
                ("crm", "crm database", ep(crm), ep(crm_db)), ("crm", "broker", ep(crm), ep(k)),
                ("erp", "erp database", ep(erp), ep(erp_db)), ("erp", "broker", ep(erp), ep(k))]

    def plan(self, links):
        """Each link once, then two more at random; 3-8 s each (the bridge's 7-10 s: it checks
        the CRM, the ERP and the broker each on its own, every 2 s, each check for up to 2 s,
        so a cut can take ~6 s to show), at most two at a time."""
        order = links[:]
        self.rng.shuffle(order)
        order += self.rng.sample(links, 2)
        cuts, t = [], 2.0
        for link in order:
            t += self.rng.uniform(1.0, 4.0)
            dur = round(self.rng.uniform(7.0, 10.0) if link[0] == "bridge" else self.rng.uniform(3.0, 8.0), 1)
            # at most two at a time, never the same link twice at once (nor within 1 s of its
            # heal); each step moves t past the end of a conflict, so this ends
            for _ in range(100):
                over = [c for c in cuts if c[0] <= t < c[0] + c[1]]
                same = [c for c in cuts if c[2] == link and c[0] <= t < c[0] + c[1] + 1]
                if len(over) < 2 and not same:
                    break
                ends = [c[0] + c[1] for c in over] + [c[0] + c[1] + 1 for c in same]
                t = min(e for e in ends if e >= t) + 0.5
            cuts.append((round(t, 1), dur, link))
        return cuts

    # -- the bridge's readiness
    def readyz(self):
        port = (self.bridge.env.get("BRIDGE__HTTP__LISTEN", "0.0.0.0:9103").rsplit(":", 1)[1])
        try:
            with urllib.request.urlopen(f"http://{self.bridge.ip}:{port}/readyz", timeout=1.5) as r:
                return r.status, r.read().decode(errors="replace").strip()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace").strip()
        except Exception as e:  # noqa: BLE001
            return None, f"{type(e).__name__}: {e}"

    # -- the phase
    def main(self, client_cfg, sku, warehouse):
        run = self.run
        step = "partitions"
        links = self.links()
        schedule = self.plan(links)
        run.note(step, f"seed {self.seed} (repeat with --seed {self.seed}); {len(schedule)} cuts (nftables DROP "
                 "both ways in both pods' network namespaces): " + "; ".join(
                     f"{a}<->{b} at +{t} s for {d} s" for t, d, (a, b, _, _) in schedule))
        work = run.work
        cfg = dict(client_cfg, sku=sku, warehouse=warehouse, run=run.prefix + "p",
                   stop_file=str(work / "stop-pload"), acks_file=str(work / "packs.jsonl"),
                   timeout=run.args.sync_timeout * 2)
        (work / "packs.jsonl").write_text("")
        cfg_file = work / "pload.json"
        cfg_file.write_text(json.dumps(cfg))
        cmd = ["ip", "netns", "exec", run.client_netns, sys.executable, str(HERE / "partitions.py")]
        load = subprocess.Popen(cmd + ["load", str(cfg_file)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
        run.pids.append(load.pid)
        time.sleep(1.5)
        t0 = time.time()
        events = sorted([(t, "cut", i) for i, (t, _, _) in enumerate(schedule)]
                        + [(t + d, "heal", i) for i, (t, d, _) in enumerate(schedule)], key=lambda e: (e[0], e[1]))
        cids, readiness = {}, {}
        skip_heal = getattr(run.args, "partition_defect", None) == "skip-heal"
        stop_poll = threading.Event()

        def poll(i, what):
            """The bridge's /readyz while its link is cut: not ready, naming it."""
            seen, before = [], getattr(self.bridge, "last_probe", None)
            while not stop_poll.is_set() and i in cids:
                code, body = self.readyz()
                seen.append((time.time(), code, body))
                kubelet = getattr(self.bridge, "last_probe", None)
                if kubelet and kubelet != before and "\\x08\\x01" not in kubelet:  # not SERVING
                    readiness[(i, "kubelet")] = kubelet
                # 503 naming this peer (/readyz names every unmet dependency, so another cut
                # at the same time, of the bridge's links or behind a peer, does not hide it)
                if code == 503 and what in body:
                    seen[-1] = seen[-1] + ("own",)
                    break
                time.sleep(0.5)
            readiness[i] = seen

        pollers = []
        for t, kind, i in events:
            delay = t0 + t - time.time()
            if delay > 0:
                time.sleep(delay)
            at, dur, (a, b, ea, eb) = schedule[i]
            if kind == "cut":
                cids[i] = self.cut(ea, eb)
                run.note(step, f"+{time.time() - t0:4.1f} s cut  {a}<->{b} ({ea[1]} x {eb[1]}) for {dur} s")
                if a == "bridge":
                    th = threading.Thread(target=poll, args=(i, f"{b} unreachable"), daemon=True)
                    th.start()
                    pollers.append(th)
            else:
                if skip_heal and (a, b) == ("bridge", "erp"):
                    run.note(step, f"+{time.time() - t0:4.1f} s (planted defect: {a}<->{b} NOT healed)")
                    cids.pop(i)
                    continue
                self.heal(cids.pop(i))
                run.note(step, f"+{time.time() - t0:4.1f} s heal {a}<->{b}")
        t_heal = time.time()
        stop_poll.set()
        for th in pollers:
            th.join(timeout=5)
        run.note(step, f"all links healed after {t_heal - t0:.1f} s of cuts")
        # ready again after healing: /readyz 200 within a bound, and the kubelet's view
        ready_again = None
        while time.time() - t_heal < 30:
            code, body = self.readyz()
            if code == 200:
                ready_again = time.time() - t_heal
                break
            time.sleep(0.5)
        # a few more seconds of load after the heal, then stop it
        time.sleep(2)
        (work / "stop-pload").write_text("")
        try:
            out, _ = load.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            load.kill()
            out, _ = load.communicate()
        stats = next((json.loads(x) for x in out.splitlines() if x.startswith('{"step": "load"')), {})
        if not stats:
            run.fail(step, "the partition load client ended without a result: " + " | ".join(out.splitlines()[-4:]))
        else:
            run.note(step, f"load: {stats['customers']} customer calls ({stats['customer_acked']} acknowledged, "
                     f"{stats['customer_refused']} refused UNAVAILABLE, {stats['customer_unknown']} unknown), "
                     f"{stats['stock']} stock calls ({stats['stock_acked']} acknowledged, {stats['stock_refused']} "
                     f"refused, {stats['stock_unknown']} unknown); failed calls during the cuts: "
                     f"{stats['failed_total']} ({stats['errors'] or 'none'})")
        # readiness while cut
        for i, seen in sorted((k, v) for k, v in readiness.items() if isinstance(k, int)):
            at, dur, (a, b, _, _) = schedule[i]
            kubelet = readiness.get((i, "kubelet"))
            hit = (next((s for s in seen if len(s) > 3 and s[3] == "own"), None)
                   or next((s for s in seen if len(s) > 3), None))
            if hit:
                run.ok(step, f"bridge<->{b} cut at +{at} s: the bridge's /readyz answered 503 {hit[2]!r} "
                       f"{hit[0] - (t0 + at):.1f} s into the cut"
                       + (f"; the kubelet's readiness probe: {kubelet}" if kubelet else
                          " (the kubelet's gRPC readiness probe, every 5 s, did not run a failing probe in that time)"))
            else:
                last = seen[-1][1:] if seen else "no answer"
                run.fail(step, f"bridge<->{b} cut at +{at} s for {dur} s: the bridge's /readyz never said "
                         f"'{b} unreachable' (last: {last})")
        if ready_again is not None:
            run.ok(step, f"the bridge's /readyz answered 200 again {ready_again:.1f} s after the last heal")
        else:
            run.fail(step, f"the bridge's /readyz still not 200 30 s after the last heal: {self.readyz()} "
                     f"(BRIDGE__CONSUMER__REJOIN_AFTER_MS="
                     f"{self.bridge.env.get('BRIDGE__CONSUMER__REJOIN_AFTER_MS', 'unset: 60000 by default')})")
        # count
        p = subprocess.run(cmd + ["count", str(cfg_file)], capture_output=True, text=True,
                           timeout=cfg["timeout"] + 120)
        rows = [json.loads(x) for x in p.stdout.splitlines() if x.startswith("{")]
        r = next((x for x in rows if x.get("step") == "count"), None)
        if r is None:
            run.fail(step, f"the counting client ended without a result (exit {p.returncode}): "
                     + " | ".join((p.stderr or p.stdout).strip().splitlines()[-4:]))
        elif r["ok"]:
            run.ok(step, f"converged {r['at'] - t_heal:.1f} s after the last heal ({r['resolved']} unknown calls "
                   f"resolved by retrying with their request id): {r['customers_acked']} acknowledged customers "
                   f"each exactly once in the CRM ({r['crm']}) and the ERP ({r['erp']}), none that no client was "
                   f"told was created ({r['customers_refused']} refused absent); {r['stock_acked']} acknowledged "
                   f"stock changes: ERP on hand {r['erp_on_hand']} = {r['stock_base']} + {r['stock_acked']}, CRM "
                   f"available {r['crm_available']} = ERP available")
        else:
            run.fail(step, f"not converged {r['at'] - t_heal:.0f} s after the last heal: {r['detail']}")


# ---------------------------------------------------------------------------- the clients
def _api(cfg):
    sys.path.insert(0, str(HERE))
    import client
    return (client, client.Api(cfg["crm"], "tandem.crm.v1.CrmService", cfg),
            client.Api(cfg["erp"], "tandem.erp.v1.ErpService", cfg))


def load(cfg):
    client, crm, erp = _api(cfg)
    import grpc
    stop, lock = Path(cfg["stop_file"]), threading.Lock()
    acks = open(cfg["acks_file"], "a", buffering=1)
    stats = {k: 0 for k in ("customers", "customer_acked", "customer_refused", "customer_unknown",
                            "stock", "stock_acked", "stock_refused", "stock_unknown")}
    errors = {}

    def record(row, kind, outcome, err=None):
        with lock:
            stats[kind] += 1
            stats[f"{'customer' if kind == 'customers' else 'stock'}_{outcome}"] += 1
            if err:
                errors[err] = errors.get(err, 0) + 1
            acks.write(json.dumps(dict(row, outcome=outcome, error=err)) + "\n")

    def call(api, method, body, row, kind):
        try:
            r = api(method, body, timeout=3)
            record(dict(row, id=r.get("id")), kind, "acked")
        except grpc.RpcError as e:
            outcome = "refused" if e.code() == grpc.StatusCode.UNAVAILABLE else "unknown"
            record(row, kind, outcome, f"{method} {e.code().name}")
        except Exception as e:  # noqa: BLE001
            record(row, kind, "unknown", f"{method} {type(e).__name__}")

    def customers():
        n = 0
        while not stop.exists():
            n += 1
            email, rid = f"load-{cfg['run']}-{n}@example.com", str(uuid.uuid4())
            body = {"customer": {"display_name": f"load {cfg['run']} {n}", "email": email}, "request_id": rid}
            call(crm, "CreateCustomer", body, {"kind": "customer", "email": email, "body": body}, "customers")
            time.sleep(0.05)

    def stock():
        n = 0
        while not stop.exists():
            n += 1
            body = {"sku": cfg["sku"], "warehouse": cfg["warehouse"], "quantity_delta": 1,
                    "reason": "ADJUSTMENT_REASON_FOUND", "reference": f"pload-{cfg['run']}-{n}",
                    "request_id": str(uuid.uuid4())}
            call(erp, "AdjustStock", body, {"kind": "stock", "delta": 1, "body": body}, "stock")
            time.sleep(0.05)

    # the base: on hand before the first change of this load (no other writer of this sku now)
    base = int(client.retry(lambda: erp("GetStockLevel", {"sku": cfg["sku"], "warehouse": cfg["warehouse"]}))
               .get("on_hand", 0))
    acks.write(json.dumps({"kind": "base", "on_hand": base}) + "\n")
    ts = [threading.Thread(target=customers), threading.Thread(target=stock)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    client.out(step="load", **stats, failed_total=sum(errors.values()), errors=errors)
    return 0


def count(cfg):
    client, crm, erp = _api(cfg)
    import grpc
    rows = [json.loads(x) for x in Path(cfg["acks_file"]).read_text().splitlines() if x.strip()]
    base = next(r["on_hand"] for r in rows if r["kind"] == "base")
    # Unknown outcomes: resolved by the same request again (AIP-155: the first result, or the
    # effect now if the first never happened). Either way the client now knows.
    resolved = 0
    for r in rows:
        if r.get("outcome") != "unknown":
            continue
        api, method = (crm, "CreateCustomer") if r["kind"] == "customer" else (erp, "AdjustStock")
        try:
            got = client.retry(lambda: api(method, r["body"], timeout=10), timeout=cfg["timeout"])
            r["outcome"], r["id"] = "acked", got.get("id")
            resolved += 1
        except grpc.RpcError as e:
            r["outcome"] = "refused" if e.code() == grpc.StatusCode.UNAVAILABLE else "unresolved"
            r["error"] = e.code().name
    unresolved = [r for r in rows if r.get("outcome") == "unresolved"]
    customers = [r for r in rows if r["kind"] == "customer"]
    acked = {r["id"]: r["email"] for r in customers if r["outcome"] == "acked"}
    refused = {r["email"] for r in customers if r["outcome"] == "refused"}
    stock_acked = sum(r["delta"] for r in rows if r["kind"] == "stock" and r["outcome"] == "acked")
    stock_refused = sum(1 for r in rows if r["kind"] == "stock" and r["outcome"] == "refused")
    prefix = f"load-{cfg['run']}-"
    t0, last = time.time(), ""
    while True:
        try:
            problems = []
            if unresolved:
                problems.append(f"{len(unresolved)} calls with an unknown outcome could not be resolved "
                                f"(excluded): {[r.get('error') for r in unresolved[:3]]}")
            c_rows = client.retry(lambda: client.list_all(crm, prefix))
            e_rows = client.retry(lambda: client.list_all(erp, prefix))
            c_ids, e_ids = [r["id"] for r in c_rows], [r["id"] for r in e_rows]
            for side, ids in (("CRM", c_ids), ("ERP", e_ids)):
                bad = [i for i in acked if ids.count(i) != 1]
                if bad:
                    problems.append(f"{len(bad)} acknowledged customers not exactly once in the {side}: "
                                    f"{[(i, ids.count(i)) for i in bad[:3]]}")
                extra = sorted(set(ids) - set(acked))
                if extra:
                    problems.append(f"{len(extra)} customers in the {side} that no client was told were created: "
                                    f"{extra[:3]}")
            present_refused = sorted({r["email"] for r in c_rows} & refused)
            if present_refused:
                problems.append(f"{len(present_refused)} refused (UNAVAILABLE) customers exist in the CRM: "
                                f"{present_refused[:3]}")
            lvl = client.retry(lambda: erp("GetStockLevel", {"sku": cfg["sku"], "warehouse": cfg["warehouse"]}))
            on_hand = int(lvl.get("on_hand", 0))
            if on_hand != base + stock_acked:
                problems.append(f"ERP on hand {on_hand}, expected {base} + {stock_acked} acknowledged changes"
                                f" = {base + stock_acked} ({stock_refused} refused)")
            avail = client.retry(lambda: crm("GetAvailability", {"skus": [cfg["sku"]]})).get("availability", [])
            crm_avail = int(avail[0].get("available", 0)) if avail else None
            if crm_avail != int(lvl.get("available", 0)):
                problems.append(f"CRM shows {crm_avail} available, the ERP {lvl.get('available')}")
            if not problems:
                client.out(step="count", ok=True, at=time.time(), resolved=resolved, customers_acked=len(acked),
                           customers_refused=len(refused), crm=len(c_ids), erp=len(e_ids), stock_base=base,
                           stock_acked=stock_acked, erp_on_hand=on_hand, crm_available=crm_avail)
                return 0
            last = "; ".join(problems)
        except grpc.RpcError as e:
            last = f"{e.code().name}: {e.details()}"
        if time.time() - t0 > cfg["timeout"]:
            client.out(step="count", ok=False, at=time.time(), detail=last)
            return 1
        time.sleep(0.5)


if __name__ == "__main__":
    mode, conf = sys.argv[1], json.loads(Path(sys.argv[2]).read_text())
    sys.exit({"load": load, "count": count}[mode](conf))
