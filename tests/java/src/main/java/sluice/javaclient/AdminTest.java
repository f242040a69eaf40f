package sluice.javaclient;

import static sluice.javaclient.Check.equal;
import static sluice.javaclient.Check.fails;
import static sluice.javaclient.Check.get;
import static sluice.javaclient.Check.ok;
import static sluice.javaclient.Check.require;
import static sluice.javaclient.Check.waitFor;

import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Set;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.AlterConfigsOptions;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.CreateTopicsOptions;
import org.apache.kafka.clients.admin.CreateTopicsResult;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicCollection;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.Uuid;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.InvalidConfigurationException;
import org.apache.kafka.common.errors.InvalidPartitionsException;
import org.apache.kafka.common.errors.InvalidReplicationFactorException;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;

/**
 * AdminClient against Sluice: DescribeCluster, CreateTopics (plain, duplicate, validate-only,
 * invalid replication factor), ListTopics, DescribeTopics by name and by id, DescribeConfigs of a
 * topic and of the broker, IncrementalAlterConfigs (SET, DELETE, validate-only, an invalid
 * value), CreatePartitions, DeleteTopics.
 */
final class AdminTest {
    /** Kafka's default `retention.ms` (7 days), which a deleted topic override falls back to. */
    private static final String RETENTION_MS_DEFAULT = "604800000";

    private AdminTest() {}

    static void run(String bootstrap) {
        try (Admin admin = Admin.create(Check.clientProps(bootstrap, "java-admin"))) {
            Node node = cluster(admin);
            String topic = Check.uniqueName("java-admin");
            Uuid topicId = create(admin, topic, node);
            describe(admin, topic, topicId, node);
            configs(admin, topic, node);
            partitions(admin, topic);
            delete(admin, topic);
        }
    }

    private static Node cluster(Admin admin) {
        DescribeClusterResult cluster = admin.describeCluster();
        Collection<Node> nodes = get(cluster.nodes(), "describeCluster nodes");
        equal(1, nodes.size(), "describeCluster: number of nodes");
        String clusterId = get(cluster.clusterId(), "describeCluster clusterId");
        require(clusterId != null && !clusterId.isEmpty(), "describeCluster: empty cluster id");
        Node node = nodes.iterator().next();
        ok("describeCluster: one node %s, cluster id %s", node, clusterId);
        return node;
    }

    private static Uuid create(Admin admin, String topic, Node node) {
        NewTopic newTopic = new NewTopic(topic, 3, (short) 1)
                .configs(Map.of("retention.ms", "3600000", "cleanup.policy", "delete"));
        CreateTopicsResult created = admin.createTopics(List.of(newTopic));
        get(created.all(), "createTopics " + topic);
        equal(3, get(created.numPartitions(topic), "createTopics numPartitions"), "createTopics: partitions");
        equal(1, get(created.replicationFactor(topic), "createTopics replicationFactor"),
                "createTopics: replication factor");
        Uuid topicId = get(created.topicId(topic), "createTopics topicId");
        require(topicId != null && !Uuid.ZERO_UUID.equals(topicId), "createTopics: topic id %s", topicId);
        Config returned = get(created.config(topic), "createTopics config");
        ConfigEntry retention = returned.get("retention.ms");
        require(retention != null, "createTopics: the response's configs lack retention.ms: %s", returned);
        equal("3600000", retention.value(), "createTopics: retention.ms in the response");
        ok("createTopics %s: 3 partitions, RF 1, id %s, retention.ms=3600000 in the response", topic, topicId);

        fails(admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all(),
                TopicExistsException.class, "createTopics of an existing topic");
        ok("createTopics of an existing topic: TopicExistsException");

        String validated = topic + "-validate-only";
        get(admin.createTopics(List.of(new NewTopic(validated, 2, (short) 1)),
                new CreateTopicsOptions().validateOnly(true)).all(), "createTopics validateOnly");
        Set<String> names = get(admin.listTopics().names(), "listTopics");
        require(names.contains(topic), "listTopics lacks %s: %s", topic, names);
        require(!names.contains(validated), "validateOnly created %s: %s", validated, names);
        require(!names.contains("__consumer_offsets"),
                "listTopics (internal topics excluded) lists __consumer_offsets: %s", names);
        ok("createTopics validateOnly creates nothing; listTopics lists %s and no internal topic", topic);

        fails(admin.createTopics(List.of(new NewTopic(topic + "-rf3", 1, (short) 3))).all(),
                InvalidReplicationFactorException.class, "createTopics with replication factor 3 on 1 node");
        ok("createTopics with RF 3 on one node: InvalidReplicationFactorException");
        return topicId;
    }

    private static void describe(Admin admin, String topic, Uuid topicId, Node node) {
        TopicDescription byName = get(admin.describeTopics(List.of(topic)).allTopicNames(),
                "describeTopics by name").get(topic);
        require(byName != null, "describeTopics: no description of %s", topic);
        equal(topicId, byName.topicId(), "describeTopics: topic id");
        require(!byName.isInternal(), "describeTopics: %s is marked internal", topic);
        equal(3, byName.partitions().size(), "describeTopics: partitions");
        for (int i = 0; i < 3; i++) {
            TopicPartitionInfo p = byName.partitions().get(i);
            equal(i, p.partition(), "describeTopics: partition index");
            require(p.leader() != null && p.leader().id() == node.id(),
                    "describeTopics: partition %d leader %s, expected node %d", i, p.leader(), node.id());
            equal(List.of(node.id()), p.replicas().stream().map(Node::id).toList(), "replicas of partition " + i);
            equal(List.of(node.id()), p.isr().stream().map(Node::id).toList(), "ISR of partition " + i);
        }
        ok("describeTopics %s: 3 partitions led by node %d, replicas = ISR = [%d]", topic, node.id(), node.id());

        TopicDescription byId = get(admin.describeTopics(TopicCollection.ofTopicIds(List.of(topicId)))
                .allTopicIds(), "describeTopics by id").get(topicId);
        require(byId != null, "describeTopics by id: no description of %s", topicId);
        equal(topic, byId.name(), "describeTopics by id: name");
        ok("describeTopics by id %s: %s", topicId, topic);

        fails(admin.describeTopics(List.of(topic + "-missing")).allTopicNames(),
                UnknownTopicOrPartitionException.class, "describeTopics of a missing topic");
        ok("describeTopics of a missing topic: UnknownTopicOrPartitionException");
    }

    private static void configs(Admin admin, String topic, Node node) {
        ConfigResource resource = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        Config config = describeConfig(admin, resource);
        ConfigEntry retention = entry(config, "retention.ms");
        equal("3600000", retention.value(), "describeConfigs: retention.ms");
        equal(ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, retention.source(), "describeConfigs: retention.ms source");
        ConfigEntry segment = entry(config, "segment.bytes");
        require(segment.source() != ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG,
                "describeConfigs: segment.bytes was not set but its source is %s", segment.source());
        ok("describeConfigs topic: retention.ms=3600000 (DYNAMIC_TOPIC_CONFIG), segment.bytes=%s (%s)",
                segment.value(), segment.source());

        alter(admin, resource, List.of(
                new AlterConfigOp(new ConfigEntry("retention.ms", "7200000"), AlterConfigOp.OpType.SET),
                new AlterConfigOp(new ConfigEntry("max.message.bytes", "2097152"), AlterConfigOp.OpType.SET)));
        config = describeConfig(admin, resource);
        equal("7200000", entry(config, "retention.ms").value(), "after SET: retention.ms");
        equal("2097152", entry(config, "max.message.bytes").value(), "after SET: max.message.bytes");
        equal(ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, entry(config, "max.message.bytes").source(),
                "after SET: max.message.bytes source");
        ok("incrementalAlterConfigs SET retention.ms=7200000, max.message.bytes=2097152: described back");

        alter(admin, resource, List.of(
                new AlterConfigOp(new ConfigEntry("retention.ms", ""), AlterConfigOp.OpType.DELETE)));
        config = describeConfig(admin, resource);
        ConfigEntry reverted = entry(config, "retention.ms");
        equal(RETENTION_MS_DEFAULT, reverted.value(), "after DELETE: retention.ms");
        require(reverted.source() != ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG,
                "after DELETE: retention.ms source is still %s", reverted.source());
        equal("2097152", entry(config, "max.message.bytes").value(), "after DELETE of another key: max.message.bytes");
        ok("incrementalAlterConfigs DELETE retention.ms: back to %s (%s)", reverted.value(), reverted.source());

        get(admin.incrementalAlterConfigs(Map.of(resource, List.of(
                new AlterConfigOp(new ConfigEntry("retention.ms", "1000"), AlterConfigOp.OpType.SET))),
                new AlterConfigsOptions().validateOnly(true)).all(), "incrementalAlterConfigs validateOnly");
        equal(RETENTION_MS_DEFAULT, entry(describeConfig(admin, resource), "retention.ms").value(),
                "after a validateOnly SET: retention.ms");
        ok("incrementalAlterConfigs validateOnly changes nothing");

        fails(admin.incrementalAlterConfigs(Map.of(resource, List.of(
                new AlterConfigOp(new ConfigEntry("retention.ms", "not-a-number"), AlterConfigOp.OpType.SET))))
                .all(), InvalidConfigurationException.class, "incrementalAlterConfigs retention.ms=not-a-number");
        ok("incrementalAlterConfigs with an invalid value: InvalidConfigurationException");

        fails(admin.describeConfigs(List.of(new ConfigResource(ConfigResource.Type.TOPIC, topic + "-missing")))
                .all(), UnknownTopicOrPartitionException.class, "describeConfigs of a missing topic");
        ok("describeConfigs of a missing topic: UnknownTopicOrPartitionException");

        ConfigResource broker = new ConfigResource(ConfigResource.Type.BROKER, Integer.toString(node.id()));
        Config brokerConfig = describeConfig(admin, broker);
        ConfigEntry segmentBytes = entry(brokerConfig, "log.segment.bytes");
        ok("describeConfigs broker %d: %d entries, log.segment.bytes=%s", node.id(),
                brokerConfig.entries().size(), segmentBytes.value());
    }

    private static void partitions(Admin admin, String topic) {
        get(admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(5))).all(), "createPartitions to 5");
        // Metadata reaches every shard after the controller applied it: poll, bounded.
        int[] seen = {0};
        waitFor("5 partitions of " + topic, () -> {
            seen[0] = get(admin.describeTopics(List.of(topic)).allTopicNames(), "describeTopics")
                    .get(topic).partitions().size();
            return seen[0] == 5;
        }, () -> seen[0] + " partitions");
        ok("createPartitions %s to 5: described with 5 partitions", topic);
        fails(admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(2))).all(),
                InvalidPartitionsException.class, "createPartitions to fewer partitions");
        ok("createPartitions to fewer partitions: InvalidPartitionsException");
    }

    private static void delete(Admin admin, String topic) {
        get(admin.deleteTopics(List.of(topic)).all(), "deleteTopics " + topic);
        Set<?>[] names = {Set.of()};
        waitFor(topic + " to leave listTopics", () -> {
            names[0] = get(admin.listTopics().names(), "listTopics");
            return !names[0].contains(topic);
        }, () -> names[0].toString());
        fails(admin.describeTopics(List.of(topic)).allTopicNames(),
                UnknownTopicOrPartitionException.class, "describeTopics of a deleted topic");
        fails(admin.deleteTopics(List.of(topic)).all(),
                UnknownTopicOrPartitionException.class, "deleteTopics of a deleted topic");
        ok("deleteTopics %s: gone from listTopics; describe and a second delete: UnknownTopicOrPartitionException",
                topic);
    }

    private static Config describeConfig(Admin admin, ConfigResource resource) {
        Config config = get(admin.describeConfigs(List.of(resource)).all(), "describeConfigs " + resource)
                .get(resource);
        require(config != null, "describeConfigs: no entry for %s", resource);
        return config;
    }

    private static ConfigEntry entry(Config config, String name) {
        ConfigEntry entry = config.get(name);
        require(entry != null, "describeConfigs: no %s among %d entries", name, config.entries().size());
        return entry;
    }

    private static void alter(Admin admin, ConfigResource resource, List<AlterConfigOp> ops) {
        get(admin.incrementalAlterConfigs(Map.of(resource, ops)).all(), "incrementalAlterConfigs " + ops);
    }
}
