//! One client connection: a reader that frames and decodes requests and starts
//! a task for each, and a writer that sends the answers in request order.
//!
//! Clients pipeline requests (librdkafka up to 5 per connection) and match
//! answers by order, so a slow request delays the answers queued behind it but
//! never reorders them. The queue between the two is bounded
//! (`INFLIGHT_REQUESTS_PER_CONNECTION_MAX`): a client that sends faster than it
//! reads stops being read.

use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_lite::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use glommio::channels::local_channel;
use glommio::net::TcpStream;
use glommio::task::JoinHandle;

use std::os::fd::{AsRawFd, RawFd};

use crate::handler::{self, Reply};
use crate::limits;
use crate::protocol::frame::Piece;
use crate::protocol::frame::{self, Decoded};
use crate::runtime::Shard;
use crate::storage::slice::FileSlice;

pub async fn serve(shard: Rc<Shard>, stream: TcpStream) {
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
    let shared = Rc::new(RefCell::new(stream));
    let reader = Half(shared.clone());
    let mut writer = Half(shared);
    let writer_shard = shard.clone();
    let (tx, rx) = local_channel::new_bounded::<JoinHandle<Reply>>(
        limits::INFLIGHT_REQUESTS_PER_CONNECTION_MAX,
    );

    let writer_task = glommio::spawn_local(async move {
        while let Some(handle) = rx.recv().await {
            match handle.await {
                Some(Reply::Response(bytes)) => {
                    if let Err(e) = writer.write_all(&bytes).await {
                        tracing::debug!(error = %e, "write failed; closing");
                        return;
                    }
                }
                Some(Reply::Pieces(pieces)) => {
                    if let Err(e) =
                        write_pieces(&writer_shard, &mut writer, socket_fd, pieces).await
                    {
                        tracing::debug!(error = %e, "write failed; closing");
                        return;
                    }
                }
                Some(Reply::NoResponse) => {}
                Some(Reply::Close) | None => {
                    let _ = writer.close().await;
                    return;
                }
            }
        }
        let _ = writer.close().await;
    });

    // Each request takes its place in the connection's order as it is read (see
    // `handler::dispatch` for which requests keep it).
    let order = crate::order::OrderQueue::new();
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let max_frame = shard.config.socket_request_max_bytes();
    loop {
        let frame = match read_frame(&shard, &mut reader, max_frame, &peer).await {
            Some(f) => f,
            None => break,
        };
        shard.stats.requests.set(shard.stats.requests.get() + 1);
        let reply_task = match frame::decode_request(frame) {
            Ok(Decoded::Request(header, request)) => {
                let ctx =
                    handler::RequestContext::new(shard.clone(), &header, &peer, Some(order.take()));
                glommio::spawn_local(async move { handler::dispatch(ctx, header, *request).await })
                    .detach()
            }
            Ok(Decoded::Immediate(bytes)) => {
                glommio::spawn_local(async move { Reply::Response(bytes) }).detach()
            }
            Err(e) => {
                tracing::warn!(peer = %peer, error = %e, "malformed request; closing connection");
                let _ = tx
                    .send(glommio::spawn_local(async { Reply::Close }).detach())
                    .await;
                break;
            }
        };
        if tx.send(reply_task).await.is_err() {
            break;
        }
    }
    drop(tx);
    writer_task.await;
    shard.open_sockets.borrow_mut().remove(&connection_id);
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
            Ok(_) => {}
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

/// Reads one size-prefixed frame. `None` on EOF, shutdown, or a size outside
/// (0, max] — the size is checked before anything is allocated.
async fn read_frame<R: futures_lite::AsyncRead + Unpin>(
    shard: &Rc<Shard>,
    reader: &mut R,
    max: usize,
    peer: &str,
) -> Option<Bytes> {
    let mut size_buf = [0u8; 4];
    let read = futures_lite::future::or(
        async { Some(reader.read_exact(&mut size_buf).await) },
        async {
            while !shard.shutting_down.get() {
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
            None
        },
    )
    .await;
    match read {
        None | Some(Err(_)) => return None,
        Some(Ok(())) => {}
    }
    let size = i32::from_be_bytes(size_buf);
    if size <= 0 || size as usize > max {
        tracing::warn!(peer = %peer, size, max, "frame size out of bounds; closing connection");
        return None;
    }
    let mut buf = BytesMut::zeroed(size as usize);
    if let Err(e) = reader.read_exact(&mut buf).await {
        tracing::debug!(peer = %peer, error = %e, "connection closed mid-frame");
        return None;
    }
    Some(buf.freeze())
}

/// One direction of a connection. Both halves share the stream on this one
/// thread; a borrow lasts only for one synchronous poll, never across `.await`.
struct Half(Rc<RefCell<TcpStream>>);

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
        Pin::new(&mut *s).poll_write(cx, buf)
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
