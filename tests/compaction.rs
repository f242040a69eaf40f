//! Log compaction (issue 14) against the real broker binary: the topic configs with Kafka's
//! names, KIP-467 record errors for keyless records on compacted topics (librdkafka's test 0011
//! `produce_batch`, reproduced with the rdkafka crate), and the cleaner as a consumer sees it.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    ApiKey, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

use common::{unique_topic, wire, Broker, BrokerOpts};

/// Kafka's `AlterConfigOp.OpType`.
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// IncrementalAlterConfigs (v1) of one topic key over a plain socket (the rdkafka crate has no
/// binding for it); returns the resource's error code.
fn alter_topic_config(broker: &Broker, topic: &str, key: &str, op: i8, value: &str) -> i16 {
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(topic.to_string()))
            .with_configs(vec![AlterableConfig::default()
                .with_name(StrBytes::from_string(key.to_string()))
                .with_config_operation(op)
                .with_value(Some(StrBytes::from_string(value.to_string())))]),
    ]);
    let resp: IncrementalAlterConfigsResponse =
        wire::call(broker.bootstrap(), ApiKey::IncrementalAlterConfigs, 1, &req)
            .unwrap_or_else(|e| panic!("IncrementalAlterConfigs: {e}\n{}", broker.stderr_tail()));
    resp.responses[0].error_code
}

/// Sends every record, then awaits all deliveries; returns each record's outcome in send order.
async fn deliveries(
    producer: &FutureProducer,
    records: Vec<FutureRecord<'_, [u8], [u8]>>,
) -> Vec<Result<i64, RDKafkaErrorCode>> {
    let futures: Vec<DeliveryFuture> = records
        .into_iter()
        .map(|r| {
            producer
                .send_result(r)
                .map_err(|(e, _)| e)
                .expect("enqueue")
        })
        .collect();
    let mut out = Vec::new();
    for f in futures {
        out.push(match f.await.expect("delivery future cancelled") {
            Ok(delivery) => Ok(delivery.offset),
            Err((KafkaError::MessageProduction(code), _)) => Err(code),
            Err((e, _)) => panic!("unexpected delivery error {e}"),
        });
    }
    out
}

/// librdkafka's 0011 `test_message_single_partition_record_fail`: the policy is APPENDed
/// (`delete` → `delete,compact`), 100 records of which every tenth has no key are produced;
/// in one batch the keyless ones fail with INVALID_RECORD and the others with
/// _INVALID_DIFFERENT_RECORD; one record per batch, only the keyless ones fail. Then SUBTRACT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_records_on_a_compacted_topic_fail_alone_with_record_errors() {
    let broker = Broker::start_with(BrokerOpts {
        cores: 1,
        ..BrokerOpts::default()
    });
    for variation in 0..2 {
        let topic = unique_topic("record-fail");
        broker.create_topic(&topic, 1, &[]).await;
        assert_eq!(
            alter_topic_config(&broker, &topic, "cleanup.policy", OP_APPEND, "compact"),
            0
        );
        let configs = broker.topic_configs(&topic).await;
        assert_eq!(configs["cleanup.policy"].as_deref(), Some("delete,compact"));
        let extra: &[(&str, &str)] = if variation == 1 {
            &[("batch.size", "1")]
        } else {
            &[("linger.ms", "200")]
        };
        let producer = broker.producer(extra);
        let messages: Vec<(Option<String>, String)> = (0..100)
            .map(|i| {
                let m = format!("test message #{i}");
                (if i % 10 == 0 { None } else { Some(m.clone()) }, m)
            })
            .collect();
        let records = messages
            .iter()
            .map(|(k, v)| {
                let r = FutureRecord::to(&topic).partition(0).payload(v.as_bytes());
                match k {
                    Some(k) => r.key(k.as_bytes()),
                    None => r,
                }
            })
            .collect();
        let outcomes = deliveries(&producer, records).await;
        let count = |want: &dyn Fn(&Result<i64, RDKafkaErrorCode>) -> bool| {
            outcomes.iter().filter(|o| want(o)).count()
        };
        let invalid = count(&|o| *o == Err(RDKafkaErrorCode::InvalidRecord));
        let different = count(&|o| *o == Err(RDKafkaErrorCode::InvalidDifferentRecord));
        let ok = count(&|o| o.is_ok());
        assert_eq!(invalid, 10, "variation {variation}: {outcomes:?}");
        for (i, o) in outcomes.iter().enumerate() {
            if i % 10 == 0 {
                assert_eq!(*o, Err(RDKafkaErrorCode::InvalidRecord), "record {i}");
            }
        }
        if variation == 0 {
            assert_eq!((different, ok), (90, 0), "{outcomes:?}");
        } else {
            assert_eq!((different, ok), (0, 90), "{outcomes:?}");
            let records = broker.read_partition(&topic, 0);
            assert_eq!(records.len(), 90);
            assert!(records.iter().all(|r| r.key.is_some()));
        }
        assert_eq!(
            alter_topic_config(&broker, &topic, "cleanup.policy", OP_SUBTRACT, "compact"),
            0
        );
        let configs = broker.topic_configs(&topic).await;
        assert_eq!(configs["cleanup.policy"].as_deref(), Some("delete"));
        // Back to delete only: keyless records are accepted again.
        let outcomes = deliveries(
            &producer,
            vec![FutureRecord::to(&topic)
                .partition(0)
                .payload(&b"no key"[..])],
        )
        .await;
        assert!(outcomes[0].is_ok(), "{outcomes:?}");
    }
}

/// Every compaction key is accepted with Kafka's names at creation and described back; bad
/// values and min.compaction.lag.ms > max.compaction.lag.ms are INVALID_CONFIG.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_configs_are_accepted_with_kafka_names() {
    let broker = Broker::start_with(BrokerOpts {
        cores: 1,
        ..BrokerOpts::default()
    });
    let topic = unique_topic("compact-configs");
    let set = [
        ("cleanup.policy", "compact"),
        ("min.cleanable.dirty.ratio", "0.01"),
        ("min.compaction.lag.ms", "10"),
        ("max.compaction.lag.ms", "60000"),
        ("delete.retention.ms", "100"),
    ];
    broker.create_topic(&topic, 1, &set).await;
    let configs: HashMap<String, Option<String>> = broker.topic_configs(&topic).await;
    for (k, v) in set {
        assert_eq!(configs[k].as_deref(), Some(v), "{k}");
    }
    use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    for bad in [
        [("cleanup.policy", "compacted"), ("segment.ms", "1000")],
        [("min.cleanable.dirty.ratio", "2"), ("segment.ms", "1000")],
        [
            ("min.compaction.lag.ms", "5000"),
            ("max.compaction.lag.ms", "1000"),
        ],
    ] {
        let name = unique_topic("bad-compact");
        let mut t = NewTopic::new(&name, 1, TopicReplication::Fixed(1));
        for (k, v) in bad {
            t = t.set(k, v);
        }
        let result = broker
            .admin()
            .create_topics([&t], &options)
            .await
            .expect("CreateTopics");
        assert!(
            matches!(result[0], Err((_, RDKafkaErrorCode::InvalidConfig))),
            "{bad:?}: {result:?}"
        );
    }
}
