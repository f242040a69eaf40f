"""kafka-python (pure-Python client) against the real broker binary."""

import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.errors import MessageSizeTooLargeError

TIMEOUT_S = 30


def admin(broker):
    return KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=20000)


def create_topic(broker, name, partitions=1, configs=None):
    a = admin(broker)
    try:
        a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1,
                                  topic_configs=configs or {})], timeout_ms=20000)
    finally:
        a.close()
    deadline = time.monotonic() + TIMEOUT_S
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None)
    try:
        while (c.partitions_for_topic(name) or set()) != set(range(partitions)):
            assert time.monotonic() < deadline, f"topic {name} not in metadata"
            time.sleep(0.05)
    finally:
        c.close()


def consumer(broker):
    return KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None,
                         enable_auto_commit=False, check_crcs=True,
                         consumer_timeout_ms=TIMEOUT_S * 1000, fetch_max_wait_ms=100)


def read(broker, topic, partition, start, count):
    c = consumer(broker)
    try:
        tp = TopicPartition(topic, partition)
        c.assign([tp])
        c.seek(tp, start)
        out = []
        for msg in c:
            out.append(msg)
            if len(out) == count:
                break
        assert len(out) == count, f"read {len(out)} of {count} from {topic}-{partition}"
        return out
    finally:
        c.close()


def test_create_produce_consume_with_headers(broker, topic_name):
    create_topic(broker, topic_name, partitions=2, configs={"retention.ms": "3600000"})
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5)
    futures = [p.send(topic_name, key=f"k{i}".encode(), value=f"value-{i}".encode(),
                      partition=i % 2, headers=[("n", str(i).encode()), ("x", b"\x00\xff")])
               for i in range(200)]
    metas = [f.get(timeout=TIMEOUT_S) for f in futures]
    p.close()
    for partition in range(2):
        offsets = [m.offset for m in metas if m.partition == partition]
        assert offsets == list(range(100))
        got = read(broker, topic_name, partition, 0, 100)
        want = [i for i in range(200) if i % 2 == partition]
        assert [m.value for m in got] == [f"value-{i}".encode() for i in want]
        assert [m.key for m in got] == [f"k{i}".encode() for i in want]
        assert [m.headers for m in got] == [[("n", str(i).encode()), ("x", b"\x00\xff")]
                                            for i in want]


def test_offsets_for_times_and_watermarks(broker, topic_name):
    create_topic(broker, topic_name)
    base = 1_650_000_000_000
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=0)
    for i in range(10):
        p.send(topic_name, value=b"t", partition=0, timestamp_ms=base + 100 * i).get(TIMEOUT_S)
    p.close()
    c = consumer(broker)
    try:
        tp = TopicPartition(topic_name, 0)
        found = c.offsets_for_times({tp: base + 350})
        assert found[tp].offset == 4
        assert found[tp].timestamp == base + 400
        assert c.offsets_for_times({tp: base + 10_000})[tp] is None
        assert c.beginning_offsets([tp])[tp] == 0
        assert c.end_offsets([tp])[tp] == 10
    finally:
        c.close()


def test_describe_configs(broker, topic_name):
    create_topic(broker, topic_name, configs={"retention.ms": "123456789"})
    a = admin(broker)
    try:
        result = a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic_name)],
                                    config_filter="all")
    finally:
        a.close()
    configs = result["topic"][topic_name]
    assert configs["retention.ms"]["value"] == "123456789"
    assert "segment.bytes" in configs


def test_delete_topic(broker, topic_name):
    create_topic(broker, topic_name)
    a = admin(broker)
    try:
        a.delete_topics([topic_name], timeout_ms=20000)
        deadline = time.monotonic() + TIMEOUT_S
        while topic_name in a.list_topics():
            assert time.monotonic() < deadline, "deleted topic still listed"
            time.sleep(0.05)
    finally:
        a.close()


def test_oversize_message_rejected_by_broker(broker, topic_name):
    create_topic(broker, topic_name, configs={"max.message.bytes": "10000"})
    # max_request_size raised so kafka-python does not refuse the record itself.
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", retries=0,
                      max_request_size=5_000_000)
    try:
        with pytest.raises(MessageSizeTooLargeError):
            p.send(topic_name, value=b"x" * 50_000, partition=0).get(TIMEOUT_S)
        meta = p.send(topic_name, value=b"y" * 100, partition=0).get(TIMEOUT_S)
        assert meta.offset == 0
    finally:
        p.close()
