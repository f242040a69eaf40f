package sluice.javaclient;

import java.time.Duration;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicIntegerArray;

import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;

/**
 * One consumer of a group on its own thread (a KafkaConsumer is single-threaded): polls, records
 * what it got in the ledger, commits synchronously after every non-empty poll and when
 * partitions are revoked, and publishes its assignment for the test thread to watch.
 */
final class GroupMember {
    private final String name;
    private final Ledger ledger;
    private final Thread thread;
    private volatile Set<TopicPartition> assignment = Set.of();
    private volatile boolean stopping;
    private volatile Throwable error;
    private final Map<Integer, Long> firstOffsets = new ConcurrentHashMap<>();
    private final AtomicIntegerArray perStage = new AtomicIntegerArray(8);
    private volatile int revocations;

    private GroupMember(String name, Ledger ledger, Runnable body) {
        this.name = name;
        this.ledger = ledger;
        this.thread = new Thread(body, "member-" + name);
    }

    static GroupMember start(String bootstrap, String protocol, String group, String topic, String name,
            Ledger ledger) {
        GroupMember[] self = {null};
        GroupMember member = new GroupMember(name, ledger, () -> self[0].loop(bootstrap, protocol, group, topic));
        self[0] = member;
        member.thread.setDaemon(true);
        member.thread.start();
        return member;
    }

    Set<TopicPartition> assignment() {
        return assignment;
    }

    int consumedInStage(int stage) {
        return perStage.get(stage);
    }

    /** First offset this member consumed, per partition. */
    Map<Integer, Long> firstOffsets() {
        return new TreeMap<>(firstOffsets);
    }

    /** Throws the member thread's failure, if it had one, on the calling thread. */
    void rethrow() {
        Throwable e = error;
        if (e != null) {
            throw new Check.Failure("member " + name + " failed: " + Main.describe(e), e);
        }
    }

    /** Commits, leaves the group (close) and joins the thread, bounded. */
    void stop() throws InterruptedException {
        stopping = true;
        thread.join(Check.WAIT_MS);
        Check.require(!thread.isAlive(), "member %s did not close within %d ms", name, Check.WAIT_MS);
        rethrow();
    }

    @Override
    public String toString() {
        return name + "{assigned=" + assignment.stream().map(TopicPartition::partition).sorted().toList()
                + ", revocations=" + revocations + ", first offsets=" + firstOffsets()
                + (error != null ? ", error=" + Main.describe(error) : "") + "}";
    }

    private void loop(String bootstrap, String protocol, String group, String topic) {
        Properties p = Check.clientProps(bootstrap, "java-member-" + name);
        p.put("group.id", group);
        p.put("group.protocol", protocol);
        p.put("enable.auto.commit", "false");
        p.put("auto.offset.reset", "earliest");
        p.put("max.poll.records", Integer.toString(GroupTest.MAX_POLL_RECORDS));
        p.put("key.deserializer", StringDeserializer.class.getName());
        p.put("value.deserializer", StringDeserializer.class.getName());
        KafkaConsumer<String, String> consumer = null;
        try {
            consumer = new KafkaConsumer<>(p);
            subscribeAndPoll(consumer, topic);
        } catch (Throwable e) {
            error = e;
        } finally {
            if (consumer != null) {
                try {
                    // Leaves the group, so the others rebalance now rather than after a timeout.
                    consumer.close(Duration.ofMillis(Check.WAIT_MS));
                } catch (Throwable e) {
                    if (error == null) {
                        error = e;
                    }
                }
            }
        }
    }

    private void subscribeAndPoll(KafkaConsumer<String, String> consumer, String topic) {
        {
            consumer.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                @Override
                public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
                    revocations++;
                    // What was consumed is committed before the partitions move on: no duplicates.
                    consumer.commitSync();
                    assignment = Set.copyOf(consumer.assignment());
                }

                @Override
                public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
                    assignment = Set.copyOf(consumer.assignment());
                }
            });
            while (!stopping) {
                ConsumerRecords<String, String> records = consumer.poll(Duration.ofMillis(100));
                for (ConsumerRecord<String, String> r : records) {
                    ledger.record(new TopicPartition(r.topic(), r.partition()), r.offset());
                    firstOffsets.putIfAbsent(r.partition(), r.offset());
                    perStage.incrementAndGet(GroupTest.stageOf(r.value()));
                }
                if (!records.isEmpty()) {
                    consumer.commitSync();
                }
                assignment = Set.copyOf(consumer.assignment());
            }
            consumer.commitSync();
        }
    }
}
