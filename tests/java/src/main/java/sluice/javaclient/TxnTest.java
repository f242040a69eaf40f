package sluice.javaclient;

import static sluice.javaclient.Check.equal;
import static sluice.javaclient.Check.get;
import static sluice.javaclient.Check.ok;
import static sluice.javaclient.Check.require;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TransactionDescription;
import org.apache.kafka.clients.admin.TransactionListing;
import org.apache.kafka.clients.consumer.ConsumerGroupMetadata;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * The Java client's transactional producer (kafka-clients 4.1: transactions v2 when the broker
 * finalizes transaction.version=2, as Sluice does: no AddPartitionsToTxn or AddOffsetsToTxn from
 * the client, an epoch bump at every commit or abort). Commit, abort, commit, each with
 * sendOffsetsToTransaction; read_committed sees only the committed records and read_uncommitted
 * all; the group's committed offset is the last committed transaction's; Admin's
 * listTransactions/describeTransactions see the id; a second producer with the same
 * transactional id fences the first.
 */
final class TxnTest {
    private TxnTest() {}

    static void run(String bootstrap) throws Exception {
        String topic = Check.uniqueName("java-txn");
        String group = topic + "-group";
        String txnId = topic + "-id";
        TopicPartition tp = new TopicPartition(topic, 0);
        try (Admin admin = Admin.create(Check.clientProps(bootstrap, "java-txn-admin"))) {
            get(admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all(), "createTopics");
            Check.waitFor("the topic's leader", () -> {
                try {
                    return admin.describeTopics(List.of(topic)).allTopicNames().get()
                            .get(topic).partitions().get(0).leader() != null;
                } catch (Exception e) {
                    return false;
                }
            }, () -> topic);

            KafkaProducer<byte[], byte[]> producer = producer(bootstrap, txnId);
            producer.initTransactions();
            ConsumerGroupMetadata meta = new ConsumerGroupMetadata(group);
            long offset = 0;
            String[][] plan = {{"c1", "commit"}, {"a", "abort"}, {"c2", "commit"}};
            for (String[] step : plan) {
                producer.beginTransaction();
                for (int i = 0; i < 4; i++) {
                    producer.send(new ProducerRecord<>(topic, 0, null, bytes(step[0] + "-" + i)));
                }
                offset += 4;
                // Sent before the abort (an abort drops what is still queued in the client).
                producer.flush();
                producer.sendOffsetsToTransaction(Map.of(tp, new OffsetAndMetadata(offset)), meta);
                if (step[1].equals("commit")) {
                    producer.commitTransaction();
                } else {
                    producer.abortTransaction();
                }
                ok("%s transaction %s", step[1], step[0]);
            }
            List<String> committed = read(bootstrap, topic, "read_committed", 8);
            equal(List.of("c1-0", "c1-1", "c1-2", "c1-3", "c2-0", "c2-1", "c2-2", "c2-3"),
                    committed, "read_committed values");
            ok("read_committed sees only the committed transactions");
            List<String> all = read(bootstrap, topic, "read_uncommitted", 12);
            equal(12, all.size(), "read_uncommitted record count");
            ok("read_uncommitted sees all 12 records");
            Map<TopicPartition, OffsetAndMetadata> offsets =
                    get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata(),
                            "listConsumerGroupOffsets");
            equal(12L, offsets.get(tp) == null ? null : offsets.get(tp).offset(), "committed offset");
            ok("the group's offset is the last committed transaction's");

            boolean listed = false;
            for (TransactionListing l : get(admin.listTransactions().all(), "listTransactions")) {
                listed |= l.transactionalId().equals(txnId);
            }
            require(listed, "listTransactions does not list %s", txnId);
            TransactionDescription d =
                    get(admin.describeTransactions(List.of(txnId)).description(txnId), "describeTransactions");
            require(d.state().toString().toLowerCase().startsWith("complete"), "state %s", d.state());
            ok("listTransactions and describeTransactions: %s %s", txnId, d.state());

            // A second instance fences the first.
            producer.beginTransaction();
            producer.send(new ProducerRecord<>(topic, 0, null, bytes("zombie")));
            producer.flush();
            KafkaProducer<byte[], byte[]> second = producer(bootstrap, txnId);
            second.initTransactions();
            try {
                producer.commitTransaction();
                throw new Check.Failure("the fenced producer committed");
            } catch (ProducerFencedException | org.apache.kafka.common.errors.InvalidProducerEpochException e) {
                ok("the first instance is fenced: %s", e.getClass().getSimpleName());
            } catch (KafkaException e) {
                require(e.getCause() instanceof ProducerFencedException, "fenced with %s", Main.describe(e));
                ok("the first instance is fenced: %s", Main.describe(e));
            }
            producer.close(Duration.ofSeconds(5));
            second.beginTransaction();
            second.send(new ProducerRecord<>(topic, 0, null, bytes("live")));
            second.commitTransaction();
            second.close(Duration.ofSeconds(10));
            List<String> after = read(bootstrap, topic, "read_committed", 9);
            equal("live", after.get(after.size() - 1), "last committed value");
            require(!after.contains("zombie"), "the zombie's record is visible: %s", after);
            ok("the zombie's record is aborted, the new instance's committed");
        }
    }

    private static KafkaProducer<byte[], byte[]> producer(String bootstrap, String txnId) {
        Properties p = Check.clientProps(bootstrap, "java-txn-producer");
        p.put("transactional.id", txnId);
        p.put("max.block.ms", "60000");
        return new KafkaProducer<>(p, new ByteArraySerializer(), new ByteArraySerializer());
    }

    private static List<String> read(String bootstrap, String topic, String isolation, int expect) {
        Properties p = Check.clientProps(bootstrap, "java-txn-reader");
        p.put("isolation.level", isolation);
        p.put("enable.auto.commit", "false");
        List<String> out = new ArrayList<>();
        try (KafkaConsumer<byte[], byte[]> c =
                new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            TopicPartition tp = new TopicPartition(topic, 0);
            c.assign(List.of(tp));
            c.seekToBeginning(List.of(tp));
            long deadline = System.currentTimeMillis() + Check.WAIT_MS;
            long quietSince = System.currentTimeMillis();
            while (System.currentTimeMillis() < deadline) {
                var records = c.poll(Duration.ofMillis(200));
                for (ConsumerRecord<byte[], byte[]> r : records) {
                    out.add(new String(r.value(), StandardCharsets.UTF_8));
                    quietSince = System.currentTimeMillis();
                }
                if (out.size() >= expect && System.currentTimeMillis() - quietSince > 1000) {
                    break;
                }
            }
        }
        return out;
    }

    private static byte[] bytes(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }
}
