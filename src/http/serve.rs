//! The HTTP server: accepts connections under a cap and serves each with hyper's HTTP/1
//! connection, whose header read timeout closes a client that is slow to send a request or
//! idle between two. `axum::serve` has neither setting; this replaces it and keeps its
//! graceful shutdown.
//!
//! What bounds a client, from the first byte to the last:
//! - the connection cap ([`EdgeLimits::max_connections`]): beyond it, connections wait in the
//!   listen backlog; a slot frees when a connection closes, and every connection closes at the
//!   latest after one of the timeouts below, so a waiting one is served in its turn;
//! - the header read timeout: a request's headers, and the next request on an idle keep-alive
//!   connection, must arrive within it (hyper runs the same timer for both);
//! - the body timeouts ([`super::router`]): a pause between two pieces of a body, and the whole
//!   of a body-reading request;
//! - each route's body limit, and authentication from the headers before any body is read.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Largest request head (request line and headers) accepted; beyond it, 431. Room for a
/// proxy's headers and an SSO cookie.
const MAX_HEADER_BYTES: usize = 32 * 1024;

/// The limits of the HTTP edge. [`EdgeLimits::default`] is what production runs; tests shorten
/// the timeouts and lower the caps.
#[derive(Debug, Clone)]
pub struct EdgeLimits {
    /// Time for a client to send a request's headers, counted from the connection's start or
    /// the end of the previous answer: an idle keep-alive connection is closed after it too.
    pub header_read_timeout: Duration,
    /// Longest pause between two pieces of a request body.
    pub body_idle_timeout: Duration,
    /// Time for a request that has a body (the webhook, the acknowledgement) to be received
    /// whole and answered.
    pub body_read_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Event streams (`GET /api/events`) open at once, so that they cannot take every
    /// connection; more are answered 503.
    pub max_event_streams: usize,
    /// Webhook bodies read at once: each may hold up to 5 MiB while it arrives, so this bounds
    /// the memory a slow-body attack can take. More wait (within `body_read_timeout`).
    pub max_webhook_bodies: usize,
}

impl Default for EdgeLimits {
    fn default() -> Self {
        Self {
            // A request's headers fit one packet; ten seconds is generous on any link.
            header_read_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(10),
            // GitHub itself gives up on a delivery after 10 s.
            body_read_timeout: Duration::from_secs(30),
            // Well under the usual 1024 open files, leaving room for git and docker children.
            max_connections: 256,
            max_event_streams: 64,
            max_webhook_bodies: 4,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then stops accepting, lets the
/// requests in flight finish (each bounded by the timeouts) and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: EdgeLimits,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // Without it a request head may fill hyper's whole read buffer (~400 KiB), times the
        // connection cap. The buffer itself keeps hyper's size: body pieces that large are
        // mapped and unmapped whole by the allocator, so memory goes back to the system after
        // a slow-body attack; with 64 KiB pieces it stayed in malloc's arenas (see the
        // README's figures).
        .max_header_size(MAX_HEADER_BYTES);
    loop {
        // The slot is taken before accepting, so a connection beyond the cap waits in the
        // kernel's backlog, costing this process nothing, until another closes.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                // The semaphore is never closed.
                Err(_) => break,
            },
            () = shutdown.cancelled() => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    if !is_connection_error(&e) {
                        // Out of file descriptors, say: accepting again at once would spin.
                        tracing::error!(error = %e, "cannot accept a connection");
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                            () = shutdown.cancelled() => break,
                        }
                    }
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                // A timeout or a client gone away: the client's doing, not worth more.
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Errors of one connection that came and went before it was accepted: accept the next.
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}
