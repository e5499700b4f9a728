//! The accept loop. foreman runs hyper's HTTP/1.1 server itself (rather than `axum::serve`) for
//! three things a public-facing daemon needs:
//! - a **header read timeout** (`request_read_timeout`): a client that trickles its request
//!   headers (slowloris) is disconnected instead of holding a connection forever;
//! - **accept errors survived**: out of file descriptors (EMFILE) pauses accepting for a moment
//!   instead of spinning or ending the server;
//! - `TCP_NODELAY` on every connection (streamed NDJSON lines are small; Nagle would hold them).
//!
//! Request *bodies* are bounded by the same timeout per frame (`RequestBodyTimeoutLayer` in the
//! router). Shutdown is graceful: stop accepting, let in-flight requests finish, close idle
//! connections; dropping the future aborts whatever is left.

use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long accepting pauses after an accept error (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `router` on `listener` until `stop`, then drains connections gracefully.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_timeout: Duration,
    stop: CancellationToken,
) {
    let graceful = GracefulShutdown::new();
    // Owned here so that dropping this future (the shutdown deadline) aborts every connection.
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed; pausing before the next accept");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(
                TokioIo::new(stream),
                TowerToHyperService::new(router.clone()),
            );
        let connection = graceful.watch(connection);
        connections.spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    graceful.shutdown().await;
    while connections.join_next().await.is_some() {}
}
