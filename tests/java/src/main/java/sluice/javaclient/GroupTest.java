package sluice.javaclient;

import static sluice.javaclient.Check.equal;
import static sluice.javaclient.Check.get;
import static sluice.javaclient.Check.ok;
import static sluice.javaclient.Check.require;
import static sluice.javaclient.Check.waitFor;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.GroupType;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * KafkaConsumer group membership with the classic protocol (JoinGroup/SyncGroup/Heartbeat) or
 * KIP-848's (`group.protocol=consumer`, ConsumerGroupHeartbeat), on a 4-partition topic:
 *
 * <ol>
 *   <li>member A alone consumes the first stage of records and commits after every poll;
 *   <li>member B joins: a rebalance splits the partitions between A and B (disjoint, covering all),
 *       AdminClient describes a stable group of two, and both consume the second stage;
 *   <li>A leaves (close): B takes over every partition and consumes the third stage;
 *   <li>B stops; the committed offsets (listConsumerGroupOffsets) equal the end offsets;
 *   <li>a restarted consumer C resumes there: its first record of each partition is at the
 *       committed offset, and it consumes the fourth stage.
 * </ol>
 *
 * Over all stages every produced offset is consumed (no gap) and duplicates stay within the
 * bound below (each member commits in onPartitionsRevoked, so Kafka's semantics give none).
 */
final class GroupTest {
    static final int PARTITIONS = 4;
    /** Records produced before each stage. */
    static final int RECORDS_PER_STAGE = 1_000;
    /** Records a member's poll returns at most; duplicates are bounded by one poll per member. */
    static final int MAX_POLL_RECORDS = 50;
    static final int DUPLICATES_MAX = 3 * MAX_POLL_RECORDS;

    private GroupTest() {}

    static void run(String bootstrap, String protocol) throws Exception {
        require(protocol.equals("classic") || protocol.equals("consumer"),
                "group protocol must be classic or consumer, not %s", protocol);
        String topic = Check.uniqueName("java-group-" + protocol);
        String group = Check.uniqueName("java-group-" + protocol);
        try (Admin admin = Admin.create(Check.clientProps(bootstrap, "java-group-admin"));
                KafkaProducer<String, String> producer = producer(bootstrap)) {
            get(admin.createTopics(List.of(new NewTopic(topic, PARTITIONS, (short) 1))).all(),
                    "createTopics " + topic);
            Ledger ledger = new Ledger();
            Map<TopicPartition, Long> end = new HashMap<>();

            produceStage(producer, topic, 1, end);
            GroupMember a = GroupMember.start(bootstrap, protocol, group, topic, "A", ledger);
            waitConsumed(ledger, end, a);
            equal(PARTITIONS, a.assignment().size(), "member A alone: partitions assigned");
            ok("%s: member A alone got all %d partitions and consumed stage 1", protocol, PARTITIONS);

            GroupMember b = GroupMember.start(bootstrap, protocol, group, topic, "B", ledger);
            waitFor("A and B to split the partitions", () -> split(a, b), () -> a + " " + b);
            ok("%s: rebalance after B joined: A %s, B %s", protocol, a.assignment(), b.assignment());
            describeStable(admin, group, protocol, 2);
            produceStage(producer, topic, 2, end);
            waitConsumed(ledger, end, a, b);
            require(a.consumedInStage(2) > 0 && b.consumedInStage(2) > 0,
                    "stage 2: both members should consume: A %d, B %d", a.consumedInStage(2), b.consumedInStage(2));
            ok("%s: stage 2 consumed by both: A %d, B %d records", protocol, a.consumedInStage(2),
                    b.consumedInStage(2));

            a.stop();
            waitFor("B to take over every partition", () -> b.assignment().size() == PARTITIONS, b::toString);
            produceStage(producer, topic, 3, end);
            waitConsumed(ledger, end, b);
            ok("%s: A left; B took over %s and consumed stage 3", protocol, b.assignment());

            b.stop();
            Map<TopicPartition, Long> committed = committed(admin, group);
            equal(end, committed, "committed offsets after every member stopped (end offsets)");
            ok("%s: committed offsets equal the end offsets: %s", protocol, new TreeMap<>(byPartition(committed)));

            produceStage(producer, topic, 4, end);
            GroupMember c = GroupMember.start(bootstrap, protocol, group, topic, "C", ledger);
            waitConsumed(ledger, end, c);
            Map<Integer, Long> first = c.firstOffsets();
            equal(byPartition(committed), first, "restarted member C: first offset per partition (committed offsets)");
            c.stop();
            ok("%s: restarted member C resumed at the committed offsets %s", protocol, new TreeMap<>(first));

            ledger.checkNoGap(end);
            require(ledger.duplicates() <= DUPLICATES_MAX, "%d records consumed twice (bound %d)",
                    ledger.duplicates(), DUPLICATES_MAX);
            equal(end, committed(admin, group), "committed offsets after C stopped");
            ok("%s: %d records, every offset consumed, %d duplicates (bound %d)", protocol,
                    4 * RECORDS_PER_STAGE, ledger.duplicates(), DUPLICATES_MAX);
        }
    }

    private static KafkaProducer<String, String> producer(String bootstrap) {
        Properties p = Check.clientProps(bootstrap, "java-group-producer");
        p.put("key.serializer", StringSerializer.class.getName());
        p.put("value.serializer", StringSerializer.class.getName());
        return new KafkaProducer<>(p);
    }

    /** Produces one stage, round-robin over the partitions, and advances end to the acked offsets. */
    private static void produceStage(KafkaProducer<String, String> producer, String topic, int stage,
            Map<TopicPartition, Long> end) throws Exception {
        List<java.util.concurrent.Future<org.apache.kafka.clients.producer.RecordMetadata>> acks = new ArrayList<>();
        for (int i = 0; i < RECORDS_PER_STAGE; i++) {
            String value = "stage-" + stage + "-" + i;
            acks.add(producer.send(new ProducerRecord<>(topic, i % PARTITIONS, Integer.toString(i), value)));
        }
        producer.flush();
        for (var ack : acks) {
            var m = ack.get(Check.WAIT_MS, TimeUnit.MILLISECONDS);
            TopicPartition tp = new TopicPartition(m.topic(), m.partition());
            end.merge(tp, m.offset() + 1, Math::max);
        }
    }

    /** Waits until the ledger has consumed every offset below end; names the members on failure. */
    private static void waitConsumed(Ledger ledger, Map<TopicPartition, Long> end, GroupMember... members) {
        waitFor("every produced record to be consumed", () -> {
            for (GroupMember m : members) {
                m.rethrow();
            }
            return ledger.coversAll(end);
        }, () -> ledger.missingSummary(end) + " members: " + List.of(members));
    }

    private static boolean split(GroupMember a, GroupMember b) {
        a.rethrow();
        b.rethrow();
        Set<TopicPartition> pa = a.assignment();
        Set<TopicPartition> pb = b.assignment();
        Set<TopicPartition> union = new HashSet<>(pa);
        union.addAll(pb);
        return !pa.isEmpty() && !pb.isEmpty() && union.size() == PARTITIONS && pa.size() + pb.size() == PARTITIONS;
    }

    private static void describeStable(Admin admin, String group, String protocol, int members) {
        ConsumerGroupDescription[] last = {null};
        waitFor("describeConsumerGroups: stable with " + members + " members", () -> {
            last[0] = get(admin.describeConsumerGroups(List.of(group)).all(), "describeConsumerGroups").get(group);
            return last[0].groupState() == GroupState.STABLE && last[0].members().size() == members;
        }, () -> String.valueOf(last[0]));
        GroupType type = protocol.equals("consumer") ? GroupType.CONSUMER : GroupType.CLASSIC;
        equal(type, last[0].type(), "describeConsumerGroups: group type");
        int assigned = last[0].members().stream().mapToInt(m -> m.assignment().topicPartitions().size()).sum();
        equal(PARTITIONS, assigned, "describeConsumerGroups: partitions assigned over all members");
        ok("%s: describeConsumerGroups: %s, type %s, %d members, %d partitions assigned", protocol,
                last[0].groupState(), last[0].type(), members, assigned);
    }

    private static Map<TopicPartition, Long> committed(Admin admin, String group) {
        Map<TopicPartition, OffsetAndMetadata> offsets =
                get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata(), "listConsumerGroupOffsets");
        Map<TopicPartition, Long> out = new HashMap<>();
        offsets.forEach((tp, om) -> {
            if (om != null) {
                out.put(tp, om.offset());
            }
        });
        return out;
    }

    static Map<Integer, Long> byPartition(Map<TopicPartition, Long> offsets) {
        Map<Integer, Long> out = new HashMap<>();
        offsets.forEach((tp, o) -> out.put(tp.partition(), o));
        return out;
    }

    /** Values are "stage-S-I"; the stage a record belongs to. */
    static int stageOf(String value) {
        String[] parts = value.split("-");
        require(parts.length == 3 && parts[0].equals("stage"), "unexpected value %s", value);
        return Integer.parseInt(parts[1]);
    }
}
