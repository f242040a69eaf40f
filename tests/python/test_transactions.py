"""Transactions with confluent-kafka (a current librdkafka) and kafka-python (its own
implementation) against the real broker: commit, abort, commit again; read_committed sees only
committed records, read_uncommitted all; offsets sent to a transaction are committed with it;
a second producer with the same transactional id fences the first."""

import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition, OFFSET_BEGINNING
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KTopicPartition
from kafka.structs import OffsetAndMetadata

from test_confluent_kafka import create_topic

TIMEOUT_S = 30
OVERRIDES = {
    "transaction_state_log_num_partitions": "4",
    "offsets_topic_num_partitions": "4",
}


@pytest.fixture
def broker(start_broker):
    return start_broker(**OVERRIDES)


def txn_producer(broker, txn_id):
    p = Producer({"bootstrap.servers": broker.bootstrap, "broker.address.family": "v4",
                  "transactional.id": txn_id, "linger.ms": 5})
    p.init_transactions(TIMEOUT_S)
    return p


def read_values(broker, topic, isolation, expect, quiet_s=0.5):
    c = Consumer({"bootstrap.servers": broker.bootstrap, "broker.address.family": "v4",
                  "group.id": f"reader-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
                  "isolation.level": isolation, "fetch.wait.max.ms": 100})
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        out = []
        deadline = time.monotonic() + TIMEOUT_S
        last_new = time.monotonic()
        while time.monotonic() < deadline:
            msg = c.poll(0.1)
            if msg is None:
                if len(out) >= expect and time.monotonic() - last_new >= quiet_s:
                    break
                continue
            if msg.error():
                raise KafkaException(msg.error())
            out.append(msg.value().decode())
            last_new = time.monotonic()
        return out
    finally:
        c.close()


def vals(prefix, n):
    return [f"{prefix}-{i}" for i in range(n)]


def test_confluent_commit_abort_commit(broker, topic_name):
    create_topic(broker, topic_name)
    p = txn_producer(broker, f"py-{topic_name}")
    for prefix, commit in (("c1", True), ("a", False), ("c2", True)):
        p.begin_transaction()
        for v in vals(prefix, 5):
            p.produce(topic_name, v.encode(), partition=0)
        p.flush(TIMEOUT_S)
        if commit:
            p.commit_transaction(TIMEOUT_S)
        else:
            p.abort_transaction(TIMEOUT_S)
    assert read_values(broker, topic_name, "read_committed", 10) == vals("c1", 5) + vals("c2", 5)
    assert read_values(broker, topic_name, "read_uncommitted", 15) == \
        vals("c1", 5) + vals("a", 5) + vals("c2", 5)


def test_confluent_second_producer_fences_the_first(broker, topic_name):
    create_topic(broker, topic_name)
    first = txn_producer(broker, f"py-{topic_name}")
    first.begin_transaction()
    first.produce(topic_name, b"zombie", partition=0)
    first.flush(TIMEOUT_S)
    second = txn_producer(broker, f"py-{topic_name}")
    with pytest.raises(KafkaException) as e:
        first.commit_transaction(TIMEOUT_S)
    assert e.value.args[0].fatal() or e.value.args[0].txn_requires_abort()
    second.begin_transaction()
    second.produce(topic_name, b"live", partition=0)
    second.commit_transaction(TIMEOUT_S)
    assert read_values(broker, topic_name, "read_committed", 1) == ["live"]


def test_kafka_python_transactions_and_offsets(broker, topic_name):
    create_topic(broker, topic_name)
    group = f"g-{topic_name}"
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id=f"kp-{topic_name}",
                      enable_idempotence=True)
    p.init_transactions()
    p.begin_transaction()
    for v in vals("c1", 3):
        p.send(topic_name, v.encode(), partition=0)
    p.send_offsets_to_transaction({KTopicPartition(topic_name, 0): OffsetAndMetadata(3, "", -1)},
                                  group)
    p.commit_transaction()
    p.begin_transaction()
    for v in vals("a", 3):
        p.send(topic_name, v.encode(), partition=0)
    p.send_offsets_to_transaction({KTopicPartition(topic_name, 0): OffsetAndMetadata(99, "", -1)},
                                  group)
    p.abort_transaction()
    p.close()

    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, isolation_level="read_committed",
                      group_id=None, enable_auto_commit=False, consumer_timeout_ms=2000)
    c.assign([KTopicPartition(topic_name, 0)])
    c.seek_to_beginning()
    got = [m.value.decode() for m in c]
    c.close()
    assert got == vals("c1", 3)

    g = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group, enable_auto_commit=False)
    deadline = time.monotonic() + TIMEOUT_S
    committed = None
    while time.monotonic() < deadline:
        committed = g.committed(KTopicPartition(topic_name, 0))
        if committed is not None:
            break
        time.sleep(0.1)
    g.close()
    assert committed == 3, "the committed transaction's offset, not the aborted one's"
