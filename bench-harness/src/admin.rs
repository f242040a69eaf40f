//! Topic creation through the Kafka admin API, and partition discovery through metadata.

use anyhow::{bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use std::time::Duration;

/// Bound on every admin and metadata request the harness makes.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Creates `topic`; an existing topic is left as it is (its partition count may differ).
pub fn create_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    replication_factor: i32,
) -> Result<()> {
    create_topic_with_config(bootstrap, topic, partitions, replication_factor, &[]).map(|_| ())
}

/// Creates `topic` with topic configs (`k=v`, as `kafka-topics --config`); an existing topic is
/// left as it is. True when this call created it.
pub fn create_topic_with_config(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    replication_factor: i32,
    config: &[(String, String)],
) -> Result<bool> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .context("creating admin client")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut new_topic = NewTopic::new(
        topic,
        partitions,
        TopicReplication::Fixed(replication_factor),
    );
    for (key, value) in config {
        new_topic = new_topic.set(key, value);
    }
    let options = AdminOptions::new()
        .operation_timeout(Some(REQUEST_TIMEOUT))
        .request_timeout(Some(REQUEST_TIMEOUT));
    // librdkafka waits indefinitely for a broker that advertises no CreateTopics version;
    // bound the whole call so a benchmark script cannot hang here.
    let results = runtime
        .block_on(async {
            tokio::time::timeout(REQUEST_TIMEOUT, admin.create_topics([&new_topic], &options)).await
        })
        .map_err(|_| {
            anyhow::anyhow!("CreateTopics for {topic} got no answer within {REQUEST_TIMEOUT:?}")
        })?
        .context("CreateTopics request")?;
    let mut created = false;
    for result in results {
        match result {
            Ok(_) => created = true,
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                eprintln!("topic {topic} already exists; keeping its partitions");
            }
            Err((name, code)) => bail!("creating topic {name}: {code}"),
        }
    }
    Ok(created)
}

/// Partition ids of `topic` from a metadata request (retried while the topic is still unknown,
/// as right after creation).
pub fn partitions_of<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
) -> Result<Vec<i32>> {
    let deadline = std::time::Instant::now() + REQUEST_TIMEOUT;
    loop {
        let metadata = consumer
            .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
            .with_context(|| format!("metadata for topic {topic}"))?;
        let found = metadata.topics().iter().find(|t| t.name() == topic);
        if let Some(found) = found {
            if found.error().is_none() && !found.partitions().is_empty() {
                return Ok(found.partitions().iter().map(|p| p.id()).collect());
            }
        }
        if std::time::Instant::now() >= deadline {
            bail!("topic {topic} has no partitions in metadata after {REQUEST_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
