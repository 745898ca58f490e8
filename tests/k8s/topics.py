"""Kafka as Strimzi runs it for us: every topic the code uses declared exactly once in the
Kafka cluster's namespace with our durability settings, and each KafkaUser's ACLs exactly
what its process does."""

from rendered import fail, ok

DAY_MS = 86_400_000


def kafka_cluster(r):
    kafkas = r.of_kind("Kafka")
    if len(kafkas) != 1:
        fail("topics", f"{r.overlay}: expected one Kafka, found {len(kafkas)}")
    kafka = kafkas[0]
    annotations = kafka["metadata"].get("annotations", {})
    if annotations.get("strimzi.io/kraft") != "enabled" or annotations.get("strimzi.io/node-pools") != "enabled":
        fail("topics", f"{r.overlay} Kafka {kafka['metadata']['name']}: not in KRaft mode with node pools")
    name, namespace = kafka["metadata"]["name"], kafka["metadata"].get("namespace")
    pools = [p for p in r.of_kind("KafkaNodePool") if p["metadata"].get("labels", {}).get("strimzi.io/cluster") == name
             and p["metadata"].get("namespace") == namespace]
    roles = {role for p in pools for role in p["spec"]["roles"]}
    if roles != {"controller", "broker"}:
        fail("topics", f"{r.overlay} Kafka {name}: its node pools have roles {sorted(roles)}, need controller and broker")
    return name, namespace


def check_topics(r, topics):
    cluster, namespace = kafka_cluster(r)
    prod = r.overlay == "prod"
    declared = {}
    for o in r.of_kind("KafkaTopic"):
        name = o["spec"].get("topicName", o["metadata"]["name"])
        declared.setdefault(name, []).append(o)
    missing = sorted(topics["all"] - set(declared))
    if missing:
        fail("topics", f"{r.overlay}: no KafkaTopic for {missing}")
    extra = sorted(set(declared) - topics["all"])
    if extra:
        fail("topics", f"{r.overlay}: KafkaTopics the code never uses: {extra}")
    for name, objects in declared.items():
        if len(objects) != 1:
            fail("topics", f"{r.overlay}: topic {name} is declared {len(objects)} times")
        o = objects[0]
        where = f"{r.overlay} KafkaTopic {name}"
        if o["metadata"].get("namespace") != namespace:
            fail("topics", f"{where}: in namespace {o['metadata'].get('namespace')}, not the Kafka cluster's ({namespace})")
        if o["metadata"].get("labels", {}).get("strimzi.io/cluster") != cluster:
            fail("topics", f"{where}: not labelled strimzi.io/cluster={cluster}")
        spec, config = o["spec"], o["spec"].get("config", {})
        if prod and (spec.get("replicas") != 3 or config.get("min.insync.replicas") != "2"):
            fail("topics", f"{where}: replicas {spec.get('replicas')}, min.insync.replicas {config.get('min.insync.replicas')}; "
                 "expected 3 and 2")
        if not spec.get("partitions") or "retention.ms" not in config or "cleanup.policy" not in config:
            fail("topics", f"{where}: needs partitions, cleanup.policy and retention.ms")
        compacted = "compact" in config["cleanup.policy"]
        # The bridge must see every event of these: no compaction.
        if compacted and (name == topics["dead_letter"] or name.startswith("integration.") or name == "crm.orders"):
            fail("topics", f"{where}: compacted, but its consumers need every event (see the comment in kafka/topics.yaml)")
        if not compacted and int(config["retention.ms"]) < 0:
            fail("topics", f"{where}: kept forever without compaction")
    state = declared[topics["dead_letter_state"]][0]["spec"]["config"]
    if state.get("cleanup.policy") != "compact":
        fail("topics", f"{r.overlay}: {topics['dead_letter_state']} is not compacted; its readers need the last state "
             "of every dead letter, kept for as long as the dead letter is")
    dead = declared[topics["dead_letter"]][0]["spec"]["config"]
    if int(dead["retention.ms"]) < 30 * DAY_MS:
        fail("topics", f"{r.overlay}: the dead-letter topic keeps {dead['retention.ms']} ms, less than 30 days")
    ok("topics", r.overlay, f"the {len(topics['all'])} topics the code uses are KafkaTopics of {cluster}, once each, "
       f"in namespace {namespace}, with partitions, retention and cleanup policy"
       + ("; replicas 3, min.insync.replicas 2" if prod else "") + "; the dead-letter topic kept 30 days or more; "
       "order commands, integration and dead-letter topics not compacted")


def grants(user):
    """(resource type, name, pattern type, operation) of a KafkaUser's allow rules."""
    out = set()
    for acl in user["spec"].get("authorization", {}).get("acls", []):
        if acl.get("type", "allow") != "allow":
            continue
        res = acl["resource"]
        for op in acl.get("operations") or [acl.get("operation")]:
            out.add((res["type"], res.get("name", ""), res.get("patternType", "literal"), op))
    return out


def check_users(r, topics):
    """Least privilege: exactly what each process does, derived from the code's topic lists."""
    cluster, _ = kafka_cluster(r)
    users = {o["metadata"]["name"]: o for o in r.of_kind("KafkaUser")}
    def topic_rules(names, *ops):
        return {("topic", t, "literal", op) for t in names for op in ops}
    expected = {
        "tandem-crm": topic_rules(topics["crm"], "Write", "Describe"),
        "tandem-erp": topic_rules(topics["erp"], "Write", "Describe"),
        "tandem-sync-bridge": topic_rules(topics["change_events"], "Read", "Describe")
        | {("group", "tandem-sync-bridge", "literal", "Read")}
        | topic_rules({topics["dead_letter"]}, "Write", "Describe"),
        # dlq list/replay/resolve/purge: reads dead letters and their states, writes states,
        # republishes to the change topics and reads them back to settle an interrupted replay.
        "tandem-ops": topic_rules({topics["dead_letter"]}, "Read", "Describe")
        | topic_rules({topics["dead_letter_state"]}, "Read", "Write", "Describe")
        | {("group", "tandemctl", "literal", "Read")}
        | topic_rules(topics["change_events"], "Read", "Write", "Describe"),
        "tandem-integrator": {("topic", "integration.", "prefix", "Write"), ("topic", "integration.", "prefix", "Describe")},
    }
    if set(users) != set(expected):
        fail("kafka-users", f"{r.overlay}: KafkaUsers {sorted(users)}, expected {sorted(expected)}")
    for name, user in users.items():
        if user["metadata"].get("labels", {}).get("strimzi.io/cluster") != cluster:
            fail("kafka-users", f"{r.overlay} KafkaUser {name}: not labelled strimzi.io/cluster={cluster}")
        if user["spec"].get("authentication", {}).get("type") != "scram-sha-512":
            fail("kafka-users", f"{r.overlay} KafkaUser {name}: authentication is not scram-sha-512")
        got = grants(user)
        if got != expected[name]:
            fail("kafka-users", f"{r.overlay} KafkaUser {name}: grants {sorted(got - expected[name])} too many and "
                 f"{sorted(expected[name] - got)} too few")
    ok("kafka-users", r.overlay, "each KafkaUser (SCRAM-SHA-512) is granted exactly its process's topics: services "
       "write their own, the bridge reads every change topic in its group and writes dead letters, tandemctl "
       "reads dead letters, reads and writes their states and the change topics, integrators write integration.* only")
