package sluice.javaclient;

import static sluice.javaclient.Check.equal;
import static sluice.javaclient.Check.get;
import static sluice.javaclient.Check.ok;
import static sluice.javaclient.Check.require;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Random;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * KafkaProducer with the client's defaults (enable.idempotence=true, acks=all, linger.ms=5, up to
 * 5 requests in flight), once per compression type, into a fresh 3-partition topic; then a
 * KafkaConsumer (assigned, no group) reads every partition from the beginning and must see each
 * record exactly once, at the partition and offset the producer was told, with its key, value,
 * headers and timestamp. Also checks beginning/end offsets and offsetsForTimes (ListOffsets).
 */
final class ProduceConsumeTest {
    /** Records per compression type. */
    static final int RECORDS = 5_000;
    static final int PARTITIONS = 3;
    /** One record this large (incompressible) goes with the small ones: a batch of its own. */
    static final int LARGE_RECORD_BYTES = 300 * 1024;

    private ProduceConsumeTest() {}

    static void run(String bootstrap, List<String> compressions) throws Exception {
        for (String compression : compressions) {
            runOne(bootstrap, compression);
        }
    }

    private static void runOne(String bootstrap, String compression) throws Exception {
        String topic = Check.uniqueName("java-produce-" + compression);
        try (Admin admin = Admin.create(Check.clientProps(bootstrap, "java-produce-admin"))) {
            get(admin.createTopics(List.of(new NewTopic(topic, PARTITIONS, (short) 1))).all(),
                    "createTopics " + topic);
        }
        List<Sent> sent = produce(bootstrap, topic, compression);
        consume(bootstrap, topic, compression, sent);
    }

    /** What the producer sent and what the broker acknowledged for it. */
    record Sent(byte[] key, byte[] value, byte[] header, int partition, long offset, long timestamp) {}

    private static List<Sent> produce(String bootstrap, String topic, String compression) throws Exception {
        Properties props = Check.clientProps(bootstrap, "java-producer-" + compression);
        props.put("key.serializer", ByteArraySerializer.class.getName());
        props.put("value.serializer", ByteArraySerializer.class.getName());
        props.put("compression.type", compression);
        props.put("delivery.timeout.ms", "60000");
        ProducerConfig effective = new ProducerConfig(props);
        // These are the client's defaults; the test checks it did not override them by accident.
        require(effective.getBoolean("enable.idempotence"), "producer: enable.idempotence is not the default true");
        equal("-1", effective.getString("acks"), "producer: acks (the default, all)");

        Random random = new Random(42);
        List<byte[][]> records = new ArrayList<>();
        List<Future<RecordMetadata>> futures = new ArrayList<>();
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
            for (int i = 0; i < RECORDS; i++) {
                byte[] key = ("key-" + (i % 101)).getBytes(StandardCharsets.UTF_8);
                byte[] value = value(i, random);
                if (i == RECORDS / 2) {
                    value = new byte[LARGE_RECORD_BYTES];
                    random.nextBytes(value);
                }
                byte[] header = ByteBuffer.allocate(4).putInt(i).array();
                ProducerRecord<byte[], byte[]> record = new ProducerRecord<>(topic, key, value);
                record.headers().add("i", header);
                records.add(new byte[][] {key, value, header});
                futures.add(producer.send(record));
            }
            producer.flush();
            List<Sent> sent = new ArrayList<>(RECORDS);
            for (int i = 0; i < RECORDS; i++) {
                RecordMetadata m;
                try {
                    m = futures.get(i).get(Check.WAIT_MS, TimeUnit.MILLISECONDS);
                } catch (ExecutionException e) {
                    throw new Check.Failure("produce of record " + i + " (" + compression + ") failed", e.getCause());
                }
                byte[][] r = records.get(i);
                sent.add(new Sent(r[0], r[1], r[2], m.partition(), m.offset(), m.timestamp()));
            }
            checkOffsets(sent, compression);
            return sent;
        }
    }

    /** Text of varying length, compressible like real payloads. */
    private static byte[] value(int i, Random random) {
        StringBuilder s = new StringBuilder("value-").append(i).append('-');
        int words = 5 + random.nextInt(40);
        for (int w = 0; w < words; w++) {
            s.append("word").append(random.nextInt(50)).append(' ');
        }
        return s.toString().getBytes(StandardCharsets.UTF_8);
    }

    /** Per partition, acknowledged offsets are 0, 1, 2, ... in send order (idempotence keeps order). */
    private static void checkOffsets(List<Sent> sent, String compression) {
        long[] next = new long[PARTITIONS];
        for (int i = 0; i < sent.size(); i++) {
            Sent s = sent.get(i);
            require(s.partition >= 0 && s.partition < PARTITIONS, "record %d acknowledged on partition %d", i,
                    s.partition);
            require(s.offset == next[s.partition],
                    "%s: record %d acknowledged at %d-%d, expected offset %d (gap, duplicate or reorder)",
                    compression, i, s.partition, s.offset, next[s.partition]);
            next[s.partition]++;
        }
        ok("produce %d records (%s, idempotent, acks=all): offsets per partition dense in send order: %s",
                sent.size(), compression, Arrays.toString(next));
    }

    private static void consume(String bootstrap, String topic, String compression, List<Sent> sent) {
        Properties props = Check.clientProps(bootstrap, "java-consumer-" + compression);
        props.put("key.deserializer", ByteArrayDeserializer.class.getName());
        props.put("value.deserializer", ByteArrayDeserializer.class.getName());
        props.put("enable.auto.commit", "false");
        props.put("auto.offset.reset", "none");
        Map<TopicPartition, Map<Long, Sent>> expected = new HashMap<>();
        for (Sent s : sent) {
            expected.computeIfAbsent(new TopicPartition(topic, s.partition), k -> new HashMap<>()).put(s.offset, s);
        }
        List<TopicPartition> partitions = new ArrayList<>();
        for (int p = 0; p < PARTITIONS; p++) {
            partitions.add(new TopicPartition(topic, p));
        }
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props)) {
            consumer.assign(partitions);
            Map<TopicPartition, Long> begin = consumer.beginningOffsets(partitions);
            Map<TopicPartition, Long> end = consumer.endOffsets(partitions);
            for (TopicPartition tp : partitions) {
                equal(0L, begin.get(tp), "beginningOffsets " + tp);
                equal((long) expected.getOrDefault(tp, Map.of()).size(), end.get(tp), "endOffsets " + tp);
            }
            consumer.seekToBeginning(partitions);
            Map<TopicPartition, Long> nextOffset = new HashMap<>();
            int received = 0;
            long deadline = System.currentTimeMillis() + Check.WAIT_MS;
            while (received < sent.size()) {
                require(System.currentTimeMillis() < deadline, "%s: consumed %d of %d records within %d ms",
                        compression, received, sent.size(), Check.WAIT_MS);
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(200))) {
                    TopicPartition tp = new TopicPartition(r.topic(), r.partition());
                    long want = nextOffset.getOrDefault(tp, 0L);
                    require(r.offset() == want, "%s: %s returned offset %d, expected %d", compression, tp,
                            r.offset(), want);
                    nextOffset.put(tp, want + 1);
                    Sent s = expected.getOrDefault(tp, Map.of()).get(r.offset());
                    require(s != null, "%s: %s offset %d was never produced", compression, tp, r.offset());
                    checkRecord(r, s, compression);
                    received++;
                }
            }
            // Nothing more than what was produced.
            int extra = consumer.poll(Duration.ofMillis(500)).count();
            equal(0, extra, compression + ": records after the last produced one");
            ok("consume %d records (%s): each once, in offset order, key/value/header/timestamp as sent",
                    received, compression);
            checkOffsetsForTimes(consumer, topic, sent, compression);
        }
    }

    private static void checkRecord(ConsumerRecord<byte[], byte[]> r, Sent s, String compression) {
        String at = compression + ": " + r.topic() + "-" + r.partition() + "@" + r.offset();
        require(Arrays.equals(s.key, r.key()), "%s: key differs", at);
        require(Arrays.equals(s.value, r.value()), "%s: value differs (%d bytes sent, %d received)", at,
                s.value.length, r.value() == null ? -1 : r.value().length);
        Header h = r.headers().lastHeader("i");
        require(h != null && Arrays.equals(s.header, h.value()), "%s: header i differs", at);
        equal(s.timestamp, r.timestamp(), at + ": timestamp");
    }

    /** Probes of offsetsForTimes, spread over the records. */
    static final int TIMESTAMP_PROBES = 20;

    /**
     * ListOffsets by timestamp: the earliest offset whose timestamp is at least the one asked, at
     * several timestamps (most of them inside a batch, not at its first record); and none for a
     * timestamp after every record.
     */
    private static void checkOffsetsForTimes(KafkaConsumer<byte[], byte[]> consumer, String topic, List<Sent> sent,
            String compression) {
        Runnable exact = () -> {
            for (int k = 1; k <= TIMESTAMP_PROBES; k++) {
                Sent probe = sent.get(sent.size() * k / (TIMESTAMP_PROBES + 1));
                TopicPartition tp = new TopicPartition(topic, probe.partition);
                long want = sent.stream()
                        .filter(s -> s.partition == probe.partition && s.timestamp >= probe.timestamp)
                        .mapToLong(Sent::offset)
                        .min()
                        .orElseThrow();
                OffsetAndTimestamp found = consumer.offsetsForTimes(Map.of(tp, probe.timestamp)).get(tp);
                require(found != null, "%s: offsetsForTimes(%d) on %s found nothing", compression,
                        probe.timestamp, tp);
                equal(want, found.offset(), compression + ": offsetsForTimes(" + probe.timestamp + ") on " + tp);
            }
            ok("offsetsForTimes (%s): %d probes, each the first offset at or after its timestamp", compression,
                    TIMESTAMP_PROBES);
        };
        exact.run();
        TopicPartition tp = new TopicPartition(topic, 0);
        OffsetAndTimestamp none = consumer.offsetsForTimes(Map.of(tp, Long.MAX_VALUE / 2)).get(tp);
        require(none == null, "%s: offsetsForTimes(far future) on %s returned %s", compression, tp, none);
        ok("offsetsForTimes (%s): a timestamp after every record finds none", compression);
    }
}
