//! The accept loop. It is ours (not `axum::serve`) so the simulator can really *sleep*: while
//! asleep the listening socket is closed, so clients get connection refused, as with a
//! stopped Ollama; afterwards it binds the same address again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::control::Control;

/// How often the loop checks whether it was told to sleep.
const SLEEP_POLL: Duration = Duration::from_millis(20);

pub async fn serve(
    mut listener: TcpListener,
    addr: SocketAddr,
    router: axum::Router,
    control: Arc<Control>,
    stop: CancellationToken,
    connections: TaskTracker,
) {
    loop {
        if let Some(until) = control.asleep_until() {
            drop(listener);
            tracing::info!(?until, "simulator asleep: refusing connections");
            tokio::select! {
                () = tokio::time::sleep_until(until.into()) => {}
                () = stop.cancelled() => return,
            }
            listener = match rebind(addr, &stop).await {
                Some(l) => l,
                None => return,
            };
        }
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = tokio::time::sleep(SLEEP_POLL) => continue,
            () = stop.cancelled() => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let stop = stop.clone();
        connections.spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                () = stop.cancelled() => {}
            }
        });
    }
}

async fn rebind(addr: SocketAddr, stop: &CancellationToken) -> Option<TcpListener> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return Some(l),
            Err(e) if Instant::now() > deadline => {
                tracing::error!(error = %e, %addr, "cannot bind again after sleeping");
                return None;
            }
            Err(_) => {}
        }
        tokio::select! {
            () = tokio::time::sleep(SLEEP_POLL) => {}
            () = stop.cancelled() => return None,
        }
    }
}
