//! A broker whose image names three brokers answers for all of them, over real sockets.
//!
//! There is no cluster to start yet (the Raft layer joins later), so the test makes the image a
//! three-broker cluster would have: it stops a real broker (node 0), applies the controller's own
//! commands to its persisted image — register and unfence brokers 1 and 2, create a topic with a
//! manual assignment over the three, fence broker 2 — and starts it again. Node 0 then lists the
//! unfenced brokers, every partition's leader, ISR and offline replicas as the fence left them,
//! opens only the partitions it holds a replica of, and refuses Produce for a partition another
//! broker leads with NOT_LEADER_OR_FOLLOWER and the current leader's hint (KIP-951).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, BrokerId, DescribeClusterRequest, DescribeClusterResponse, FetchRequest, FetchResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, HeartbeatRequest, HeartbeatResponse,
    ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse, ProduceRequest,
    ProduceResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

use common::{Broker, BrokerOpts};
use sluice::cluster::controller::{apply, Outcome};
use sluice::cluster::{ControllerCommand, MetadataImage};
use sluice::runtime::placement::group_partition;

const TOPIC: &str = "spread";
/// A group whose `__consumer_offsets` partition broker 1 leads.
const GROUP: &str = "elsewhere";
const NOT_COORDINATOR: i16 = 16;
const METADATA_VERSION: i16 = 12;
const PRODUCE_VERSION: i16 = 10;
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
/// Replicas of each partition; the first is the leader.
/// Node 0 holds partitions 0 and 2; broker 2 (fenced below) is in every partition.
const ASSIGNMENT: [[i32; 2]; 4] = [[0, 2], [1, 2], [2, 0], [1, 2]];

fn run(image: &mut MetadataImage, cmd: ControllerCommand) -> Outcome {
    let (next, outcome) = apply(image, &cmd).unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    *image = next;
    outcome
}

/// The stopped broker's image, made into a three-broker cluster with broker 2 fenced.
fn make_three_broker_image(data_dir: &std::path::Path) {
    let mut image = MetadataImage::load_or_new(data_dir, 0).expect("load image");
    for id in [1, 2] {
        let register = ControllerCommand::RegisterBroker {
            node_id: id,
            incarnation_id: uuid::Uuid::new_v4(),
            host: "127.0.0.1".into(),
            // Nothing listens there; no client is sent to them in this test.
            port: id as u16,
            rack: None,
        };
        let Outcome::BrokerRegistered { epoch, .. } = run(&mut image, register) else {
            panic!("no broker epoch");
        };
        run(
            &mut image,
            ControllerCommand::UnfenceBroker { node_id: id, epoch },
        );
    }
    let create = ControllerCommand::CreateTopic {
        name: TOPIC.into(),
        id: uuid::Uuid::new_v4(),
        partitions: ASSIGNMENT.len() as i32,
        replication_factor: 2,
        configs: Default::default(),
        internal: false,
        assignment: Some(ASSIGNMENT.iter().map(|r| r.to_vec()).collect()),
    };
    run(&mut image, create);
    // Every replica in sync, as follower replication will make them (a new partition starts
    // with its leader alone in the ISR).
    for p in &mut image.topics.get_mut(TOPIC).expect("topic").partitions {
        p.isr = p.replicas.clone();
    }
    let grow = ControllerCommand::CreatePartitions {
        name: TOPIC.into(),
        count: 5,
        assignment: Some(vec![vec![1, 3]]),
    };
    assert!(apply(&image, &grow).is_err(), "broker 3 is not registered");
    let epoch = image.brokers[&2].epoch;
    run(
        &mut image,
        ControllerCommand::FenceBroker { node_id: 2, epoch },
    );
    // Hand-made (no command moves leadership yet): broker 1 leads group GROUP's partition.
    let offsets = image
        .topics
        .get_mut("__consumer_offsets")
        .expect("offsets topic");
    let p = group_partition(GROUP, offsets.partition_count()) as usize;
    offsets.partitions[p].replicas = vec![1, 0];
    offsets.partitions[p].isr = vec![1, 0];
    offsets.partitions[p].leader = 1;
    offsets.partitions[p].leader_epoch += 1;
    image.persist(data_dir, 0).expect("persist image");
}

/// One request/response exchange on a raw connection.
fn exchange<Req: Encodable + HeaderVersion, Resp: Decodable + HeaderVersion>(
    stream: &mut TcpStream,
    key: ApiKey,
    version: i16,
    request: &Req,
) -> Resp {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("cluster-image")));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, Req::header_version(version))
        .unwrap();
    request.encode(&mut body, version).unwrap();
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    stream.write_all(&frame).expect("send");
    let mut length = [0u8; 4];
    stream.read_exact(&mut length).expect("answer");
    let mut response = vec![0u8; i32::from_be_bytes(length) as usize];
    stream.read_exact(&mut response).expect("response");
    let mut response = Bytes::from(response);
    let header = ResponseHeader::decode(&mut response, Resp::header_version(version)).unwrap();
    assert_eq!(header.correlation_id, 7);
    Resp::decode(&mut response, version).unwrap()
}

/// (partition, leader, ISR, offline replicas, leader epoch) as Metadata reports them.
type Seen = (i32, i32, Vec<i32>, Vec<i32>, i32);

fn ids(b: &[BrokerId]) -> Vec<i32> {
    b.iter().map(|b| b.0).collect()
}

#[test]
fn metadata_lists_every_unfenced_broker_and_leaders_after_a_fence() {
    let mut broker = Broker::start_with(BrokerOpts {
        cores: 1,
        ..BrokerOpts::default()
    });
    broker.terminate();
    make_three_broker_image(&broker.data_dir());
    broker.start_again();

    let mut stream = TcpStream::connect(broker.bootstrap()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    let request = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str(TOPIC))))]));
    let meta: MetadataResponse =
        exchange(&mut stream, ApiKey::Metadata, METADATA_VERSION, &request);
    let port: i32 = broker
        .bootstrap()
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .expect("bootstrap port");
    let brokers: Vec<(i32, i32)> = meta.brokers.iter().map(|b| (b.node_id.0, b.port)).collect();
    // Broker 2 is fenced: not listed. Node 0 re-registered at start with its new port.
    assert_eq!(brokers, vec![(0, port), (1, 1)]);
    assert_eq!(meta.controller_id.0, 0);
    let topic = &meta.topics[0];
    assert_eq!(topic.error_code, 0);
    let seen: Vec<Seen> = topic
        .partitions
        .iter()
        .map(|p| {
            (
                p.partition_index,
                p.leader_id.0,
                ids(&p.isr_nodes),
                ids(&p.offline_replicas),
                p.leader_epoch,
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            // Broker 2 left every ISR; partition 2, which it led, moved to 0 (epoch 1). Node 0's
            // restart (a new registration) kept its partitions: no other ISR member could lead.
            (0, 0, vec![0], vec![2], 0),
            (1, 1, vec![1], vec![2], 0),
            (2, 0, vec![0], vec![2], 1),
            (3, 1, vec![1], vec![2], 0),
        ]
    );
    for p in &topic.partitions {
        assert_eq!(ids(&p.replica_nodes).len(), 2);
    }

    // Node 0 opened the partitions it holds a replica of, and only those; Produce to one led
    // by broker 1 is refused with where the leader is.
    for p in 0..4 {
        let opened = broker.data_dir().join(format!("{TOPIC}-{p}")).is_dir();
        assert_eq!(opened, p % 2 == 0, "partition {p}");
    }
    let produce = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(1)
                .with_records(Some(Bytes::new()))])]);
    let answer: ProduceResponse = exchange(&mut stream, ApiKey::Produce, PRODUCE_VERSION, &produce);
    let p = &answer.responses[0].partition_responses[0];
    assert_eq!(p.error_code, NOT_LEADER_OR_FOLLOWER);
    assert_eq!(
        (p.current_leader.leader_id.0, p.current_leader.leader_epoch),
        (1, 0)
    );
    let endpoints: Vec<(i32, i32)> = answer
        .node_endpoints
        .iter()
        .map(|e| (e.node_id.0, e.port))
        .collect();
    assert_eq!(endpoints, vec![(1, 1)]);

    // A consumer's Fetch and ListOffsets off the leader: refused; Fetch names the leader.
    let fetch = FetchRequest::default()
        .with_max_wait_ms(5_000)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic_id(meta.topics[0].topic_id)
            .with_partitions(vec![FetchPartition::default()
                .with_partition(1)
                .with_partition_max_bytes(1 << 20)])]);
    let fetched: FetchResponse = exchange(&mut stream, ApiKey::Fetch, 16, &fetch);
    let p = &fetched.responses[0].partitions[0];
    assert_eq!(p.error_code, NOT_LEADER_OR_FOLLOWER);
    assert_eq!(p.current_leader.leader_id.0, 1);
    let endpoints: Vec<i32> = fetched.node_endpoints.iter().map(|e| e.node_id.0).collect();
    assert_eq!(endpoints, vec![1]);
    let list = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partitions(vec![
                ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-1),
                ListOffsetsPartition::default()
                    .with_partition_index(1)
                    .with_timestamp(-1),
            ])]);
    let listed: ListOffsetsResponse = exchange(&mut stream, ApiKey::ListOffsets, 7, &list);
    let codes: Vec<i16> = listed.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect();
    assert_eq!(codes, vec![0, NOT_LEADER_OR_FOLLOWER]);

    // DescribeCluster v2 lists the fenced broker too when asked, marked.
    let describe = DescribeClusterRequest::default().with_include_fenced_brokers(true);
    let cluster: DescribeClusterResponse =
        exchange(&mut stream, ApiKey::DescribeCluster, 2, &describe);
    let listed: Vec<(i32, bool)> = cluster
        .brokers
        .iter()
        .map(|b| (b.broker_id.0, b.is_fenced))
        .collect();
    assert_eq!(listed, vec![(0, false), (1, false), (2, true)]);
    assert_eq!(cluster.controller_id.0, 0);

    // The group's coordinator is the leader of its offsets partition: broker 1. Group requests
    // here are refused with NOT_COORDINATOR; another group is served here.
    let find = |key: &'static str| {
        FindCoordinatorRequest::default().with_key(StrBytes::from_static_str(key))
    };
    let found: FindCoordinatorResponse =
        exchange(&mut stream, ApiKey::FindCoordinator, 3, &find(GROUP));
    assert_eq!((found.error_code, found.node_id.0, found.port), (0, 1, 1));
    let found: FindCoordinatorResponse = exchange(
        &mut stream,
        ApiKey::FindCoordinator,
        3,
        &find("served-here"),
    );
    assert_eq!(
        (found.error_code, found.node_id.0, found.port),
        (0, 0, port)
    );
    let heartbeat = HeartbeatRequest::default()
        .with_group_id(StrBytes::from_static_str(GROUP).into())
        .with_generation_id(1)
        .with_member_id(StrBytes::from_static_str("m"));
    let beat: HeartbeatResponse = exchange(&mut stream, ApiKey::Heartbeat, 4, &heartbeat);
    assert_eq!(beat.error_code, NOT_COORDINATOR);
}

#[test]
fn a_partition_without_a_replica_here_is_not_opened() {
    let mut broker = Broker::start_with(BrokerOpts {
        cores: 1,
        ..BrokerOpts::default()
    });
    broker.terminate();
    let dir = broker.data_dir();
    let mut image = MetadataImage::load_or_new(&dir, 0).expect("load image");
    let register = ControllerCommand::RegisterBroker {
        node_id: 1,
        incarnation_id: uuid::Uuid::new_v4(),
        host: "127.0.0.1".into(),
        port: 1,
        rack: None,
    };
    let Outcome::BrokerRegistered { epoch, .. } = run(&mut image, register) else {
        panic!("no broker epoch");
    };
    run(
        &mut image,
        ControllerCommand::UnfenceBroker { node_id: 1, epoch },
    );
    let create = ControllerCommand::CreateTopic {
        name: TOPIC.into(),
        id: uuid::Uuid::new_v4(),
        partitions: 2,
        replication_factor: 1,
        configs: Default::default(),
        internal: false,
        assignment: Some(vec![vec![0], vec![1]]),
    };
    run(&mut image, create);
    image.persist(&dir, 0).expect("persist image");
    broker.start_again();
    common::wait_until("partition 0 opened", common::WAIT_TIMEOUT, || {
        dir.join(format!("{TOPIC}-0")).is_dir()
    });
    assert!(!dir.join(format!("{TOPIC}-1")).exists());
}
