//! Raft RPCs on the CONTROLLER listener: framing, the network client openraft uses, and the
//! server's accept loop. Everything runs on shard 0.
//!
//! A frame is:
//!
//! | field        | encoding                                                        |
//! |--------------|-----------------------------------------------------------------|
//! | length       | u32 big-endian, bytes after it, at most `CONTROL_FRAME_BYTES_MAX` |
//! | version      | u8, `FORMAT_VERSION`                                            |
//! | kind         | u8 (`Kind`)                                                     |
//! | cluster id   | u16 big-endian length (<= `CONTROL_CLUSTER_ID_BYTES_MAX`), UTF-8 |
//! | node id      | i32 big-endian, the sender's `node.id`                          |
//! | payload      | serde_json, the rest of the frame                               |
//!
//! A reply has kind `Reply` and a payload `Result<T, RemoteError>`. A frame from another
//! cluster (both ids non-empty and different) is answered with `RemoteError::ClusterIdMismatch`
//! and the connection closed; a frame that breaks the framing (length, version, kind, UTF-8,
//! payload) closes the connection, with a log line. Never a panic.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Future};
use glommio::net::{TcpListener, TcpStream};
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::AsyncRuntime;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::rt::GlommioRuntime;
use super::types::{ControllerNode, Snapshot, SnapshotMeta, TypeConfig, Vote};
use crate::cluster::controller::{ControllerError, Outcome};
use crate::limits;

/// Version of the frame format.
pub const FORMAT_VERSION: u8 = 1;
/// Bytes of the fixed header after the length: version, kind, cluster id length, node id.
const FIXED_HEADER_BYTES: usize = 1 + 1 + 2 + 4;

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Vote = 1,
    PreVote = 2,
    AppendEntries = 3,
    InstallSnapshot = 4,
    /// A `ControllerCommand` for the leader to propose.
    Forward = 5,
    /// A `ControlRequest` for the handler the lead installs (broker heartbeats).
    Control = 6,
    /// The leader hands leadership to this node (controlled shutdown).
    TransferLeader = 7,
    Reply = 0x80,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Vote,
            2 => Kind::PreVote,
            3 => Kind::AppendEntries,
            4 => Kind::InstallSnapshot,
            5 => Kind::Forward,
            6 => Kind::Control,
            7 => Kind::TransferLeader,
            0x80 => Kind::Reply,
            _ => return None,
        })
    }
}

/// Opaque to the raft layer: the lead's broker registration/heartbeat messages, as JSON.
pub type ControlRequest = serde_json::Value;
/// The answer of the control handler.
pub type ControlReply = serde_json::Value;

/// One decoded frame.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub kind: Kind,
    pub cluster_id: String,
    pub node_id: i32,
    pub payload: Vec<u8>,
}

/// Why a frame was refused (the connection then closes).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame length {0} above the limit")]
    TooLong(usize),
    #[error("frame of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("unknown frame format version {0}")]
    Version(u8),
    #[error("unknown frame kind {0}")]
    Kind(u8),
    #[error("cluster id of {0} bytes is longer than the frame or the limit")]
    ClusterIdLength(usize),
    #[error("cluster id is not UTF-8")]
    ClusterIdUtf8,
}

/// What a peer answers instead of a result.
#[derive(Clone, Debug, Serialize, Deserialize, thiserror::Error)]
pub enum RemoteError {
    #[error("cluster id mismatch: this node belongs to cluster {ours}, the sender to {theirs}")]
    ClusterIdMismatch { ours: String, theirs: String },
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<i32> },
    #[error("the metadata quorum is unavailable")]
    QuorumUnavailable,
    #[error("the proposal timed out")]
    Timeout,
    #[error("rejected: {0}")]
    Rejected(ControllerError),
    #[error("raft: {0}")]
    Raft(String),
    #[error("no control handler installed")]
    NoHandler,
}

/// Encodes a whole frame, length prefix included.
pub fn encode_frame(
    kind: Kind,
    cluster_id: &str,
    node_id: i32,
    payload: &[u8],
) -> io::Result<Vec<u8>> {
    let id = cluster_id.as_bytes();
    if id.len() > limits::CONTROL_CLUSTER_ID_BYTES_MAX {
        return Err(io::Error::other(FrameError::ClusterIdLength(id.len())));
    }
    let body = FIXED_HEADER_BYTES + id.len() + payload.len();
    if body > limits::CONTROL_FRAME_BYTES_MAX {
        return Err(io::Error::other(FrameError::TooLong(body)));
    }
    let mut out = Vec::with_capacity(4 + body);
    out.extend_from_slice(&(body as u32).to_be_bytes());
    out.push(FORMAT_VERSION);
    out.push(kind as u8);
    out.extend_from_slice(&(id.len() as u16).to_be_bytes());
    out.extend_from_slice(id);
    out.extend_from_slice(&node_id.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// Decodes a frame body (the bytes after the length prefix).
pub fn decode_frame(body: &[u8]) -> Result<Frame, FrameError> {
    if body.len() < FIXED_HEADER_BYTES {
        return Err(FrameError::Short(body.len()));
    }
    if body[0] != FORMAT_VERSION {
        return Err(FrameError::Version(body[0]));
    }
    let kind = Kind::from_u8(body[1]).ok_or(FrameError::Kind(body[1]))?;
    let id_len = u16::from_be_bytes([body[2], body[3]]) as usize;
    if id_len > limits::CONTROL_CLUSTER_ID_BYTES_MAX || body.len() < FIXED_HEADER_BYTES + id_len {
        return Err(FrameError::ClusterIdLength(id_len));
    }
    let id = &body[4..4 + id_len];
    let cluster_id = std::str::from_utf8(id)
        .map_err(|_| FrameError::ClusterIdUtf8)?
        .to_string();
    let at = 4 + id_len;
    let node_id = i32::from_be_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]);
    Ok(Frame {
        kind,
        cluster_id,
        node_id,
        payload: body[at + 4..].to_vec(),
    })
}

/// Reads one frame; `Ok(None)` at a clean end of stream before a frame starts. The buffer
/// grows as bytes arrive (`FRAME_READ_CHUNK_BYTES` at a time), so a large length prefix costs
/// memory only as far as its bytes came.
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> io::Result<Option<Frame>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = reader.read(&mut len[got..]).await?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        got += n;
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > limits::CONTROL_FRAME_BYTES_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            FrameError::TooLong(len),
        ));
    }
    let mut body = Vec::new();
    while body.len() < len {
        let chunk = (len - body.len()).min(limits::FRAME_READ_CHUNK_BYTES);
        let start = body.len();
        body.resize(start + chunk, 0);
        reader.read_exact(&mut body[start..]).await?;
    }
    decode_frame(&body)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn json_err(e: serde_json::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// The local end of the RPCs: our node id and cluster id (shared with the server, which may
/// learn the cluster id from the image).
pub struct Local {
    pub node_id: i32,
    pub cluster_id: RefCell<String>,
    /// Set when a peer of another cluster answered (its cluster id): this node cannot join.
    pub refused_by: RefCell<Option<String>>,
}

/// One connection to a peer, used by one request at a time.
async fn call_on(
    stream: &mut TcpStream,
    local: &Local,
    kind: Kind,
    payload: &[u8],
) -> io::Result<Vec<u8>> {
    let frame = encode_frame(kind, &local.cluster_id.borrow(), local.node_id, payload)?;
    stream.write_all(&frame).await?;
    stream.flush().await?;
    let Some(reply) = read_frame(stream).await? else {
        return Err(io::ErrorKind::UnexpectedEof.into());
    };
    if reply.kind != Kind::Reply {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expected a reply frame, got {:?}", reply.kind),
        ));
    }
    let ours = local.cluster_id.borrow().clone();
    if !ours.is_empty() && !reply.cluster_id.is_empty() && reply.cluster_id != ours {
        *local.refused_by.borrow_mut() = Some(reply.cluster_id.clone());
    }
    Ok(reply.payload)
}

async fn connect(addr: &str, within: Duration) -> io::Result<TcpStream> {
    let addr: SocketAddr = addr
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr}: {e}")))?;
    let stream = TcpStream::connect_timeout(addr, within.max(Duration::from_millis(1)))
        .await
        .map_err(io::Error::from)?;
    stream.set_nodelay(true).map_err(io::Error::from)?;
    Ok(stream)
}

/// How a call failed.
#[derive(Debug)]
pub enum CallError {
    /// No connection could be made (openraft backs off).
    Unreachable(io::Error),
    /// The connection broke or the deadline passed mid-call.
    Network(io::Error),
    /// The peer answered with an error.
    Remote(RemoteError),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unreachable(e) => write!(f, "unreachable: {e}"),
            CallError::Network(e) => write!(f, "network: {e}"),
            CallError::Remote(e) => write!(f, "{e}"),
        }
    }
}

/// A pool of idle connections per peer address, for forwarded proposals and control
/// requests (which may run concurrently; a connection serves one call at a time).
pub struct Pool {
    local: Rc<Local>,
    idle: RefCell<HashMap<String, Vec<TcpStream>>>,
}

impl Pool {
    pub fn new(local: Rc<Local>) -> Pool {
        Pool {
            local,
            idle: RefCell::new(HashMap::new()),
        }
    }

    /// One call to `addr`, bounded by `within` (connect included).
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        kind: Kind,
        req: &Req,
        within: Duration,
    ) -> Result<Resp, CallError> {
        let payload = serde_json::to_vec(req).map_err(|e| CallError::Network(json_err(e)))?;
        let pooled = self.idle.borrow_mut().get_mut(addr).and_then(Vec::pop);
        let mut stream = match pooled {
            Some(stream) => stream,
            None => match GlommioRuntime::timeout(within, connect(addr, within)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return Err(CallError::Unreachable(e)),
                Err(_) => return Err(CallError::Unreachable(io::ErrorKind::TimedOut.into())),
            },
        };
        let reply = match GlommioRuntime::timeout(
            within,
            call_on(&mut stream, &self.local, kind, &payload),
        )
        .await
        {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => return Err(CallError::Network(e)),
            Err(_) => return Err(CallError::Network(io::ErrorKind::TimedOut.into())),
        };
        let mut idle = self.idle.borrow_mut();
        let slot = idle.entry(addr.to_string()).or_default();
        if slot.len() < limits::CONTROL_IDLE_CONNECTIONS_PER_PEER_MAX {
            slot.push(stream);
        }
        drop(idle);
        let result: Result<Resp, RemoteError> =
            serde_json::from_slice(&reply).map_err(|e| CallError::Network(json_err(e)))?;
        result.map_err(CallError::Remote)
    }
}

// ---------------------------------------------------------------------------------------------
// openraft's network: one client per target, one connection each, reconnected on failure.

/// openraft's network factory.
pub struct NetworkFactory {
    pub local: Rc<Local>,
}

/// The connection to one peer for openraft's replication, heartbeats or votes.
pub struct PeerClient {
    local: Rc<Local>,
    target: u64,
    addr: String,
    conn: Option<TcpStream>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &ControllerNode) -> PeerClient {
        PeerClient {
            local: self.local.clone(),
            target,
            addr: node.addr.clone(),
            conn: None,
        }
    }
}

/// What InstallSnapshot carries (the snapshot bytes are serde_json text already).
#[derive(Serialize, Deserialize)]
pub struct InstallSnapshotRpc {
    pub vote: Vote,
    pub meta: SnapshotMeta,
    pub data: String,
}

impl PeerClient {
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &mut self,
        kind: Kind,
        req: &Req,
        within: Duration,
    ) -> Result<Resp, CallError> {
        let payload = serde_json::to_vec(req).map_err(|e| CallError::Network(json_err(e)))?;
        let stream = match self.conn.take() {
            Some(stream) => stream,
            None => match GlommioRuntime::timeout(within, connect(&self.addr, within)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return Err(CallError::Unreachable(e)),
                Err(_) => return Err(CallError::Unreachable(io::ErrorKind::TimedOut.into())),
            },
        };
        let mut stream = stream;
        let reply = match GlommioRuntime::timeout(
            within,
            call_on(&mut stream, &self.local, kind, &payload),
        )
        .await
        {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => {
                tracing::debug!(target = self.target, error = %e, "raft rpc failed; reconnecting");
                return Err(CallError::Network(e));
            }
            Err(_) => return Err(CallError::Network(io::ErrorKind::TimedOut.into())),
        };
        self.conn = Some(stream);
        let result: Result<Resp, RemoteError> =
            serde_json::from_slice(&reply).map_err(|e| CallError::Network(json_err(e)))?;
        if let Err(err @ RemoteError::ClusterIdMismatch { .. }) = &result {
            // This node was started with another cluster's data (or id): it cannot join.
            tracing::error!(target = self.target, addr = %self.addr, error = %err,
                "refused by a voter of another cluster");
            self.conn = None;
        }
        result.map_err(CallError::Remote)
    }
}

fn rpc_error(err: CallError) -> RPCError<TypeConfig> {
    match err {
        CallError::Unreachable(e) => RPCError::Unreachable(Unreachable::new(&e)),
        CallError::Network(e) => RPCError::Network(NetworkError::new(&e)),
        CallError::Remote(e) => {
            RPCError::Network(NetworkError::new(&io::Error::other(e.to_string())))
        }
    }
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(Kind::AppendEntries, &rpc, option.soft_ttl())
            .await
            .map_err(rpc_error)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(Kind::Vote, &rpc, option.soft_ttl())
            .await
            .map_err(rpc_error)
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(Kind::PreVote, &rpc, option.soft_ttl())
            .await
            .map_err(rpc_error)
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(Kind::TransferLeader, &req, option.soft_ttl())
            .await
            .map_err(rpc_error)
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let data = String::from_utf8(snapshot.snapshot).map_err(|e| {
            StreamingError::Network(NetworkError::new(&io::Error::new(
                io::ErrorKind::InvalidData,
                e,
            )))
        })?;
        let rpc = InstallSnapshotRpc {
            vote,
            meta: snapshot.meta,
            data,
        };
        let within = option.hard_ttl().max(option.soft_ttl());
        let call =
            self.call::<_, SnapshotResponse<TypeConfig>>(Kind::InstallSnapshot, &rpc, within);
        match GlommioRuntime::select2(Box::pin(call), Box::pin(cancel)).await {
            openraft::rt::Select2::First(result) => result.map_err(|e| match e {
                CallError::Unreachable(e) => StreamingError::Unreachable(Unreachable::new(&e)),
                other => {
                    StreamingError::Network(NetworkError::new(&io::Error::other(other.to_string())))
                }
            }),
            openraft::rt::Select2::Second(closed) => {
                self.conn = None;
                Err(StreamingError::Closed(closed))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The server.

/// What the server does with each request kind (implemented by `MetadataRaft`'s inner state).
pub trait Service {
    /// Handles one request whose frame is well formed and whose cluster id matches; returns the
    /// reply payload (`Result<T, RemoteError>` as JSON), or an error for a payload that does
    /// not decode (the connection then closes).
    fn handle(
        &self,
        kind: Kind,
        from: i32,
        payload: Vec<u8>,
    ) -> futures::future::LocalBoxFuture<'_, io::Result<Vec<u8>>>;
}

/// Encodes a reply payload.
pub fn reply_payload<T: Serialize>(result: &Result<T, RemoteError>) -> io::Result<Vec<u8>> {
    serde_json::to_vec(result).map_err(io::Error::other)
}

/// Decodes a request payload (a bad one closes the connection).
pub fn request<T: DeserializeOwned>(payload: &[u8]) -> io::Result<T> {
    serde_json::from_slice(payload).map_err(json_err)
}

/// Accepts on `listener` until the task is dropped, at most `CONTROL_CONNECTIONS_MAX`
/// connections at once, each served by its own task.
pub async fn accept_loop<S: Service + 'static>(
    listener: TcpListener,
    local: Rc<Local>,
    service: Rc<S>,
) {
    let open = Rc::new(Cell::new(0usize));
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(err) => {
                tracing::warn!(error = %err, "CONTROLLER listener accept failed");
                GlommioRuntime::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if open.get() >= limits::CONTROL_CONNECTIONS_MAX {
            tracing::warn!("CONTROLLER listener at its connection limit; closing a new connection");
            continue;
        }
        let _ = stream.set_nodelay(true);
        open.set(open.get() + 1);
        let (open, local, service) = (open.clone(), local.clone(), service.clone());
        glommio::spawn_local(async move {
            let peer = stream.peer_addr().ok();
            if let Err(err) = serve_connection(stream, &local, &*service).await {
                tracing::warn!(peer = ?peer, error = %err, "closing CONTROLLER connection");
            }
            open.set(open.get() - 1);
        })
        .detach();
    }
}

async fn serve_connection<S: Service, T: AsyncRead + AsyncWrite + Unpin>(
    mut stream: T,
    local: &Local,
    service: &S,
) -> io::Result<()> {
    while let Some(frame) = read_frame(&mut stream).await? {
        let ours = local.cluster_id.borrow().clone();
        if !ours.is_empty() && !frame.cluster_id.is_empty() && ours != frame.cluster_id {
            tracing::warn!(from = frame.node_id, ours = %ours, theirs = %frame.cluster_id,
                "refusing a CONTROLLER request from another cluster");
            let refused: Result<(), RemoteError> = Err(RemoteError::ClusterIdMismatch {
                ours: ours.clone(),
                theirs: frame.cluster_id,
            });
            let reply = encode_frame(Kind::Reply, &ours, local.node_id, &reply_payload(&refused)?)?;
            stream.write_all(&reply).await?;
            stream.flush().await?;
            return Ok(());
        }
        if frame.kind == Kind::Reply {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a reply frame sent as a request",
            ));
        }
        let payload = service
            .handle(frame.kind, frame.node_id, frame.payload)
            .await?;
        let reply = encode_frame(Kind::Reply, &ours, local.node_id, &payload)?;
        stream.write_all(&reply).await?;
        stream.flush().await?;
    }
    Ok(())
}

/// A reply to a forwarded proposal.
pub type ForwardReply = Result<Outcome, RemoteError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let bytes = encode_frame(Kind::Forward, "abc", 7, b"{}").unwrap();
        let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        assert_eq!(len, bytes.len() - 4);
        let frame = decode_frame(&bytes[4..]).unwrap();
        assert_eq!(
            frame,
            Frame {
                kind: Kind::Forward,
                cluster_id: "abc".into(),
                node_id: 7,
                payload: b"{}".to_vec()
            }
        );
    }

    #[test]
    fn broken_frames_are_errors_not_panics() {
        let good = encode_frame(Kind::Vote, "cluster", 1, b"[1,2]").unwrap();
        let body = &good[4..];
        // Every truncation of the body, and every byte flipped, decodes or fails cleanly.
        for cut in 0..body.len() {
            let _ = decode_frame(&body[..cut]);
        }
        for at in 0..body.len() {
            let mut bad = body.to_vec();
            bad[at] ^= 0xff;
            let _ = decode_frame(&bad);
        }
        assert_eq!(
            decode_frame(&[2, 1, 0, 0, 0, 0, 0, 0]),
            Err(FrameError::Version(2))
        );
        assert_eq!(
            decode_frame(&[1, 99, 0, 0, 0, 0, 0, 0]),
            Err(FrameError::Kind(99))
        );
        assert_eq!(
            decode_frame(&[1, 1, 0xff, 0xff, 0, 0, 0, 0]),
            Err(FrameError::ClusterIdLength(0xffff))
        );
        assert_eq!(decode_frame(&[1, 1, 0]), Err(FrameError::Short(3)));
    }

    #[test]
    fn an_oversized_length_prefix_is_refused_before_reading() {
        let mut bytes = ((limits::CONTROL_FRAME_BYTES_MAX + 1) as u32)
            .to_be_bytes()
            .to_vec();
        bytes.extend_from_slice(&[0; 16]);
        let mut reader = futures::io::Cursor::new(bytes);
        let err = futures::executor::block_on(read_frame(&mut reader)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
