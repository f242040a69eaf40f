//! The HTTP admin listener (`admin.listener`, Redpanda's admin port 9644 by default):
//! `/metrics` (Prometheus text 0.0.4), `/v1/health`, `/v1/ready`, `/v1/cluster`,
//! `/v1/partitions`.
//!
//! Served on shard 0 only: scrapes are rare (seconds apart) and small, and shard 0 already holds
//! the node's cluster state (the Raft member, the controller id); serving on every shard would
//! add a second port per core or SO_REUSEPORT spreading of a handful of connections, for no
//! gain. A scrape is the only time metrics cross cores (see `metrics`).
//!
//! HTTP/1.1 framing is parsed by `httparse` (parsing only, no I/O: it fits glommio's executor
//! as-is). One request per connection (`Connection: close`), every bound named in `limits`:
//! request bytes, header count, connections open, and the time one exchange may take.
//!
//! Architecture Invariant: nothing here runs on the Kafka data path; a bad request is a 400 and
//! a log line, never a panic.

mod http;
mod routes;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};

use crate::limits;
use crate::runtime::Shard;

/// Accepts admin connections on shard 0 until `stop` is set.
pub async fn serve(shard: Rc<Shard>, listener: TcpListener, stop: Arc<AtomicBool>) {
    let open = Rc::new(Cell::new(0usize));
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
                tracing::warn!(error = %e, "admin accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if open.get() >= limits::ADMIN_CONNECTIONS_MAX {
            tracing::warn!(
                limit = limits::ADMIN_CONNECTIONS_MAX,
                "admin connection limit reached; closing new connection"
            );
            drop(stream);
            continue;
        }
        open.set(open.get() + 1);
        let shard = shard.clone();
        let open = open.clone();
        glommio::spawn_local(async move {
            let timeout = Duration::from_millis(limits::ADMIN_EXCHANGE_TIMEOUT_MS);
            let exchange = futures_lite::future::or(
                async {
                    exchange(&shard, stream).await;
                    true
                },
                async {
                    glommio::timer::sleep(timeout).await;
                    false
                },
            );
            if !exchange.await {
                tracing::info!(?timeout, "admin request not done in time; closing");
            }
            open.set(open.get() - 1);
        })
        .detach();
    }
}

/// Reads one request (bounded), answers it, closes.
async fn exchange(shard: &Rc<Shard>, mut stream: TcpStream) {
    let mut buf = vec![0u8; limits::ADMIN_REQUEST_BYTES_MAX];
    let mut filled = 0;
    let request = loop {
        let n = match stream.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        filled += n;
        match http::parse(&buf[..filled]) {
            http::Parsed::Request(r) => break Ok(r),
            http::Parsed::Partial if filled < buf.len() => continue,
            http::Parsed::Partial => {
                break Err("request head larger than the admin bound".to_string())
            }
            http::Parsed::Bad(why) => break Err(why),
        }
    };
    let response = match request {
        Ok(request) => routes::answer(shard, &request).await,
        Err(why) => {
            tracing::info!(reason = %why, "bad admin request");
            http::Response::text(400, format!("bad request: {why}\n"))
        }
    };
    let head_only =
        matches!(http::parse(&buf[..filled]), http::Parsed::Request(r) if r.method == "HEAD");
    let _ = stream.write_all(&response.encode(head_only)).await;
    let _ = stream.close().await;
}

/// Binds `admin.listener` (before any shard starts, so a taken port stops start-up with a
/// message naming the property). `None` when it is `-1`.
pub fn bind(config: &crate::config::BrokerConfig) -> anyhow::Result<Option<std::net::TcpListener>> {
    let Some(addr) = config.admin_listener()? else {
        return Ok(None);
    };
    let listener = std::net::TcpListener::bind(addr).map_err(|e| {
        anyhow::anyhow!(
            "admin.listener: cannot bind {addr}: {e} (another broker or process holds it? \
             set admin.listener to a free HOST:PORT, HOST:0 for any free port, or -1 to turn it off)"
        )
    })?;
    Ok(Some(listener))
}
