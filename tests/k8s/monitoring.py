"""Monitoring names only what exists: every metric in the alerts and the dashboard is one the
binaries export (read from the Rust sources: the names in common/src/metrics_names.rs that a
counter!, gauge! or histogram! call records) or a standard Prometheus / kube-state-metrics
series; the dashboard shows every metric the binaries export; every alert is unit-tested
with promtool, firing and quiet."""

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

from rendered import fail, ok

# Series that Prometheus itself or kube-state-metrics provide.
STANDARD = {"up", "kube_deployment_status_replicas_available", "kube_deployment_spec_replicas"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
            "group_left", "group_right", "inf", "nan"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def exported_metrics(root):
    """name -> kind of every metric a binary records."""
    names = dict(re.findall(r'pub const ([A-Z_]+): &str = "([a-z_:]+)";',
                            (Path(root) / "common/src/metrics_names.rs").read_text()))
    exported = {}
    for crate in ("common", "crm-service", "erp-service", "sync-bridge"):
        for source in (Path(root) / crate / "src").rglob("*.rs"):
            for kind, const in re.findall(r"metrics::(counter|gauge|histogram)!\(\s*(?:[a-z_]+::)*([A-Z_]+)",
                                          source.read_text()):
                if const in names:
                    exported[names[const]] = kind
    if len(exported) < 5:
        fail("metrics", f"found only {sorted(exported)} recorded in the Rust sources; has the recording changed?")
    return exported


def series_names(exported):
    out = set(STANDARD)
    for name, kind in exported.items():
        out |= {name + s for s in HISTOGRAM_SUFFIXES} if kind == "histogram" else {name}
    return out


def metric_names(expr):
    """The metric names a PromQL expression selects."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)   # strings
    text = re.sub(r"\{[^}]*\}", " ", text)                                   # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)                                  # ranges, subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for m in re.finditer(r"(?<![0-9.\w])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        if m.group(2) or m.group(1) in KEYWORDS:
            continue
        names.add(m.group(1))
    return names


def dashboard_exprs(dashboard):
    def panels(items):
        for p in items:
            yield p
            yield from panels(p.get("panels", []))
    return [t["expr"] for p in panels(dashboard.get("panels", [])) for t in p.get("targets", []) if "expr" in t]


def check_metric_names(r, root, dashboard_path):
    exported = exported_metrics(root)
    known = series_names(exported)
    rules = r.of_kind("PrometheusRule")
    used = {}
    for o in rules:
        for group in o["spec"]["groups"]:
            for rule in group.get("rules", []):
                used[f"PrometheusRule {o['metadata']['name']} {rule.get('alert') or rule.get('record')}"] = str(rule["expr"])
    dashboard = json.loads(Path(dashboard_path).read_text())
    exprs = dashboard_exprs(dashboard)
    for i, expr in enumerate(exprs):
        used[f"dashboard query {i + 1}"] = expr
    shown = set()
    for where, expr in used.items():
        names = metric_names(expr)
        if not names:
            fail("metrics", f"{where}: no metric found in {expr!r}")
        unknown = names - known
        if unknown:
            fail("metrics", f"{where}: {sorted(unknown)} is exported by no binary (common/src/metrics_names.rs and the "
                 f"counter!/gauge!/histogram! calls) nor a standard series {sorted(STANDARD)}")
        if where.startswith("dashboard"):
            shown |= names
    missing = {n for n in exported if not ({n} | {n + s for s in HISTOGRAM_SUFFIXES}) & shown}
    if missing:
        fail("metrics", f"the dashboard shows no panel for {sorted(missing)}")
    ok("metrics", r.overlay, f"the {sum(1 for w in used if not w.startswith('dashboard'))} alert expressions and "
       f"{len(exprs)} dashboard queries name only the {len(exported)} metrics the binaries record (or standard "
       f"series), and the dashboard shows all {len(exported)}")


def check_alert_tests(r, test_file):
    """promtool: the rules load, and the unit tests pass; every alert has a firing and a quiet test."""
    promtool = shutil.which("promtool")
    if promtool is None:
        fail("alerts", "promtool is not installed (Debian package `prometheus`; tests/k8s/render.sh installs it)")
    groups = [g for o in r.of_kind("PrometheusRule") for g in o["spec"]["groups"]]
    alerts = {rule["alert"] for g in groups for rule in g.get("rules", []) if "alert" in rule}
    tests = yaml.safe_load(Path(test_file).read_text())
    fires, quiet = set(), set()
    for test in tests.get("tests", []):
        for case in test.get("alert_rule_test", []):
            (fires if case.get("exp_alerts") else quiet).add(case["alertname"])
    for alert in sorted(alerts):
        if alert not in fires or alert not in quiet:
            fail("alerts", f"{test_file}: alert {alert} needs a test where it fires and one where it stays quiet "
                 f"(fires: {alert in fires}, quiet: {alert in quiet})")
    unknown = (fires | quiet) - alerts
    if unknown:
        fail("alerts", f"{test_file}: tests name alerts the rules do not have: {sorted(unknown)}")
    with tempfile.TemporaryDirectory() as work:
        rules_file = Path(work) / "rules.yaml"
        rules_file.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
        shutil.copy(test_file, Path(work) / "alerts.test.yaml")
        for args in (["check", "rules", "rules.yaml"], ["test", "rules", "alerts.test.yaml"]):
            run = subprocess.run([promtool, *args], cwd=work, capture_output=True, text=True)
            if run.returncode != 0:
                fail("alerts", f"promtool {' '.join(args)} failed:\n{run.stdout}{run.stderr}")
    ok("alerts", r.overlay, f"promtool loads the {len(alerts)} alerts and their unit tests pass "
       f"(each fires in one test and stays quiet in another)")
