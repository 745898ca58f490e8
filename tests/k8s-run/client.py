"""The frontend: runs inside the client pod's network namespace (its hosts file resolves the
Service names) and calls the public gRPC ports over TLS with a bearer token, using server
reflection only (tools/grpc_call.py).

    client.py e2e   CONFIG     customer, order (and its status back), stock change end to end
    client.py load  CONFIG     customers and stock changes until CONFIG's stop file exists
    client.py count CONFIG     every acknowledged customer exactly once on both sides
Prints one JSON object per line; exits 1 on a failed check.
"""
import json
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
os.environ.setdefault("GRPC_DNS_RESOLVER", "native")  # getaddrinfo: the pod's /etc/hosts

import grpc  # noqa: E402
from google.protobuf import json_format, message_factory  # noqa: E402
from grpc_call import load_pool  # noqa: E402


class Api:
    def __init__(self, addr, service, cfg):
        creds = grpc.ssl_channel_credentials(root_certificates=Path(cfg["ca_file"]).read_bytes())
        # The certificate must name the address dialled: no target-name override.
        self.channel = grpc.secure_channel(addr, creds, options=[
            ("grpc.max_reconnect_backoff_ms", 1000),
            # Service names resolve to pod addresses here (no ClusterIP), so a replaced pod
            # means a new address: re-resolve at once, not after gRPC's default 30 s.
            ("grpc.dns_min_time_between_resolutions_ms", 200)])
        self.addr, self.service, self.cfg = addr, service, cfg
        self.token = cfg["token"]
        self._pool = None

    def pool(self):
        if self._pool is None:
            self._pool = load_pool(self.channel, self.service).FindServiceByName(self.service)
        return self._pool

    def __call__(self, method, body, timeout=10):
        m = self.pool().methods_by_name[method]
        In, Out = (message_factory.GetMessageClass(t) for t in (m.input_type, m.output_type))
        call = self.channel.unary_unary(f"/{self.service}/{method}", request_serializer=In.SerializeToString,
                                        response_deserializer=Out.FromString)
        reply = call(json_format.Parse(json.dumps(body), In()), timeout=timeout,
                     metadata=[("authorization", f"Bearer {self.token}")])
        return json_format.MessageToDict(reply, preserving_proto_field_name=True)


def why(e):
    if isinstance(e, grpc.RpcError):
        return f"{e.code().name}: {e.details()}"
    return str(e)


def out(**kw):
    print(json.dumps(kw), flush=True)


def until(what, fn, timeout, every=0.3):
    """fn() until it answers something truthy; (value, seconds) or raises with the last error."""
    t0, last = time.time(), None
    while time.time() - t0 < timeout:
        try:
            v = fn()
            if v:
                return v, time.time() - t0
            last = f"not yet: {v!r}"
        except grpc.RpcError as e:
            last = f"{e.code().name}: {e.details()}"
        except KeyError as e:
            last = f"missing {e}"
        time.sleep(every)
    raise TimeoutError(f"{what}: not seen within {timeout} s (last: {last})")


def retry(fn, timeout=30):
    """A call during a pod change: UNAVAILABLE is retried (Service endpoints moving)."""
    t0 = time.time()
    while True:
        try:
            return fn()
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNAVAILABLE or time.time() - t0 > timeout:
                raise
            time.sleep(0.3)


def e2e(cfg):
    crm, erp = Api(cfg["crm"], "tandem.crm.v1.CrmService", cfg), Api(cfg["erp"], "tandem.erp.v1.ErpService", cfg)
    run = uuid.uuid4().hex[:8].upper()
    sku, wh = f"K8S-{run}", f"WH-{run}"
    ok = True
    # Stock change ERP -> CRM (the product first: the CRM lists a sku once its product arrives).
    try:
        erp("CreateProduct", {"product": {"sku": sku, "display_name": "k8s-run widget",
                                          "unit_price": {"currency_code": "EUR", "amount_minor": 1000}}})
        erp("CreateWarehouse", {"warehouse": {"code": wh, "display_name": "k8s-run"}})
        erp("ReceiveStock", {"sku": sku, "warehouse": wh, "quantity": 50, "reference": f"rcv-{run}"})
        _, took = until("ERP->CRM: availability of the new stock in the CRM",
                        lambda: next((a for a in crm("GetAvailability", {"skus": [sku]}).get("availability", [])
                                      if int(a.get("available", 0)) == 50), None), cfg["timeout"])
        out(step="stock", ok=True, seconds=round(took, 2), detail=f"ERP received 50 x {sku}; the CRM shows 50 available")
    except Exception as e:  # noqa: BLE001
        ok = False
        out(step="stock", ok=False, detail=why(e))
    # Customer CRM -> ERP.
    cid = None
    try:
        c = crm("CreateCustomer", {"customer": {"display_name": f"k8s {run}", "email": f"k8s-{run}@example.com"}})
        cid = c["id"]
        _, took = until("CRM->ERP: the new customer in the ERP", lambda: erp("GetCustomer", {"id": cid}).get("profile", {}).get("id") == cid,
                        cfg["timeout"])
        out(step="customer", ok=True, seconds=round(took, 2), detail=f"customer {cid} created in the CRM is in the ERP")
    except Exception as e:  # noqa: BLE001
        ok = False
        out(step="customer", ok=False, detail=why(e))
    # Order CRM -> ERP, status back ERP -> CRM.
    if cid:
        try:
            erp("SetCreditTerms", {"customer_id": cid, "credit_limit": {"currency_code": "EUR", "amount_minor": 10000000},
                                   "payment_terms_days": 30, "update_mask": "creditLimit,paymentTermsDays"})
            until("the product in the CRM catalogue", lambda: any(
                p.get("sku") == sku for p in crm("ListProducts", {"page_size": 1000}).get("products", [])), cfg["timeout"])
            o = crm("CreateOrder", {"order": {"customer_id": cid, "lines": [{"sku": sku, "quantity": 3}]}})
            o = crm("SubmitOrder", {"id": o["id"], "version": o.get("version", 1)})
            oid = o["id"]
            _, t1 = until("CRM->ERP: the submitted order as an ERP sales order",
                          lambda: next((so["status"] for so in erp("ListSalesOrders", {"crm_order_id": oid}).get("orders", [])), None),
                          cfg["timeout"])
            st, t2 = until("ERP->CRM: the order's fulfilment status back in the CRM",
                           lambda: (crm("GetOrder", {"id": oid}).get("fulfilment") or {}).get("status"), cfg["timeout"])
            out(step="order", ok=True, seconds=round(t1 + t2, 2),
                detail=f"order {oid} submitted in the CRM reached the ERP, its status {st} came back")
        except Exception as e:  # noqa: BLE001
            ok = False
            out(step="order", ok=False, detail=why(e))
    out(step="done", ok=ok, sku=sku, warehouse=wh, customer=cid)
    return 0 if ok else 1


def load(cfg):
    """Creates customers (CRM) and stock changes (ERP) until the stop file appears; appends
    every acknowledged result to the acks file at once."""
    crm, erp = Api(cfg["crm"], "tandem.crm.v1.CrmService", cfg), Api(cfg["erp"], "tandem.erp.v1.ErpService", cfg)
    stop, acks = Path(cfg["stop_file"]), open(cfg["acks_file"], "a", buffering=1)
    run, n, errors = cfg["run"], 0, {}
    while not stop.exists():
        n += 1
        email = f"load-{run}-{n}@example.com"
        try:
            c = crm("CreateCustomer", {"customer": {"display_name": f"load {run} {n}", "email": email}}, timeout=5)
            acks.write(json.dumps({"kind": "customer", "id": c["id"], "email": email}) + "\n")
        except grpc.RpcError as e:
            errors[e.code().name] = errors.get(e.code().name, 0) + 1
            acks.write(json.dumps({"kind": "customer-unknown", "email": email, "error": e.code().name}) + "\n")
        try:
            erp("AdjustStock", {"sku": cfg["sku"], "warehouse": cfg["warehouse"], "quantity_delta": 1,
                                "reason": "ADJUSTMENT_REASON_FOUND", "reference": f"load-{run}-{n}"}, timeout=5)
            acks.write(json.dumps({"kind": "stock", "delta": 1}) + "\n")
        except grpc.RpcError as e:
            errors[e.code().name] = errors.get(e.code().name, 0) + 1
            acks.write(json.dumps({"kind": "stock-unknown", "error": e.code().name}) + "\n")
        time.sleep(cfg.get("pause", 0.05))
    out(step="load", attempts=n, errors=errors)
    return 0


def list_all(api, prefix):
    seen, token = [], ""
    while True:
        page = api("ListCustomers", {"page_size": 1000, "page_token": token})
        rows = [c.get("profile", c) for c in page.get("customers", [])]
        seen += [c for c in rows if c.get("email", "").startswith(prefix)]
        token = page.get("next_page_token", "")
        if not token:
            return seen


def count(cfg):
    crm, erp = Api(cfg["crm"], "tandem.crm.v1.CrmService", cfg), Api(cfg["erp"], "tandem.erp.v1.ErpService", cfg)
    rows = [json.loads(line) for line in Path(cfg["acks_file"]).read_text().splitlines() if line.strip()]
    acked = {r["id"]: r["email"] for r in rows if r["kind"] == "customer"}
    unknown = [r for r in rows if r["kind"] == "customer-unknown"]
    stock_acked = sum(r["delta"] for r in rows if r["kind"] == "stock")
    stock_unknown = sum(1 for r in rows if r["kind"] == "stock-unknown")
    prefix = f"load-{cfg['run']}-"
    t0, last = time.time(), ""
    while True:
        try:
            c_rows, e_rows = retry(lambda: list_all(crm, prefix)), retry(lambda: list_all(erp, prefix))
            c_ids = [r["id"] for r in c_rows]
            e_ids = [r["id"] for r in e_rows]
            problems = []
            lost_crm = [i for i in acked if c_ids.count(i) != 1]
            lost_erp = [i for i in acked if e_ids.count(i) != 1]
            dup_email = [e for e in {r["email"] for r in c_rows} if sum(1 for r in c_rows if r["email"] == e) > 1]
            only_crm = sorted(set(c_ids) - set(e_ids))
            only_erp = sorted(set(e_ids) - set(c_ids))
            if lost_crm:
                problems.append(f"{len(lost_crm)} acknowledged customers not exactly once in the CRM: {lost_crm[:3]}")
            if lost_erp:
                problems.append(f"{len(lost_erp)} acknowledged customers not exactly once in the ERP: {lost_erp[:3]}")
            if dup_email:
                problems.append(f"{len(dup_email)} customers created twice in the CRM: {dup_email[:3]}")
            if only_crm or only_erp:
                problems.append(f"{len(only_crm)} load customers only in the CRM, {len(only_erp)} only in the ERP")
            erp_level = retry(lambda: erp("GetStockLevel", {"sku": cfg["sku"], "warehouse": cfg["warehouse"]}))
            avail = [a for a in retry(lambda: crm("GetAvailability", {"skus": [cfg["sku"]]})).get("availability", [])]
            base = cfg["stock_base"]
            on_hand = int(erp_level.get("on_hand", 0))
            if not (base + stock_acked <= on_hand <= base + stock_acked + stock_unknown):
                problems.append(f"ERP on hand {on_hand}, expected {base} + {stock_acked} acknowledged "
                                f"(+ up to {stock_unknown} unacknowledged)")
            crm_avail = int(avail[0].get("available", 0)) if avail else None
            if crm_avail != int(erp_level.get("available", 0)):
                problems.append(f"CRM shows {crm_avail} available, the ERP {erp_level.get('available')}")
            if not problems:
                out(step="count", ok=True, customers_acked=len(acked), customers_unknown=len(unknown),
                    crm=len(c_ids), erp=len(e_ids), stock_changes_acked=stock_acked, stock_unknown=stock_unknown,
                    erp_on_hand=on_hand, crm_available=crm_avail, seconds=round(time.time() - t0, 1))
                return 0
            last = "; ".join(problems)
        except grpc.RpcError as e:
            last = f"{e.code().name}: {e.details()}"
        if time.time() - t0 > cfg["timeout"]:
            out(step="count", ok=False, detail=last, customers_acked=len(acked))
            return 1
        time.sleep(1)


if __name__ == "__main__":
    mode, cfg = sys.argv[1], json.loads(Path(sys.argv[2]).read_text())
    sys.exit({"e2e": e2e, "load": load, "count": count}[mode](cfg))
