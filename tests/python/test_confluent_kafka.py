"""confluent-kafka (librdkafka 2.x) against the real broker binary."""

import time

import pytest
from confluent_kafka import (Consumer, KafkaError, KafkaException, Producer, TopicPartition,
                             OFFSET_BEGINNING)
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

TIMEOUT_S = 30


def admin(broker):
    return AdminClient({"bootstrap.servers": broker.bootstrap, "broker.address.family": "v4"})


def create_topic(broker, name, partitions=1, config=None):
    # Keep the AdminClient referenced until the future resolves: a collected client destroys
    # its handle and fails the pending request.
    a = admin(broker)
    futures = a.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=20)
    futures[name].result(TIMEOUT_S)
    wait_for_topic(broker, name, partitions)


def wait_for_topic(broker, name, partitions):
    a = admin(broker)
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        md = a.list_topics(name, timeout=5)
        t = md.topics.get(name)
        if t is not None and t.error is None and len(t.partitions) == partitions and all(
                p.leader >= 0 and p.error is None for p in t.partitions.values()):
            return
        time.sleep(0.05)
    raise AssertionError(f"topic {name} not ready with {partitions} partitions")


def producer(broker, **extra):
    config = {"bootstrap.servers": broker.bootstrap, "broker.address.family": "v4",
              "acks": "all", "linger.ms": 5}
    config.update({k.replace("_", "."): v for k, v in extra.items()})
    return Producer(config)


def produce(p, topic, records):
    """Produces (key, value, timestamp_ms or None, partition) tuples; returns delivered
    (partition, offset) in send order, raising on any delivery error."""
    results = [None] * len(records)

    def report(i):
        def cb(err, msg):
            results[i] = err if err is not None else (msg.partition(), msg.offset())
        return cb

    for i, (key, value, ts, partition) in enumerate(records):
        kwargs = {"key": key, "value": value, "on_delivery": report(i), "partition": partition}
        if ts is not None:
            kwargs["timestamp"] = ts
        p.produce(topic, **kwargs)
        p.poll(0)
    assert p.flush(TIMEOUT_S) == 0, "messages left undelivered"
    for r in results:
        if isinstance(r, KafkaError) or r is None:
            raise KafkaException(r)
    return results


def consume(broker, topic, partition, start, count):
    # confluent-kafka insists on group.id; assign() with explicit offsets uses no group state.
    c = Consumer({"bootstrap.servers": broker.bootstrap, "broker.address.family": "v4",
                  "group.id": f"unused-{topic}", "enable.auto.commit": False,
                  "check.crcs": True, "fetch.wait.max.ms": 100})
    try:
        c.assign([TopicPartition(topic, partition, start)])
        out = []
        deadline = time.monotonic() + TIMEOUT_S
        while len(out) < count and time.monotonic() < deadline:
            msg = c.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            out.append(msg)
        assert len(out) == count, f"consumed {len(out)} of {count} from {topic}-{partition}"
        return out
    finally:
        c.close()


def test_create_produce_consume(broker, topic_name):
    create_topic(broker, topic_name, partitions=3, config={"retention.ms": "3600000"})
    records = [(f"k{i}".encode(), f"v{i}".encode() * (i % 7), None, i % 3) for i in range(300)]
    placed = produce(producer(broker), topic_name, records)
    for partition in range(3):
        expected = [r for r, (p, _) in zip(records, placed) if p == partition]
        got = consume(broker, topic_name, partition, OFFSET_BEGINNING, len(expected))
        assert [m.offset() for m in got] == list(range(len(expected)))
        assert [(m.key(), m.value()) for m in got] == [(k, v) for k, v, _, _ in expected]


def test_offsets_for_times(broker, topic_name):
    create_topic(broker, topic_name)
    base = 1_600_000_000_000
    p = producer(broker, linger_ms=0, max_in_flight_requests_per_connection=1)
    for i in range(10):
        produce(p, topic_name, [(None, b"x", base + 1000 * i, 0)])
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused"})
    try:
        for ts, want in [(base, 0), (base + 4500, 5), (base + 9000, 9), (base + 9001, -1)]:
            [tp] = c.offsets_for_times([TopicPartition(topic_name, 0, ts)], timeout=10)
            assert tp.error is None
            assert tp.offset == want, f"offsets_for_times(base+{ts - base})"
        low, high = c.get_watermark_offsets(TopicPartition(topic_name, 0), timeout=10)
        assert (low, high) == (0, 10)
    finally:
        c.close()


def test_describe_configs(broker, topic_name):
    create_topic(broker, topic_name, config={"retention.ms": "7200000",
                                             "max.message.bytes": "200000"})
    a = admin(broker)
    [future] = a.describe_configs([ConfigResource(ResourceType.TOPIC, topic_name)]).values()
    entries = future.result(TIMEOUT_S)
    assert entries["retention.ms"].value == "7200000"
    assert entries["max.message.bytes"].value == "200000"
    assert entries["cleanup.policy"].value == "delete"


def test_delete_topic(broker, topic_name):
    create_topic(broker, topic_name, partitions=2)
    produce(producer(broker), topic_name, [(b"k", b"v", None, 0)])
    a = admin(broker)
    a.delete_topics([topic_name], operation_timeout=20)[topic_name].result(TIMEOUT_S)
    deadline = time.monotonic() + TIMEOUT_S
    while topic_name in a.list_topics(timeout=5).topics:
        assert time.monotonic() < deadline, "deleted topic still listed"
        time.sleep(0.05)


def test_oversize_message_rejected(broker, topic_name):
    create_topic(broker, topic_name, config={"max.message.bytes": "10000"})
    # The client limit is raised so that the broker, not librdkafka, decides.
    p = producer(broker, message_max_bytes=2_000_000, compression_type="none", retries=0)
    with pytest.raises(KafkaException) as info:
        produce(p, topic_name, [(None, b"x" * 50_000, None, 0)])
    assert info.value.args[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
    # A record that fits gets the first offset.
    assert produce(p, topic_name, [(None, b"y" * 1000, None, 0)]) == [(0, 0)]


def test_idempotent_producer_has_no_duplicates(broker, topic_name):
    create_topic(broker, topic_name, partitions=2)
    p = producer(broker, enable_idempotence=True, linger_ms=2)
    records = [(f"k{i}".encode(), f"idempotent-{i}".encode(), None, i % 2) for i in range(2000)]
    placed = produce(p, topic_name, records)
    for partition in range(2):
        expected = [v for (_, v, _, _), (pp, _) in zip(records, placed) if pp == partition]
        got = consume(broker, topic_name, partition, OFFSET_BEGINNING, len(expected))
        assert [m.value() for m in got] == expected
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused"})
        try:
            low, high = c.get_watermark_offsets(TopicPartition(topic_name, partition), timeout=10)
        finally:
            c.close()
        assert (low, high) == (0, len(expected)), "duplicates or losses in the log"


def test_broker_wide_message_max_bytes(start_broker, topic_name):
    b = start_broker(message_max_bytes="100000")
    create_topic(b, topic_name)
    p = producer(b, message_max_bytes=2_000_000, compression_type="none", retries=0)
    with pytest.raises(KafkaException) as info:
        produce(p, topic_name, [(None, b"x" * 200_000, None, 0)])
    assert info.value.args[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
    assert produce(p, topic_name, [(None, b"y" * 50_000, None, 0)]) == [(0, 0)]


def test_data_survives_clean_restart(start_broker, topic_name):
    b = start_broker()
    create_topic(b, topic_name, partitions=2, config={"retention.ms": "5000000"})
    records = [(None, f"r{i}".encode(), None, i % 2) for i in range(100)]
    produce(producer(b), topic_name, records)
    b.restart()
    wait_for_topic(b, topic_name, 2)
    for partition in range(2):
        got = consume(b, topic_name, partition, OFFSET_BEGINNING, 50)
        assert [m.value() for m in got] == [f"r{i}".encode() for i in range(partition, 100, 2)]
