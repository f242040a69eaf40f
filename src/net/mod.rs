//! Per-shard listener (SO_REUSEPORT, so the kernel spreads connections across
//! shards) and the connection loop. Responses leave in request order.

pub mod connection;

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use glommio::net::TcpListener;

use crate::runtime::Shard;

/// Accepts until `stop` is set. Connections over the shard's bound are closed at once.
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener, stop: Arc<AtomicBool>) {
    let max = (shard
        .config
        .int(
            "max.connections",
            crate::limits::CONNECTIONS_MAX_DEFAULT as i64,
        )
        .max(1) as usize)
        .div_ceil(shard.nr_shards);
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            while !stop.load(Ordering::Relaxed) {
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
            None
        })
        .await;
        let stream = match accepted {
            None => return,
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                tracing::warn!(shard = shard.id.0, error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if shard.connections.get() >= max {
            tracing::warn!(
                shard = shard.id.0,
                max,
                "connection limit reached; closing new connection"
            );
            drop(stream);
            continue;
        }
        shard.connections.set(shard.connections.get() + 1);
        let s = shard.clone();
        glommio::spawn_local(async move {
            connection::serve(s.clone(), stream).await;
            s.connections.set(s.connections.get() - 1);
        })
        .detach();
    }
}

/// Ends the reads of every open connection (their in-flight requests still get
/// answers), then waits (bounded) for them to finish.
pub async fn drain_connections(shard: &Rc<Shard>, limit: Duration) {
    for fd in shard.open_sockets.borrow().values() {
        // SAFETY: shutdown(2) on a descriptor owned by a live connection of this shard.
        unsafe {
            libc::shutdown(*fd, libc::SHUT_RD);
        }
    }
    let deadline = std::time::Instant::now() + limit;
    while shard.connections.get() > 0 && std::time::Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    if shard.connections.get() > 0 {
        tracing::warn!(
            shard = shard.id.0,
            open = shard.connections.get(),
            "connections still open at shutdown"
        );
    }
}
