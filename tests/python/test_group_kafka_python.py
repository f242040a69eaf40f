"""Consumer groups with kafka-python (its own, pure-Python group protocol implementation):
two members split the partitions, commits survive the members, and the admin client's
group APIs (ListGroups, DescribeGroups, OffsetFetch, DeleteGroups) see the group.

Nothing here assumes how long a rebalance takes: the members may join in one generation or
in two (the second member arriving after the first's initial rebalance delay), and a commit
that races a rebalance fails the way Kafka's does (CommitFailedError, RebalanceInProgressError);
the loop polls on and commits again, within one generous bound.

Each member polls on its own thread, as kafka-python expects of a consumer (poll continuously).
Polling two members in turn from one thread made the group rebalance forever, through a
kafka-python 3.0.12 behaviour, not a broker one: a JoinGroup+SyncGroup round trip that
completes while its consumer is not inside poll() is thrown away (`join_group_async` in
`kafka/coordinator/base.py` replaces a finished `_join_task` with a new one), and the member
sends a fresh JoinGroup. A leader's JoinGroup in Stable is, in Kafka's GroupCoordinator as
here, a request to rebalance (the leader uses it to react to topic metadata changes). The
follower then rejoins on its next heartbeat, during its own poll, which completes the join
phase and the leader's SyncGroup while the leader is again outside poll(): a new generation
every heartbeat interval, the leader never receiving its assignment, half the records never
read. One thread per member leaves no such gap."""

import threading
import time
import uuid

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import CommitFailedError, RebalanceInProgressError

TIMEOUT_S = 90
PARTITIONS = 4
RECORDS = 200


def _topic(broker, name):
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=20000)
    try:
        a.create_topics([NewTopic(name, num_partitions=PARTITIONS, replication_factor=1)],
                        timeout_ms=20000)
    finally:
        a.close()
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    for i in range(RECORDS):
        p.send(name, value=f"v{i}".encode(), partition=i % PARTITIONS)
    p.flush(TIMEOUT_S)
    p.close()


def _member(broker, group, topic):
    c = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=group,
                      auto_offset_reset="earliest", enable_auto_commit=False,
                      session_timeout_ms=10000, heartbeat_interval_ms=500,
                      fetch_max_wait_ms=100)
    return c


def _poll_and_commit(c, seen, lock):
    """One poll; records go into `seen`, then their offsets are committed. Returns False when
    the commit lost a race with a rebalance (those records may come again: allowed, since
    they were never committed)."""
    records = c.poll(timeout_ms=100)
    with lock:
        for msgs in records.values():
            for m in msgs:
                seen.add((m.partition, m.offset))
    if not records:
        return True
    try:
        c.commit()
        return True
    except (CommitFailedError, RebalanceInProgressError):
        return False


class _Member(threading.Thread):
    """Polls and commits with one consumer on its own thread until stopped; publishes its
    assignment after each poll. Only this thread touches the consumer until `finish`."""

    def __init__(self, consumer, seen, lock):
        super().__init__(daemon=True)
        self.consumer, self.seen, self.lock = consumer, seen, lock
        self.stopping = threading.Event()
        self.assignment = frozenset()
        self.failed_commits = 0
        self.error = None

    def run(self):
        try:
            while not self.stopping.is_set():
                self.failed_commits += not _poll_and_commit(self.consumer, self.seen, self.lock)
                self.assignment = frozenset(self.consumer.assignment() or ())
        except BaseException as e:  # re-raised on the test's thread by `check`
            self.error = e

    def check(self):
        if self.error is not None:
            raise self.error

    def finish(self):
        """Stops the thread, then closes the consumer (LeaveGroup)."""
        self.stopping.set()
        if self.ident is not None:
            self.join(TIMEOUT_S)
            assert not self.is_alive(), "member thread did not stop"
        self.consumer.close()


def _group_view(admin, group, topic):
    """(state, [(member_id, partitions)], {partition: committed offset}) as the admin sees it."""
    desc = admin.describe_groups([group])[group]
    members = [(m["member_id"],
                sorted(p for t in m["member_assignment"]["assigned_partitions"]
                       if t["topic"] == topic for p in t["partitions"]))
               for m in desc["members"]] if desc["group_state"] == "Stable" else []
    offsets = admin.list_group_offsets({group: None})[group]
    return desc["group_state"], members, {tp.partition: o.offset for tp, o in offsets.items()}


def test_two_members_split_commit_and_admin_view(broker, topic_name):
    _topic(broker, topic_name)
    group = f"kp-{uuid.uuid4().hex[:8]}"
    seen, lock = set(), threading.Lock()
    members = [_Member(_member(broker, group, topic_name), seen, lock) for _ in range(2)]
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=20000)
    everything = {p: RECORDS // PARTITIONS for p in range(PARTITIONS)}
    deadline = time.monotonic() + TIMEOUT_S
    view = None
    try:
        for m in members:
            m.start()
        # Wait until every record was seen, both own partitions, and the broker shows a
        # Stable group of two whose commits reached the end of every partition.
        while True:
            for m in members:
                m.check()
            mine = tuple(m.assignment for m in members)
            with lock:
                count = len(seen)
            if count == RECORDS and all(mine) and not (mine[0] & mine[1]) \
                    and len(mine[0]) + len(mine[1]) == PARTITIONS:
                view = _group_view(admin, group, topic_name)
                if view[0] == "Stable" and len(view[1]) == 2 and view[2] == everything:
                    break
            assert time.monotonic() < deadline, \
                f"saw {count} records; assignments {mine[0]} / {mine[1]}; " \
                f"{sum(m.failed_commits for m in members)} failed commits; admin view {view}"
            time.sleep(0.1)

        state, described, committed = view
        owned = sorted(p for _, ps in described for p in ps)
        assert owned == list(range(PARTITIONS)), described
        assert all(ps for _, ps in described), described
        assert committed == everything
        listed = {g["group_id"]: g for g in admin.list_groups()}
        assert listed[group]["group_type"] == "classic", listed
        # Both members keep polling (heartbeating) until here, so nothing moves the group on.
        assert listed[group]["group_state"] == "Stable", listed
    finally:
        for m in members:
            m.finish()

    # The group is empty now: a new member resumes at the commits, and the group can go.
    c = _member(broker, group, topic_name)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        again = set()
        while len(c.assignment() or ()) < PARTITIONS:
            assert time.monotonic() < deadline, f"lone member assigned {c.assignment()}"
            for msgs in c.poll(timeout_ms=100).values():
                again.update((m.partition, m.offset) for m in msgs)
        for p in range(PARTITIONS):
            tp = TopicPartition(topic_name, p)
            assert c.committed(tp) == RECORDS // PARTITIONS
            assert c.position(tp) == RECORDS // PARTITIONS
        for msgs in c.poll(timeout_ms=500).values():
            again.update((m.partition, m.offset) for m in msgs)
        assert not again, f"records consumed again after commit: {sorted(again)}"
    finally:
        c.close()
    try:
        deadline = time.monotonic() + TIMEOUT_S
        # The last member's LeaveGroup empties the group; deletion then succeeds.
        while (result := admin.delete_groups([group])[group]) != "OK":
            assert time.monotonic() < deadline, f"DeleteGroups: {result}"
            time.sleep(0.5)
        assert group not in {g["group_id"] for g in admin.list_groups()}
    finally:
        admin.close()
