//! One Kafka-protocol connection from this broker to another (a follower's fetcher to its
//! leader): framed requests encoded, and answers decoded, by the kafka-protocol crate, every
//! wait bounded and every answer's size bounded.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures::{AsyncReadExt, AsyncWriteExt};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

pub struct Connection {
    stream: glommio::net::TcpStream,
    next_correlation_id: i32,
    client_id: StrBytes,
}

/// Resolves `host:port` (an IP address needs no lookup; a name is looked up by the system
/// resolver, which blocks: brokers advertise addresses in the tests and scripts).
fn resolve(host: &str, port: u16) -> io::Result<SocketAddr> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::other(format!("{host}:{port} resolves to no address")))
}

async fn bounded<T>(
    limit: Duration,
    what: &str,
    f: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    futures_lite::future::or(f, async {
        glommio::timer::sleep(limit).await;
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{what}: no answer in {limit:?}"),
        ))
    })
    .await
}

impl Connection {
    pub async fn connect(
        host: &str,
        port: u16,
        timeout: Duration,
        client_id: String,
    ) -> io::Result<Connection> {
        let addr = resolve(host, port)?;
        let stream = glommio::net::TcpStream::connect_timeout(addr, timeout)
            .await
            .map_err(io::Error::from)?;
        stream.set_nodelay(true).map_err(io::Error::from)?;
        Ok(Connection {
            stream,
            next_correlation_id: 0,
            client_id: StrBytes::from_string(client_id),
        })
    }

    /// Sends `req` as `key`/`version` and decodes the answer, within `timeout`; an answer larger
    /// than `max_bytes` is an error (the connection is then unusable and should be dropped).
    pub async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
        timeout: Duration,
        max_bytes: usize,
    ) -> io::Result<Resp> {
        let id = self.next_correlation_id;
        self.next_correlation_id = id.wrapping_add(1);
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(id)
            .with_client_id(Some(self.client_id.clone()))
            .encode(&mut buf, key.request_header_version(version))
            .map_err(|e| io::Error::other(e.to_string()))?;
        req.encode(&mut buf, version)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let size = (buf.len() - 4) as i32;
        buf[0..4].copy_from_slice(&size.to_be_bytes());
        let stream = &mut self.stream;
        let body = bounded(timeout, "replica fetch", async move {
            stream.write_all(&buf).await?;
            let mut size = [0u8; 4];
            stream.read_exact(&mut size).await?;
            let size = i32::from_be_bytes(size);
            if size < 0 || size as usize > max_bytes {
                return Err(io::Error::other(format!(
                    "answer of {size} bytes (at most {max_bytes})"
                )));
            }
            let mut body = vec![0u8; size as usize];
            stream.read_exact(&mut body).await?;
            Ok(Bytes::from(body))
        })
        .await?;
        let mut body = body;
        let header = ResponseHeader::decode(&mut body, key.response_header_version(version))
            .map_err(|e| io::Error::other(e.to_string()))?;
        if header.correlation_id != id {
            return Err(io::Error::other(format!(
                "correlation id {} for request {id}",
                header.correlation_id
            )));
        }
        Resp::decode(&mut body, version).map_err(|e| io::Error::other(e.to_string()))
    }
}
