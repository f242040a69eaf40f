//! The CLI's Kafka client: blocking, one request at a time on one connection (std `TcpStream`
//! and the kafka-protocol codecs the broker uses). Every `sluice` admin command goes through it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::RequestHeader;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

/// An error code as words: `what: NOT_LEADER_OR_FOLLOWER (6): message` (Ok for 0).
pub fn check(code: i16, what: &str) -> anyhow::Result<()> {
    check_with(code, what, None)
}

/// [`check`] with the broker's error message, when it sent one.
pub fn check_with(code: i16, what: &str, message: Option<&str>) -> anyhow::Result<()> {
    if code == 0 {
        return Ok(());
    }
    let name = crate::metrics::exposition::error_name(code);
    match message.filter(|m| !m.is_empty()) {
        Some(m) => bail!("{what}: {name} ({code}): {m}"),
        None => bail!("{what}: {name} ({code})"),
    }
}

/// A blocking Kafka client: one request at a time on one connection.
pub struct Client {
    stream: TcpStream,
    correlation_id: i32,
}

/// Largest response the CLI accepts.
const RESPONSE_BYTES_MAX: usize = 64 << 20;

impl Client {
    pub fn connect(addr: &str) -> anyhow::Result<Client> {
        let stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            correlation_id: 0,
        })
    }

    /// Sends a request that gets no response (acks=0 Produce).
    pub fn send_only<R: Request>(&mut self, req: &R, version: i16) -> anyhow::Result<()> {
        let frame = self.frame(req, version)?;
        self.stream.write_all(&frame)?;
        Ok(())
    }

    fn frame<R: Request>(&mut self, req: &R, version: i16) -> anyhow::Result<BytesMut> {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("sluice-cli")));
        let mut body = BytesMut::new();
        header.encode(&mut body, R::header_version(version))?;
        req.encode(&mut body, version)?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        Ok(frame)
    }

    pub fn send<R: Request>(&mut self, req: &R, version: i16) -> anyhow::Result<R::Response> {
        let frame = self.frame(req, version)?;
        self.stream.write_all(&frame)?;
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let len = i32::from_be_bytes(len);
        if len < 0 || len as usize > RESPONSE_BYTES_MAX {
            bail!("response of {len} bytes");
        }
        let mut buf = vec![0u8; len as usize];
        self.stream.read_exact(&mut buf)?;
        let mut buf = Bytes::from(buf);
        let header = kafka_protocol::messages::ResponseHeader::decode(
            &mut buf,
            <R::Response as HeaderVersion>::header_version(version),
        )?;
        if header.correlation_id != self.correlation_id {
            bail!(
                "correlation id {} != {}",
                header.correlation_id,
                self.correlation_id
            );
        }
        R::Response::decode(&mut buf, version)
    }
}
