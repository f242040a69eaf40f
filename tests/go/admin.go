package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// retentionMsDefault is Kafka's default retention.ms (7 days), which a deleted override falls back to.
const retentionMsDefault = "604800000"

// runAdmin checks kadm against the broker: Metadata (brokers), CreateTopics (plain, duplicate,
// validate-only), Metadata of topics (list, describe, missing), DescribeConfigs of a topic and
// the broker, IncrementalAlterConfigs (SET, DELETE, validate-only, an invalid value),
// CreatePartitions (grow, shrink), DeleteTopics (and again).
func runAdmin(bootstrap string) {
	cl := newClient(bootstrap, "franz-go-admin")
	defer cl.Close()
	adm := kadm.NewClient(cl)
	adm.SetTimeoutMillis(int32(waitMax.Milliseconds()))

	brokers, err := adm.ListBrokers(ctx())
	noErr(err, "ListBrokers")
	require(len(brokers) == 1, "ListBrokers: expected one broker, got %v", brokers)
	node := brokers[0].NodeID
	ok("ListBrokers: one broker, node %d at %s:%d", node, brokers[0].Host, brokers[0].Port)

	apiVersions(cl)

	topic := uniqueName("franz-admin")
	adminCreate(adm, topic)
	adminDescribe(adm, topic, node)
	adminConfigs(adm, topic, node)
	adminPartitions(adm, topic)
	adminDelete(adm, topic)
}

func adminCreate(adm *kadm.Client, topic string) {
	retention := "3600000"
	created, err := adm.CreateTopic(ctx(), 3, 1, map[string]*string{"retention.ms": &retention}, topic)
	noErr(err, "CreateTopics "+topic)
	noErr(created.Err, "CreateTopics "+topic+" (topic error "+created.ErrMessage+")")
	require(created.NumPartitions == 3, "CreateTopics: %d partitions in the response, want 3", created.NumPartitions)
	require(created.ReplicationFactor == 1, "CreateTopics: replication factor %d in the response, want 1", created.ReplicationFactor)
	require(created.ID != (kadm.TopicID{}), "CreateTopics: zero topic id in the response")
	c, has := created.Configs["retention.ms"]
	require(has && c.Value != nil && *c.Value == retention, "CreateTopics: retention.ms in the response is %v, want %s", c.Value, retention)
	ok("CreateTopics %s: 3 partitions, RF 1, id %s, retention.ms=%s in the response", topic, created.ID, retention)

	again, err := adm.CreateTopics(ctx(), 1, 1, nil, topic)
	noErr(err, "CreateTopics again")
	isErr(again[topic].Err, kerr.TopicAlreadyExists, "CreateTopics of an existing topic")
	ok("CreateTopics of an existing topic: TOPIC_ALREADY_EXISTS")

	validated := topic + "-validate-only"
	dry, err := adm.ValidateCreateTopics(ctx(), 2, 1, nil, validated)
	noErr(err, "CreateTopics validateOnly")
	noErr(dry[validated].Err, "CreateTopics validateOnly (topic error)")
	// Kafka too answers CreateTopics before every broker's metadata has the topic ("it may take
	// several seconds", says its AdminClient): poll, bounded.
	var topics kadm.TopicDetails
	waitFor("Metadata to list "+topic, func() bool {
		var err error
		topics, err = adm.ListTopicsWithInternal(ctx())
		noErr(err, "Metadata (all topics)")
		return topics.Has(topic)
	}, func() string { return fmt.Sprint(topics.Names()) })
	require(!topics.Has(validated), "validateOnly created %s: %v", validated, topics.Names())
	external, err := adm.ListTopics(ctx())
	noErr(err, "Metadata (all topics, internal excluded)")
	require(!external.Has("__consumer_offsets"), "ListTopics (internal excluded) lists __consumer_offsets")
	ok("CreateTopics validateOnly creates nothing; ListTopics lists %s and no internal topic", topic)

	rf3, err := adm.CreateTopics(ctx(), 1, 3, nil, topic+"-rf3")
	noErr(err, "CreateTopics RF 3")
	isErr(rf3[topic+"-rf3"].Err, kerr.InvalidReplicationFactor, "CreateTopics with replication factor 3 on one node")
	ok("CreateTopics with RF 3 on one node: INVALID_REPLICATION_FACTOR")
}

func adminDescribe(adm *kadm.Client, topic string, node int32) {
	topics, err := adm.ListTopics(ctx(), topic)
	noErr(err, "Metadata "+topic)
	detail := topics[topic]
	noErr(detail.Err, "Metadata "+topic+" (topic error)")
	require(!detail.IsInternal, "Metadata: %s is marked internal", topic)
	require(detail.ID != (kadm.TopicID{}), "Metadata: zero topic id")
	require(len(detail.Partitions) == 3, "Metadata: %d partitions, want 3", len(detail.Partitions))
	for _, p := range detail.Partitions.Sorted() {
		noErr(p.Err, "Metadata: partition error")
		require(p.Leader == node, "partition %d: leader %d, want %d", p.Partition, p.Leader, node)
		require(p.LeaderEpoch >= 0, "partition %d: leader epoch %d", p.Partition, p.LeaderEpoch)
		require(slices.Equal(p.Replicas, []int32{node}), "partition %d: replicas %v", p.Partition, p.Replicas)
		require(slices.Equal(p.ISR, []int32{node}), "partition %d: ISR %v", p.Partition, p.ISR)
	}
	ok("Metadata %s: id %s, 3 partitions led by node %d, replicas = ISR = [%d]", topic, detail.ID, node, node)

	missing := topic + "-missing"
	gone, err := adm.ListTopics(ctx(), missing)
	noErr(err, "Metadata of a missing topic")
	isErr(gone[missing].Err, kerr.UnknownTopicOrPartition, "Metadata of a missing topic")
	ok("Metadata of a missing topic: UNKNOWN_TOPIC_OR_PARTITION")
}

func adminConfigs(adm *kadm.Client, topic string, node int32) {
	retention := configOf(adm, topic, "retention.ms")
	require(*retention.Value == "3600000", "DescribeConfigs: retention.ms=%s, want 3600000", *retention.Value)
	require(retention.Source == kmsg.ConfigSourceDynamicTopicConfig, "DescribeConfigs: retention.ms source %v", retention.Source)
	segment := configOf(adm, topic, "segment.bytes")
	require(segment.Source != kmsg.ConfigSourceDynamicTopicConfig, "DescribeConfigs: segment.bytes was not set but its source is %v", segment.Source)
	ok("DescribeConfigs topic: retention.ms=3600000 (%v), segment.bytes=%s (%v)", retention.Source, *segment.Value, segment.Source)

	alter(adm, false, topic, kadm.AlterConfig{Op: kadm.SetConfig, Name: "retention.ms", Value: kadm.StringPtr("7200000")},
		kadm.AlterConfig{Op: kadm.SetConfig, Name: "max.message.bytes", Value: kadm.StringPtr("2097152")})
	require(*configOf(adm, topic, "retention.ms").Value == "7200000", "after SET: retention.ms is not 7200000")
	maxBytes := configOf(adm, topic, "max.message.bytes")
	require(*maxBytes.Value == "2097152" && maxBytes.Source == kmsg.ConfigSourceDynamicTopicConfig,
		"after SET: max.message.bytes=%s (%v), want 2097152 (DYNAMIC_TOPIC_CONFIG)", *maxBytes.Value, maxBytes.Source)
	ok("IncrementalAlterConfigs SET retention.ms=7200000, max.message.bytes=2097152: described back")

	alter(adm, false, topic, kadm.AlterConfig{Op: kadm.DeleteConfig, Name: "retention.ms"})
	reverted := configOf(adm, topic, "retention.ms")
	require(*reverted.Value == retentionMsDefault && reverted.Source != kmsg.ConfigSourceDynamicTopicConfig,
		"after DELETE: retention.ms=%s (%v), want %s and not DYNAMIC_TOPIC_CONFIG", *reverted.Value, reverted.Source, retentionMsDefault)
	require(*configOf(adm, topic, "max.message.bytes").Value == "2097152", "DELETE of retention.ms changed max.message.bytes")
	ok("IncrementalAlterConfigs DELETE retention.ms: back to %s (%v)", *reverted.Value, reverted.Source)

	alter(adm, true, topic, kadm.AlterConfig{Op: kadm.SetConfig, Name: "retention.ms", Value: kadm.StringPtr("1000")})
	require(*configOf(adm, topic, "retention.ms").Value == retentionMsDefault, "a validateOnly SET changed retention.ms")
	ok("IncrementalAlterConfigs validateOnly changes nothing")

	bad, err := adm.AlterTopicConfigs(ctx(), []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "retention.ms", Value: kadm.StringPtr("not-a-number")}}, topic)
	noErr(err, "IncrementalAlterConfigs retention.ms=not-a-number")
	require(len(bad) == 1, "IncrementalAlterConfigs: %d resources in the response", len(bad))
	isErr(bad[0].Err, kerr.InvalidConfig, "IncrementalAlterConfigs retention.ms=not-a-number")
	ok("IncrementalAlterConfigs with an invalid value: INVALID_CONFIG")

	missing, err := adm.DescribeTopicConfigs(ctx(), topic+"-missing")
	if err == nil {
		require(len(missing) == 1, "DescribeConfigs of a missing topic: %d resources", len(missing))
		err = missing[0].Err
	}
	isErr(err, kerr.UnknownTopicOrPartition, "DescribeConfigs of a missing topic")
	ok("DescribeConfigs of a missing topic: UNKNOWN_TOPIC_OR_PARTITION")

	broker, err := adm.DescribeBrokerConfigs(ctx(), node)
	noErr(err, "DescribeConfigs broker")
	require(len(broker) == 1, "DescribeConfigs broker: %d resources", len(broker))
	noErr(broker[0].Err, "DescribeConfigs broker (resource error)")
	var segmentBytes *string
	for _, c := range broker[0].Configs {
		if c.Key == "log.segment.bytes" {
			segmentBytes = c.Value
		}
	}
	require(segmentBytes != nil, "DescribeConfigs broker %d: no log.segment.bytes among %d entries", node, len(broker[0].Configs))
	ok("DescribeConfigs broker %d: %d entries, log.segment.bytes=%s", node, len(broker[0].Configs), *segmentBytes)
}

func adminPartitions(adm *kadm.Client, topic string) {
	grown, err := adm.UpdatePartitions(ctx(), 5, topic)
	noErr(err, "CreatePartitions to 5")
	noErr(grown[topic].Err, "CreatePartitions to 5 (topic error "+grown[topic].ErrMessage+")")
	seen := 0
	waitFor("5 partitions of "+topic, func() bool {
		topics, err := adm.ListTopics(ctx(), topic)
		noErr(err, "Metadata "+topic)
		seen = len(topics[topic].Partitions)
		return seen == 5
	}, func() string { return fmt.Sprintf("%d partitions", seen) })
	ok("CreatePartitions %s to 5: described with 5 partitions", topic)

	shrunk, err := adm.UpdatePartitions(ctx(), 2, topic)
	noErr(err, "CreatePartitions to 2")
	isErr(shrunk[topic].Err, kerr.InvalidPartitions, "CreatePartitions to fewer partitions")
	ok("CreatePartitions to fewer partitions: INVALID_PARTITIONS")
}

func adminDelete(adm *kadm.Client, topic string) {
	deleted, err := adm.DeleteTopic(ctx(), topic)
	noErr(err, "DeleteTopics "+topic)
	noErr(deleted.Err, "DeleteTopics "+topic+" (topic error)")
	var names []string
	waitFor(topic+" to leave ListTopics", func() bool {
		topics, err := adm.ListTopics(ctx())
		noErr(err, "Metadata (all topics)")
		names = topics.Names()
		return !topics.Has(topic)
	}, func() string { return fmt.Sprintf("topics %v", names) })
	again, err := adm.DeleteTopic(ctx(), topic)
	if err == nil {
		err = again.Err
	}
	isErr(err, kerr.UnknownTopicOrPartition, "DeleteTopics of a deleted topic")
	ok("DeleteTopics %s: gone from ListTopics; a second delete: UNKNOWN_TOPIC_OR_PARTITION", topic)
}

// configOf is one config of topic as DescribeConfigs reports it; fails if it is absent.
func configOf(adm *kadm.Client, topic, key string) kadm.Config {
	described, err := adm.DescribeTopicConfigs(ctx(), topic)
	noErr(err, "DescribeConfigs "+topic)
	require(len(described) == 1, "DescribeConfigs %s: %d resources", topic, len(described))
	noErr(described[0].Err, "DescribeConfigs "+topic+" (resource error)")
	for _, c := range described[0].Configs {
		if c.Key == key {
			require(c.Value != nil, "DescribeConfigs %s: %s has no value", topic, key)
			return c
		}
	}
	fail("DescribeConfigs %s: no %s among %d entries", topic, key, len(described[0].Configs))
	return kadm.Config{}
}

func alter(adm *kadm.Client, validateOnly bool, topic string, configs ...kadm.AlterConfig) {
	call := adm.AlterTopicConfigs
	if validateOnly {
		call = adm.ValidateAlterTopicConfigs
	}
	responses, err := call(ctx(), configs, topic)
	noErr(err, "IncrementalAlterConfigs")
	require(len(responses) == 1, "IncrementalAlterConfigs: %d resources in the response", len(responses))
	noErr(responses[0].Err, "IncrementalAlterConfigs (resource error "+responses[0].ErrMessage+")")
}

// apiVersions prints, for every API the broker advertises, the version franz-go will use and
// where the broker's newest version is older than franz-go's: informational, not a check (a
// client negotiates down; what matters is that the checks pass at the negotiated versions).
func apiVersions(cl *kgo.Client) {
	response, err := kmsg.NewPtrApiVersionsRequest().RequestWith(ctx(), cl)
	noErr(err, "ApiVersions")
	noErr(kerr.ErrorForCode(response.ErrorCode), "ApiVersions (error code)")
	var older []string
	for _, key := range response.ApiKeys {
		request := kmsg.RequestForKey(key.ApiKey)
		if request == nil {
			continue
		}
		if key.MaxVersion < request.MaxVersion() {
			older = append(older, fmt.Sprintf("%s v%d (franz-go v%d)", kmsg.NameForKey(key.ApiKey), key.MaxVersion, request.MaxVersion()))
		}
	}
	ok("ApiVersions: %d APIs advertised; newest version older than franz-go's: %s", len(response.ApiKeys), strings.Join(older, ", "))
}
