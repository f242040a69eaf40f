//! Per-shard listener (SO_REUSEPORT, so the kernel spreads connections across
//! shards) and the connection loop. Responses leave in request order.

pub mod budget;
pub mod connection;
pub mod responses;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::net::TcpListener;

use crate::limits;
use crate::runtime::Shard;
use connection::ConnectionLimits;

/// Accepts until `stop` is set. A connection over the shard's bound, or over its
/// IP's bound, is closed at once.
///
/// Every bound here is per shard, as the kernel spreads connections over shards
/// (SO_REUSEPORT): `max.connections` and `max.connections.per.ip` (and its
/// overrides) are divided by the number of shards, rounded up. With one shard
/// they are exact; with more, one IP may open up to the rounded-up share on each.
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener, stop: Arc<AtomicBool>) {
    let config = &shard.config;
    let per_shard = |n: usize| n.max(1).div_ceil(shard.nr_shards);
    let max =
        per_shard(config.int("max.connections", limits::CONNECTIONS_MAX_DEFAULT as i64) as usize);
    let per_ip_default = per_shard(config.max_connections_per_ip());
    let per_ip_overrides: HashMap<IpAddr, usize> = config
        .connections_per_ip_overrides()
        .unwrap_or_default()
        .into_iter()
        // An override of 0 refuses the address outright.
        .map(|(ip, n)| (ip.to_canonical(), if n == 0 { 0 } else { per_shard(n) }))
        .collect();
    let conn_limits = Rc::new(ConnectionLimits {
        frame_bytes_max: config.socket_request_max_bytes(),
        idle: config.connections_max_idle(),
        frame_read_timeout: config.socket_request_read_timeout(),
        budget: budget::RequestBudget::new(
            config
                .queued_max_request_bytes()
                .div_ceil(shard.nr_shards)
                .max(1),
        ),
        response_bytes_max: limits::RESPONSE_QUEUED_BYTES_PER_CONNECTION_MAX,
    });
    crate::metrics::with(|m| m.set_request_budget(conn_limits.budget.clone()));
    let per_ip: Rc<RefCell<HashMap<IpAddr, usize>>> = Rc::new(RefCell::new(HashMap::new()));
    let refusals = RefusalLog::default();
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
            refusals.note(
                shard.id.0,
                "connection limit (max.connections) reached; closing new connection",
                None,
                max,
            );
            drop(stream);
            continue;
        }
        // Canonical, so an IPv4 client of a dual-stack listener (::ffff:a.b.c.d) counts as a.b.c.d.
        let ip = stream.peer_addr().ok().map(|a| a.ip().to_canonical());
        if let Some(ip) = ip {
            let limit = per_ip_overrides.get(&ip).copied().unwrap_or(per_ip_default);
            let open = per_ip.borrow().get(&ip).copied().unwrap_or(0);
            if open >= limit {
                refusals.note(shard.id.0, "connection limit per IP (max.connections.per.ip) reached; closing new connection", Some(ip), limit);
                drop(stream);
                continue;
            }
            *per_ip.borrow_mut().entry(ip).or_insert(0) += 1;
        }
        shard.connections.set(shard.connections.get() + 1);
        let s = shard.clone();
        let conn_limits = conn_limits.clone();
        let per_ip = per_ip.clone();
        glommio::spawn_local(async move {
            connection::serve(s.clone(), stream, conn_limits).await;
            s.connections.set(s.connections.get() - 1);
            if let Some(ip) = ip {
                let mut map = per_ip.borrow_mut();
                if let Some(n) = map.get_mut(&ip) {
                    *n -= 1;
                    if *n == 0 {
                        map.remove(&ip);
                    }
                }
            }
        })
        .detach();
    }
}

/// Logs refused connections at most once per `REFUSAL_LOG_INTERVAL_MS`, with the
/// number refused since the last line, so a flood of connections is not a flood of logs.
#[derive(Default)]
struct RefusalLog {
    last: Cell<Option<Instant>>,
    suppressed: Cell<u64>,
}

impl RefusalLog {
    fn note(&self, shard: usize, what: &str, ip: Option<IpAddr>, limit: usize) {
        let now = Instant::now();
        let interval = Duration::from_millis(limits::REFUSAL_LOG_INTERVAL_MS);
        if self
            .last
            .get()
            .is_some_and(|t| now.duration_since(t) < interval)
        {
            self.suppressed.set(self.suppressed.get() + 1);
            return;
        }
        self.last.set(Some(now));
        let also_refused = self.suppressed.replace(0);
        tracing::warn!(shard, ?ip, limit, also_refused, "{what}");
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
