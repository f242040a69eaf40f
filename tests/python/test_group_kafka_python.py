"""Consumer groups with kafka-python (its own, pure-Python group protocol implementation):
two members split the partitions, commits survive the members, and the admin client's
group APIs (ListGroups, DescribeGroups, OffsetFetch, DeleteGroups) see the group."""

import time
import uuid

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

TIMEOUT_S = 60
PARTITIONS = 4


def _topic(broker, name):
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=20000)
    try:
        a.create_topics([NewTopic(name, num_partitions=PARTITIONS, replication_factor=1)],
                        timeout_ms=20000)
    finally:
        a.close()
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    for i in range(200):
        p.send(name, value=f"v{i}".encode(), partition=i % PARTITIONS)
    p.flush(TIMEOUT_S)
    p.close()


def _member(broker, group, topic):
    c = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=group,
                      auto_offset_reset="earliest", enable_auto_commit=False,
                      session_timeout_ms=10000, heartbeat_interval_ms=500,
                      fetch_max_wait_ms=100)
    return c


def test_two_members_split_commit_and_admin_view(broker, topic_name):
    _topic(broker, topic_name)
    group = f"kp-{uuid.uuid4().hex[:8]}"
    a, b = _member(broker, group, topic_name), _member(broker, group, topic_name)
    seen = set()
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while len(seen) < 200 or not (a.assignment() and b.assignment()):
            assert time.monotonic() < deadline, f"saw {len(seen)} records; " \
                f"assignments {a.assignment()} / {b.assignment()}"
            for c in (a, b):
                for tp, msgs in c.poll(timeout_ms=100).items():
                    for m in msgs:
                        seen.add((m.partition, m.offset))
                    c.commit()
        assert len(a.assignment()) + len(b.assignment()) == PARTITIONS
        assert not (a.assignment() & b.assignment())

        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=20000)
        try:
            listed = {g["group_id"]: g for g in admin.list_groups()}
            assert listed[group]["group_state"] == "Stable", listed
            assert listed[group]["group_type"] == "classic"
            desc = admin.describe_groups([group])[group]
            assert desc["group_state"] == "Stable", desc
            assert len(desc["members"]) == 2
            owned = [p for m in desc["members"]
                     for t in m["member_assignment"]["assigned_partitions"] for p in t["partitions"]]
            assert sorted(owned) == list(range(PARTITIONS))
            offsets = admin.list_group_offsets({group: None})[group]
            assert {tp.partition: o.offset for tp, o in offsets.items()} == \
                {p: 200 // PARTITIONS for p in range(PARTITIONS)}
        finally:
            admin.close()
    finally:
        a.close()
        b.close()

    # The group is empty now: a new member resumes at the commits, and the group can go.
    c = _member(broker, group, topic_name)
    try:
        polled = c.poll(timeout_ms=3000)
        assert not any(polled.values()), "records consumed again after commit"
        tp = TopicPartition(topic_name, 0)
        assert c.committed(tp) == 200 // PARTITIONS
    finally:
        c.close()
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=20000)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        # The last member's LeaveGroup empties the group; deletion then succeeds.
        while (result := admin.delete_groups([group])[group]) != "OK":
            assert time.monotonic() < deadline, f"DeleteGroups: {result}"
            time.sleep(0.5)
        assert group not in {g["group_id"] for g in admin.list_groups()}
    finally:
        admin.close()
