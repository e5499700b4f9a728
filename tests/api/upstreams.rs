//! Small upstreams for tests that need exact control: an echo server (what did the target
//! receive?) and a scripted stream (the test decides when each line is sent).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use tokio::sync::mpsc;

/// What the echo upstream saw of the last request.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub method: String,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

pub struct Echo {
    pub url: String,
    pub seen: Arc<Mutex<Option<Seen>>>,
}

/// An upstream that records each request and answers `200 {"ok":true}`.
pub async fn spawn_echo() -> Echo {
    let seen: Arc<Mutex<Option<Seen>>> = Arc::default();
    let record = seen.clone();
    let app = Router::new().fallback(move |req: Request| {
        let record = record.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
            if is_monitor_poll(&parts.method, parts.uri.path()) {
                return Response::new(Body::from(r#"{"models":[]}"#));
            }
            *record.lock().unwrap() = Some(Seen {
                method: parts.method.to_string(),
                path_and_query: parts.uri.path_and_query().unwrap().to_string(),
                headers: parts.headers,
                body: body.to_vec(),
            });
            if parts.method == Method::HEAD {
                return Response::new(Body::empty());
            }
            Response::new(Body::from(r#"{"ok":true}"#))
        }
    });
    let url = serve(app).await;
    Echo { url, seen }
}

/// foreman's target monitor polls these; tests assert on the other requests.
fn is_monitor_poll(method: &Method, path: &str) -> bool {
    method == Method::GET && ["/api/version", "/api/ps", "/api/tags"].contains(&path)
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// An upstream whose one NDJSON response is fed line by line by the test.
pub async fn spawn_scripted() -> (String, mpsc::Sender<Bytes>) {
    let (tx, rx) = mpsc::channel::<Bytes>(1);
    let rx = Arc::new(tokio::sync::Mutex::new(Some(rx)));
    let app = Router::new().fallback(move |req: Request| {
        let rx = rx.clone();
        async move {
            if is_monitor_poll(req.method(), req.uri().path()) {
                return Response::new(Body::from(r#"{"models":[]}"#));
            }
            let rx = rx.lock().await.take().expect("one scripted response");
            let stream = futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
            });
            let mut r = Response::new(Body::from_stream(stream));
            r.headers_mut()
                .insert("content-type", "application/x-ndjson".parse().unwrap());
            r
        }
    });
    (serve(app).await, tx)
}

/// An upstream that answers every request with `body`, in `chunk`-sized pieces.
pub async fn spawn_fixed(body: Arc<Vec<u8>>, chunk: usize) -> String {
    let app = Router::new().fallback(move || {
        let body = body.clone();
        async move {
            let pieces: Vec<Result<Bytes, std::io::Error>> = body
                .chunks(chunk)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            Response::new(Body::from_stream(futures::stream::iter(pieces)))
        }
    });
    serve(app).await
}
