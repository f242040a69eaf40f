//! Produce refuses batches whose records are malformed, like Kafka's LogValidator, against the
//! real binary over one raw connection: each bad batch carries a correct CRC-32C, so only the
//! record contents are wrong. Each is answered with an error for its partition, the log end
//! offset does not move, and the next valid Produce on the same connection succeeds.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};

use common::{unique_topic, Broker, BrokerOpts};

const CORRUPT_MESSAGE: i16 = 2;
const INVALID_RECORD: i16 = 87;
const PRODUCE_VERSION: i16 = 7;
const BASE_TIMESTAMP: i64 = 1_700_000_000_000;
const CODEC_NONE: i16 = 0;
const CODEC_GZIP: i16 = 1;
const CODEC_LZ4: i16 = 3;
const CODEC_ZSTD: i16 = 4;

/// Kafka's zigzag varint.
fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// One v2 record: offset delta, timestamp delta, a key, a value, no headers.
fn record(offset_delta: i64, timestamp_delta: i64, value: &[u8]) -> Vec<u8> {
    let mut body = vec![0u8];
    put_varint(&mut body, timestamp_delta);
    put_varint(&mut body, offset_delta);
    put_varint(&mut body, 1);
    body.push(b'k');
    put_varint(&mut body, value.len() as i64);
    body.extend_from_slice(value);
    put_varint(&mut body, 0);
    let mut out = Vec::new();
    put_varint(&mut out, body.len() as i64);
    out.extend_from_slice(&body);
    out
}

/// `n` well-formed records with timestamps BASE_TIMESTAMP + i.
fn records(n: i64) -> Vec<u8> {
    records_at(n, 0)
}

/// `n` well-formed records with timestamps BASE_TIMESTAMP + `delta` + i.
fn records_at(n: i64, delta: i64) -> Vec<u8> {
    (0..n)
        .flat_map(|i| record(i, delta + i, format!("value-{i}").as_bytes()))
        .collect()
}

/// A v2 batch header with a correct CRC-32C in front of `payload` (the records, compressed or
/// not). `max_ts` is what the header claims as MaxTimestamp.
fn batch(count: i32, codec: i16, max_ts: i64, payload: &[u8]) -> Bytes {
    let mut b = Vec::with_capacity(61 + payload.len());
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((49 + payload.len()) as i32).to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    b.push(2);
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&codec.to_be_bytes());
    b.extend_from_slice(&(count - 1).to_be_bytes());
    b.extend_from_slice(&BASE_TIMESTAMP.to_be_bytes());
    b.extend_from_slice(&max_ts.to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&count.to_be_bytes());
    b.extend_from_slice(payload);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(b)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn lz4_frame(data: &[u8]) -> Vec<u8> {
    let mut e = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
    e.write_all(data).unwrap();
    let (out, result) = e.finish();
    result.unwrap();
    out
}

/// `count` records whose values are `value_bytes` zeros each, gzip-compressed as a stream: a
/// decompression bomb that is well formed up to the broker's limit.
fn gzip_bomb(count: i64, value_bytes: i64) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let zeros = vec![0u8; 1 << 20];
    for i in 0..count {
        let mut body = vec![0u8, 0];
        put_varint(&mut body, i);
        put_varint(&mut body, -1);
        put_varint(&mut body, value_bytes);
        let mut prefix = Vec::new();
        put_varint(&mut prefix, body.len() as i64 + value_bytes + 1);
        prefix.extend_from_slice(&body);
        e.write_all(&prefix).unwrap();
        let mut left = value_bytes as usize;
        while left > 0 {
            let n = left.min(zeros.len());
            e.write_all(&zeros[..n]).unwrap();
            left -= n;
        }
        e.write_all(&[0]).unwrap();
    }
    e.finish().unwrap()
}

/// A raw Kafka connection speaking Produce v7.
struct Connection {
    stream: TcpStream,
    correlation_id: i32,
}

impl Connection {
    fn open(broker: &Broker) -> Connection {
        let stream = TcpStream::connect(broker.bootstrap()).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("read timeout");
        Connection {
            stream,
            correlation_id: 0,
        }
    }

    /// Produces `records` to partition 0 of `topic`; returns (error code, base offset).
    fn produce(&mut self, topic: &str, records: Bytes) -> (i16, i64) {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(0)
            .with_request_api_version(PRODUCE_VERSION)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("record-validation")));
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records))])]);
        let mut body = BytesMut::new();
        header
            .encode(&mut body, ProduceRequest::header_version(PRODUCE_VERSION))
            .unwrap();
        request.encode(&mut body, PRODUCE_VERSION).unwrap();
        let mut frame = (body.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        self.stream.write_all(&frame).expect("send produce");

        let mut length = [0u8; 4];
        self.stream
            .read_exact(&mut length)
            .expect("the broker answers (connection still open)");
        let mut response = vec![0u8; i32::from_be_bytes(length) as usize];
        self.stream.read_exact(&mut response).expect("response");
        let mut response = Bytes::from(response);
        let header = ResponseHeader::decode(
            &mut response,
            ProduceResponse::header_version(PRODUCE_VERSION),
        )
        .unwrap();
        assert_eq!(header.correlation_id, self.correlation_id);
        let response = ProduceResponse::decode(&mut response, PRODUCE_VERSION).unwrap();
        let partition = &response.responses[0].partition_responses[0];
        (partition.error_code, partition.base_offset)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_records_are_refused_and_the_connection_keeps_working() {
    let mut broker = Broker::start_with(BrokerOpts {
        cores: 1,
        ..BrokerOpts::default()
    });
    let topic = unique_topic("record-validation");
    // Room for the bomb's compressed bytes (gzip cannot beat about 1:1000).
    broker
        .create_topic(&topic, 1, &[("max.message.bytes", "8388608")])
        .await;
    let mut connection = Connection::open(&broker);

    let good = |n: i64| batch(n as i32, CODEC_NONE, BASE_TIMESTAMP + n - 1, &records(n));
    assert_eq!(connection.produce(&topic, good(3)), (0, 0));
    let mut log_end = 3;

    let three = records(3);
    let mut overrun = records(1);
    overrun[0] = 0x7e; // record length 63, more than the batch holds
    let mut six_byte_varint = vec![0x80, 0x80, 0x80, 0x80, 0x80, 0x00];
    six_byte_varint.extend_from_slice(&records(1)[1..]);
    let bad_deltas = [record(0, 0, b"a"), record(5, 0, b"b")].concat();
    let gzipped = gzip(&three);
    let lz4ed = lz4_frame(&three);
    let garbage: Vec<u8> = (0..600u32).map(|i| (i * 7919 % 251) as u8).collect();
    let started = Instant::now();
    // 4 times the broker's 64 MiB limit (1 GiB works as well, but takes 30 s to compress here).
    let bomb = gzip_bomb(1, 256 << 20);
    let many = gzip_bomb(80, 1 << 20);
    eprintln!(
        "gzip bomb: 256 MiB of zeros in {} bytes, built in {:?}",
        bomb.len(),
        started.elapsed()
    );

    let cases: Vec<(&str, Bytes, i16)> = vec![
        (
            "record count 2^31-1 in a few bytes",
            batch(i32::MAX, CODEC_NONE, -1, &three),
            INVALID_RECORD,
        ),
        (
            "record count one short of the records",
            batch(2, CODEC_NONE, -1, &three),
            INVALID_RECORD,
        ),
        (
            "offset deltas 0, 5",
            batch(2, CODEC_NONE, -1, &bad_deltas),
            INVALID_RECORD,
        ),
        (
            "record length overruns the batch",
            batch(1, CODEC_NONE, -1, &overrun),
            INVALID_RECORD,
        ),
        (
            "6-byte varint",
            batch(1, CODEC_NONE, -1, &six_byte_varint),
            INVALID_RECORD,
        ),
        (
            "truncated gzip payload",
            batch(3, CODEC_GZIP, -1, &gzipped[..gzipped.len() / 2]),
            CORRUPT_MESSAGE,
        ),
        (
            "gzip payload without its trailer",
            batch(3, CODEC_GZIP, -1, &gzipped[..gzipped.len() - 4]),
            CORRUPT_MESSAGE,
        ),
        (
            "truncated lz4 payload",
            batch(3, CODEC_LZ4, -1, &lz4ed[..lz4ed.len() - 6]),
            CORRUPT_MESSAGE,
        ),
        (
            "garbage zstd payload",
            batch(3, CODEC_ZSTD, -1, &garbage),
            CORRUPT_MESSAGE,
        ),
        (
            "gzip bomb: 256 MiB of zeros",
            batch(1, CODEC_GZIP, -1, &bomb),
            CORRUPT_MESSAGE,
        ),
        (
            "gzip bomb: 80 records of 1 MiB of zeros",
            batch(80, CODEC_GZIP, -1, &many),
            CORRUPT_MESSAGE,
        ),
    ];
    for (name, bad, expected) in cases {
        let (code, _) = connection.produce(&topic, bad);
        assert_eq!(
            code,
            expected,
            "{name}: error code\n{}",
            broker.stderr_tail()
        );
        assert!(broker.is_running(), "{name}: the broker died");
        assert_eq!(
            broker.watermarks(&topic, 0).1,
            log_end,
            "{name}: the log end offset moved"
        );
        let (code, base_offset) = connection.produce(&topic, good(2));
        assert_eq!(
            (code, base_offset),
            (0, log_end),
            "{name}: the next valid produce on the same connection"
        );
        log_end += 2;
        assert_eq!(broker.watermarks(&topic, 0).1, log_end, "{name}");
    }

    // Everything stored reads back through a real consumer, record by record.
    let read = broker.read_range(&topic, 0, 0, log_end);
    assert_eq!(read.len() as i64, log_end);
}

/// A producer that leaves MaxTimestamp at -1 (Kafka recomputes it from the records): ListOffsets
/// by time must still find its records, compressed or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_timestamp_comes_from_the_records() {
    let broker = Broker::start_with(BrokerOpts {
        cores: 1,
        ..BrokerOpts::default()
    });
    let topic = unique_topic("record-max-timestamp");
    broker.create_topic(&topic, 1, &[]).await;
    let mut connection = Connection::open(&broker);
    let uncompressed = batch(3, CODEC_NONE, -1, &records(3));
    assert_eq!(connection.produce(&topic, uncompressed), (0, 0));
    let zstd = zstd::encode_all(&records_at(3, 10)[..], 3).unwrap();
    assert_eq!(
        connection.produce(&topic, batch(3, CODEC_ZSTD, -1, &zstd)),
        (0, 3)
    );

    // Exact per record, in compressed batches too (Kafka decompresses to answer).
    let consumer = broker.consumer(&[]);
    for (ts, expected) in [
        (BASE_TIMESTAMP + 1, 1),
        (BASE_TIMESTAMP + 2, 2),
        (BASE_TIMESTAMP + 10, 3),
        (BASE_TIMESTAMP + 11, 4),
        (BASE_TIMESTAMP + 12, 5),
    ] {
        let mut query = TopicPartitionList::new();
        query
            .add_partition_offset(&topic, 0, Offset::Offset(ts))
            .unwrap();
        let found = consumer
            .offsets_for_times(query, Duration::from_secs(10))
            .expect("ListOffsets by time");
        let offset = found.elements()[0].offset();
        assert_eq!(offset, Offset::Offset(expected), "ListOffsets at {ts}");
    }
    let read = broker.read_range(&topic, 0, 0, 6);
    assert_eq!(read.len(), 6);
}
