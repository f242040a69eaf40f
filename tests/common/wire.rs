//! One Kafka request to one chosen broker over a plain socket, with kafka-protocol's codec:
//! for tests that must know which node answered (a client library picks brokers itself).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// Bound on connecting to, and on one answer from, a broker.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer a test accepts.
pub const RESPONSE_BYTES_MAX: usize = 64 << 20;

/// Sends `req` as `key`/`version` to `addr` and decodes the answer.
pub fn call<Req: Encodable, Resp: Decodable>(
    addr: &str,
    key: ApiKey,
    version: i16,
    req: &Req,
) -> std::io::Result<Resp> {
    let sock: std::net::SocketAddr = addr
        .parse()
        .map_err(|e| std::io::Error::other(format!("{addr}: {e}")))?;
    let mut stream = TcpStream::connect_timeout(&sock, CALL_TIMEOUT)?;
    stream.set_read_timeout(Some(CALL_TIMEOUT))?;
    stream.set_nodelay(true)?;
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("sluice-test-wire")))
        .encode(&mut buf, key.request_header_version(version))
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    req.encode(&mut buf, version)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let size = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&size.to_be_bytes());
    stream.write_all(&buf)?;
    let mut size = [0u8; 4];
    stream.read_exact(&mut size)?;
    let size = i32::from_be_bytes(size);
    if size < 0 || size as usize > RESPONSE_BYTES_MAX {
        return Err(std::io::Error::other(format!("response size {size}")));
    }
    let mut body = vec![0u8; size as usize];
    stream.read_exact(&mut body)?;
    let mut body = Bytes::from(body);
    let header = ResponseHeader::decode(&mut body, key.response_header_version(version))
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    if header.correlation_id != 1 {
        return Err(std::io::Error::other("wrong correlation id"));
    }
    let resp =
        Resp::decode(&mut body, version).map_err(|e| std::io::Error::other(e.to_string()))?;
    if body.has_remaining() {
        return Err(std::io::Error::other("bytes left after the response"));
    }
    Ok(resp)
}
