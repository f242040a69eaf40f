//! One client connection: a reader that frames and decodes requests and starts
//! a task for each, and a writer that sends the answers in request order.
//!
//! Clients pipeline requests (librdkafka up to 5 per connection) and match
//! answers by order, so a slow request delays the answers queued behind it but
//! never reorders them. The queue between the two is bounded
//! (`INFLIGHT_REQUESTS_PER_CONNECTION_MAX`): a client that sends faster than it
//! reads stops being read.

use std::cell::{Cell, RefCell};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_lite::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use glommio::channels::local_channel;
use glommio::net::TcpStream;
use glommio::task::JoinHandle;

use std::os::fd::{AsRawFd, RawFd};

use super::budget::{BudgetPermit, RequestBudget};
use super::responses::{Held, ResponseGate, ResponseQueue};
use crate::handler::{self, Reply};
use crate::limits;
use crate::protocol::frame::Piece;
use crate::protocol::frame::{self, Decoded};
use crate::runtime::Shard;
use crate::storage::slice::FileSlice;

/// What bounds one connection's reading; shared by the connections of a shard.
pub struct ConnectionLimits {
    /// `socket.request.max.bytes`: larger frames close the connection before any allocation.
    pub frame_bytes_max: usize,
    /// `connections.max.idle.ms`: a connection with no request read and none in
    /// flight for this long is closed. `None`: never.
    pub idle: Option<Duration>,
    /// `socket.request.read.timeout.ms`: once a frame's size is read, the rest of it
    /// must arrive within this (time spent waiting for the budget not counted).
    pub frame_read_timeout: Duration,
    /// This shard's share of `queued.max.request.bytes`.
    pub budget: Rc<RequestBudget>,
    /// Response bytes one connection may hold unsent before it stops reading
    /// (`RESPONSE_QUEUED_BYTES_PER_CONNECTION_MAX`).
    pub response_bytes_max: usize,
}

pub async fn serve(shard: Rc<Shard>, stream: TcpStream, limits: Rc<ConnectionLimits>) {
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".to_string());
    let _ = stream.set_nodelay(true);
    let socket_fd = stream.as_raw_fd();
    let connection_id = shard.next_connection_id.get();
    shard.next_connection_id.set(connection_id + 1);
    shard
        .open_sockets
        .borrow_mut()
        .insert(connection_id, socket_fd);
    // Shutdown ends reads with SHUT_RD on every registered socket; a connection
    // whose task first runs after that must not start reading.
    if shard.shutting_down.get() {
        shard.open_sockets.borrow_mut().remove(&connection_id);
        return;
    }
    // Requests read whose responses are not yet written: the idle timer does not
    // close a connection that is waiting for its own answers (a long poll, a join).
    let in_flight = Rc::new(Cell::new(0usize));
    let writer_in_flight = in_flight.clone();
    // The bytes of responses made and not yet written (see `responses`).
    let responses = ResponseQueue::new(limits.response_bytes_max);
    let writer_responses = responses.clone();
    // When a byte last left for the client: a writer that makes no progress for
    // `connections.max.idle.ms` (a client that does not read) closes the connection.
    let progress = Rc::new(Cell::new(Instant::now()));
    let shared = Rc::new(RefCell::new(stream));
    let reader = Half(shared.clone(), progress.clone());
    let mut writer = Half(shared, progress.clone());
    let writer_shard = shard.clone();
    let idle = limits.idle;
    let writer_peer = peer.clone();
    let (tx, rx) = local_channel::new_bounded::<(u64, JoinHandle<(Reply, Option<Held>)>)>(
        limits::INFLIGHT_REQUESTS_PER_CONNECTION_MAX,
    );

    let writer_task = glommio::spawn_local(async move {
        // However the writer ends, nobody waits for it to make room.
        struct CloseOnDrop(Rc<ResponseQueue>);
        impl Drop for CloseOnDrop {
            fn drop(&mut self) {
                self.0.close();
            }
        }
        let _close = CloseOnDrop(writer_responses.clone());
        while let Some((seq, handle)) = rx.recv().await {
            let Some((reply, held)) = handle.await else {
                let _ = writer.close().await;
                return;
            };
            writer_in_flight.set(writer_in_flight.get().saturating_sub(1));
            progress.set(Instant::now());
            let written = match reply {
                Reply::Response(bytes) => {
                    until_stalled(idle, &progress, writer.write_all(&bytes)).await
                }
                Reply::Pieces(pieces) => {
                    until_stalled(
                        idle,
                        &progress,
                        write_pieces(&writer_shard, &mut writer, socket_fd, pieces),
                    )
                    .await
                }
                Reply::NoResponse => Some(Ok(())),
                Reply::Close => {
                    let _ = writer.close().await;
                    return;
                }
            };
            drop(held);
            match written {
                Some(Ok(())) => writer_responses.written(seq),
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "write failed; closing");
                    return;
                }
                None => {
                    tracing::info!(peer = %writer_peer, ?idle, "client not reading its responses (connections.max.idle.ms); closing");
                    // Ends the reader's pending read too.
                    // SAFETY: shutdown(2) on the socket this connection owns.
                    unsafe {
                        libc::shutdown(socket_fd, libc::SHUT_RDWR);
                    }
                    return;
                }
            }
        }
        let _ = writer.close().await;
    });

    // Each request takes its place in the connection's order as it is read (see
    // `handler::dispatch` for which requests keep it).
    let order = crate::order::OrderQueue::new();
    // The read buffer counts in the shard's budget where it fits; where it does not, a
    // small one outside it (bounded by max.connections) keeps the connection usable.
    let buffer_permit = limits.budget.try_hold(limits::READ_BUFFER_BYTES);
    let buffer_bytes = match buffer_permit {
        Some(_) => limits::READ_BUFFER_BYTES,
        None => limits::READ_BUFFER_UNCOUNTED_BYTES,
    };
    let mut reader = BufReader::with_capacity(buffer_bytes, reader);
    let mut seq = 0u64;
    loop {
        // Muted while the connection holds more response bytes than its bound.
        responses.room_to_read().await;
        let (frame, permit) = match read_frame(&mut reader, &limits, &in_flight, &peer).await {
            Some(f) => f,
            None => break,
        };
        in_flight.set(in_flight.get() + 1);
        shard.stats.requests.set(shard.stats.requests.get() + 1);
        let this = seq;
        seq += 1;
        let frame_bytes = frame.len() + 4;
        let reply_task = match frame::decode_request(frame) {
            Ok(Decoded::Request(header, request)) => {
                let (api_key, started) = (header.request_api_key, Instant::now());
                let gate = Rc::new(ResponseGate::new(responses.clone(), this));
                let ctx =
                    handler::RequestContext::new(shard.clone(), &header, &peer, Some(order.take()))
                        .with_response_gate(gate.clone());
                let responses = responses.clone();
                // The frame's budget returns when the handler is done with its bytes;
                // the response's bytes count until the writer has written them.
                glommio::spawn_local(async move {
                    let reply = handler::dispatch(ctx, header, *request).await;
                    crate::metrics::with(|m| {
                        m.request_done(api_key, started.elapsed(), frame_bytes, reply_len(&reply))
                    });
                    drop(permit);
                    let held = responses.hold(reply_bytes(&reply));
                    gate.release();
                    (reply, Some(held))
                })
                .detach()
            }
            Ok(Decoded::Immediate(bytes)) => {
                let held = responses.hold(bytes.len());
                glommio::spawn_local(async move { (Reply::Response(bytes), Some(held)) }).detach()
            }
            Err(e) => {
                tracing::warn!(peer = %peer, error = %e, "malformed request; closing connection");
                let _ = tx
                    .send((
                        this,
                        glommio::spawn_local(async { (Reply::Close, None) }).detach(),
                    ))
                    .await;
                break;
            }
        };
        if tx.send((this, reply_task)).await.is_err() {
            break;
        }
    }
    drop(tx);
    writer_task.await;
    drop((reader, buffer_permit));
    shard.open_sockets.borrow_mut().remove(&connection_id);
}

/// The bytes a reply sends (file ranges included).
fn reply_len(reply: &Reply) -> usize {
    match reply {
        Reply::Pieces(pieces) => pieces
            .iter()
            .map(|p| match p {
                Piece::Bytes(b) => b.len(),
                Piece::File(f) => f.len,
            })
            .sum(),
        other => reply_bytes(other),
    }
}

/// The bytes a reply holds in memory (file ranges hold none).
fn reply_bytes(reply: &Reply) -> usize {
    match reply {
        Reply::Response(b) => b.len(),
        Reply::Pieces(pieces) => pieces
            .iter()
            .map(|p| match p {
                Piece::Bytes(b) => b.len(),
                Piece::File(_) => 0,
            })
            .sum(),
        Reply::NoResponse | Reply::Close => 0,
    }
}

/// Runs a write; `None` if no byte left for the client for `idle` (Kafka closes a
/// connection idle for `connections.max.idle.ms`, and one whose client does not read is).
async fn until_stalled<F: std::future::Future<Output = std::io::Result<()>>>(
    idle: Option<Duration>,
    progress: &Cell<Instant>,
    write: F,
) -> Option<std::io::Result<()>> {
    let Some(idle) = idle else {
        return Some(write.await);
    };
    futures_lite::future::or(async { Some(write.await) }, async {
        loop {
            let since = progress.get().elapsed();
            if since >= idle {
                return None;
            }
            glommio::timer::sleep(idle - since).await;
        }
    })
    .await
}

/// Writes a response made of bytes and file ranges; file ranges go by sendfile(2)
/// from the page cache straight to the socket.
async fn write_pieces(
    shard: &Rc<Shard>,
    writer: &mut Half,
    socket_fd: RawFd,
    pieces: Vec<Piece<FileSlice>>,
) -> std::io::Result<()> {
    for piece in pieces {
        match piece {
            Piece::Bytes(b) => writer.write_all(&b).await?,
            Piece::File(f) => {
                send_file(writer, socket_fd, &f).await?;
                let s = &shard.stats;
                s.sendfile_bytes.set(s.sendfile_bytes.get() + f.len as u64);
            }
        }
    }
    Ok(())
}

/// sendfile on the non-blocking socket. When the socket buffer is full
/// (EAGAIN), the next byte is written through the async stream, which waits for
/// writability without blocking the executor; then sendfile resumes.
async fn send_file(writer: &mut Half, socket_fd: RawFd, f: &FileSlice) -> std::io::Result<()> {
    use std::os::fd::BorrowedFd;
    let end = f.position as i64 + f.len as i64;
    let mut offset = f.position as i64;
    while offset < end {
        // SAFETY: the socket outlives this call (the connection owns it until the writer ends).
        let socket = unsafe { BorrowedFd::borrow_raw(socket_fd) };
        let count = (end - offset) as usize;
        match nix::sys::sendfile::sendfile64(socket, &*f.file, Some(&mut offset), count) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "segment shorter than the fetch range",
                ))
            }
            Ok(_) => writer.1.set(Instant::now()),
            Err(nix::errno::Errno::EAGAIN) => {
                let mut byte = [0u8; 1];
                let n = nix::sys::uio::pread(&*f.file, &mut byte, offset)?;
                if n != 1 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "segment shorter than the fetch range",
                    ));
                }
                writer.write_all(&byte).await?;
                offset += 1;
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Reads one size-prefixed frame, with the budget permit that accounts for it.
/// `None` on EOF, shutdown (SHUT_RD ends the read), an idle or read timeout, or a
/// size outside (0, max] — the size is checked, and the bytes are taken from the
/// budget, before anything is allocated.
async fn read_frame<R: futures_lite::AsyncBufRead + Unpin>(
    reader: &mut R,
    limits: &ConnectionLimits,
    in_flight: &Cell<usize>,
    peer: &str,
) -> Option<(Bytes, BudgetPermit)> {
    let mut size_buf = [0u8; 4];
    if !read_header(reader, &mut size_buf, limits.idle, in_flight, peer).await {
        return None;
    }
    let size = i32::from_be_bytes(size_buf);
    if size <= 0 || size as usize > limits.frame_bytes_max {
        let max = limits.frame_bytes_max;
        tracing::warn!(peer = %peer, size, max, "frame size out of bounds; closing connection");
        return None;
    }
    let size = size as usize;
    let timeout = limits.frame_read_timeout;
    let started = Instant::now();
    // Only a frame whose body has begun to arrive takes budget: a connection that
    // sends a size and then nothing holds no memory and blocks no one.
    let body_started = futures_lite::future::or(
        async { Some(reader.fill_buf().await.map(|b| !b.is_empty())) },
        async {
            glommio::timer::sleep(timeout).await;
            None
        },
    )
    .await;
    match body_started {
        Some(Ok(true)) => {}
        Some(Ok(false)) | Some(Err(_)) => {
            tracing::debug!(peer = %peer, "connection closed mid-frame");
            return None;
        }
        None => {
            tracing::warn!(peer = %peer, size, ?timeout, "frame not received in time; closing connection");
            return None;
        }
    }
    let before_wait = started.elapsed();
    let permit = limits.budget.acquire(size).await;
    let left = timeout.saturating_sub(before_wait);
    let body = futures_lite::future::or(async { Some(read_body(reader, size).await) }, async {
        glommio::timer::sleep(left).await;
        None
    })
    .await;
    match body {
        Some(Ok(frame)) => Some((frame, permit)),
        Some(Err(e)) => {
            tracing::debug!(peer = %peer, error = %e, "connection closed mid-frame");
            None
        }
        None => {
            tracing::warn!(peer = %peer, size, ?timeout, "frame not received in time; closing connection");
            None
        }
    }
}

/// Reads the 4-byte size. `false` on EOF, error, or `idle` passing with no byte of
/// a request and nothing in flight. One timer per idle period, no polling; the
/// read itself is never cancelled while the connection stays open (a partly read
/// size would be lost).
async fn read_header<R: futures_lite::AsyncRead + Unpin>(
    reader: &mut R,
    size_buf: &mut [u8; 4],
    idle: Option<Duration>,
    in_flight: &Cell<usize>,
    peer: &str,
) -> bool {
    let mut read = std::pin::pin!(reader.read_exact(size_buf));
    let Some(idle) = idle else {
        return read.await.is_ok();
    };
    loop {
        let done = futures_lite::future::or(async { Some(read.as_mut().await) }, async {
            glommio::timer::sleep(idle).await;
            None
        })
        .await;
        match done {
            Some(r) => return r.is_ok(),
            None if in_flight.get() > 0 => continue,
            None => {
                tracing::info!(peer = %peer, ?idle, "connection idle (connections.max.idle.ms); closing");
                return false;
            }
        }
    }
}

/// Reads `size` bytes. The buffer's pages are touched (zeroed) one chunk ahead of
/// the bytes that fill them, so memory follows what has arrived, not what was claimed.
async fn read_body<R: futures_lite::AsyncRead + Unpin>(
    reader: &mut R,
    size: usize,
) -> std::io::Result<Bytes> {
    let mut buf = BytesMut::with_capacity(size);
    let mut filled = 0;
    while filled < size {
        if filled == buf.len() {
            buf.resize(size.min(filled + limits::FRAME_READ_CHUNK_BYTES), 0);
        }
        let n = reader.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        filled += n;
    }
    Ok(buf.freeze())
}

/// One direction of a connection. Both halves share the stream on this one
/// thread; a borrow lasts only for one synchronous poll, never across `.await`.
/// The cell is when a byte was last written.
struct Half(Rc<RefCell<TcpStream>>, Rc<Cell<Instant>>);

impl futures_lite::AsyncRead for Half {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut s = self.0.borrow_mut();
        Pin::new(&mut *s).poll_read(cx, buf)
    }
}

impl futures_lite::AsyncWrite for Half {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut s = self.0.borrow_mut();
        let written = Pin::new(&mut *s).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            if n > 0 {
                self.1.set(Instant::now());
            }
        }
        written
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let mut s = self.0.borrow_mut();
        Pin::new(&mut *s).poll_flush(cx)
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let mut s = self.0.borrow_mut();
        Pin::new(&mut *s).poll_close(cx)
    }
}
