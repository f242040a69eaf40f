//! OffsetForLeaderEpoch against the real binary, answered from the partition's leader epoch
//! cache (`leader-epoch-checkpoint`), before and after a restart.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    ApiKey, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, RequestHeader,
    ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rdkafka::producer::FutureRecord;

use common::{unique_topic, Broker, BrokerOpts};

const VERSION: i16 = 4;

/// (error code, leader epoch, end offset) for each asked epoch of partition 0.
fn epoch_ends(broker: &Broker, topic: &str, epochs: &[i32]) -> Vec<(i16, i32, i64)> {
    let partitions = epochs
        .iter()
        .map(|epoch| {
            OffsetForLeaderPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(-1)
                .with_leader_epoch(*epoch)
        })
        .collect();
    let request = OffsetForLeaderEpochRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(partitions)]);
    let key = ApiKey::OffsetForLeaderEpoch;
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(VERSION)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("epoch-test")))
        .encode(&mut buf, key.request_header_version(VERSION))
        .expect("encode header");
    request.encode(&mut buf, VERSION).expect("encode body");
    let size = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&size.to_be_bytes());
    let mut stream = TcpStream::connect(broker.bootstrap()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    stream.write_all(&buf).expect("send");
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).expect("response size");
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut body).expect("response");
    let mut body = Bytes::from(body);
    let header = ResponseHeader::decode(&mut body, key.response_header_version(VERSION))
        .expect("response header");
    assert_eq!(header.correlation_id, 7);
    let response = OffsetForLeaderEpochResponse::decode(&mut body, VERSION).expect("response");
    response.topics[0]
        .partitions
        .iter()
        .map(|p| (p.error_code, p.leader_epoch, p.end_offset))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epoch_end_offsets_come_from_the_leader_epoch_cache() {
    let mut broker = Broker::start_with(BrokerOpts {
        cores: 1,
        ..BrokerOpts::default()
    });
    let topic = unique_topic("epochs");
    broker.create_topic(&topic, 1, &[]).await;
    let producer = broker.producer(&[]);
    for i in 0..5 {
        producer
            .send(
                FutureRecord::<[u8], [u8]>::to(&topic)
                    .partition(0)
                    .payload(format!("v{i}").as_bytes()),
                Duration::from_secs(20),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("not delivered: {e}\n{}", broker.stderr_tail()));
    }
    drop(producer);
    let (_, end) = broker.watermarks(&topic, 0);
    assert_eq!(end, 5);
    // Epoch 0 is the current one: it ends at the log end; epoch 1 is unknown (UNDEFINED).
    // (One partition asked three times: each answer in its place.)
    let want = vec![(0, 0, 5), (0, -1, -1), (0, -1, -1)];
    assert_eq!(epoch_ends(&broker, &topic, &[0, 1, -1]), want);
    broker.restart();
    assert_eq!(
        epoch_ends(&broker, &topic, &[0, 1, -1]),
        want,
        "after a restart"
    );
    broker.stop();
    let file = broker
        .data_dir()
        .join(format!("{topic}-0"))
        .join("leader-epoch-checkpoint");
    assert_eq!(
        std::fs::read_to_string(&file).expect("leader-epoch-checkpoint"),
        "0\n1\n0 0\n",
        "Kafka's checkpoint format, one epoch starting at 0"
    );
}
