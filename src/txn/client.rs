//! Connections from this shard to other brokers for transactions: a coordinator writing
//! markers to partition leaders (WriteTxnMarkers), and a partition leader asking a coordinator
//! whether a partition is in a transaction (AddPartitionsToTxn v5, verify only; KIP-890).
//! One idle connection per broker is kept; a call takes it (or opens one) and gives it back.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;

use crate::cluster::MetadataImage;
use crate::replica::client::Connection;

/// Bounds of one call.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The marker append waits for replication on the leader; its answer comes within its own
/// timeout (`MARKER_WRITE_TIMEOUT_MS`) plus this margin.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(40);
const RESPONSE_BYTES_MAX: usize = 4 << 20;

#[derive(Default)]
pub struct Clients {
    idle: RefCell<HashMap<i32, Connection>>,
}

impl Clients {
    /// Sends `req` to broker `node` and returns its answer; the connection is dropped on error.
    pub async fn call<Req, Resp>(
        &self,
        image: &MetadataImage,
        node: i32,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> io::Result<Resp>
    where
        Req: kafka_protocol::protocol::Encodable,
        Resp: kafka_protocol::protocol::Decodable,
    {
        let taken = self.idle.borrow_mut().remove(&node);
        let mut conn = match taken {
            Some(c) => c,
            None => {
                let b = image.broker(node).ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, format!("broker {node} unknown"))
                })?;
                Connection::connect(&b.host, b.port, CONNECT_TIMEOUT, "sluice-txn".to_string())
                    .await?
            }
        };
        let answer = conn
            .call(key, version, req, CALL_TIMEOUT, RESPONSE_BYTES_MAX)
            .await?;
        self.idle.borrow_mut().entry(node).or_insert(conn);
        Ok(answer)
    }
}
