//! Retries on 429/503 against a scripted stub server (the daemon rarely answers these, so a
//! stub makes every branch reachable without waiting).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use foreman_client::{Client, Error};

/// Serves `GET /status`: the first `failures` answers are `status` with `retry_after`, then 200.
async fn stub(
    failures: usize,
    status: StatusCode,
    retry_after: &'static str,
) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = Router::new().route(
        "/status",
        get(move |headers: HeaderMap| {
            let counter = counter.clone();
            async move {
                assert_eq!(
                    headers.get("authorization").and_then(|v| v.to_str().ok()),
                    Some("Bearer t0ken"),
                    "the token is sent on every attempt"
                );
                let n = counter.fetch_add(1, Ordering::SeqCst);
                if n < failures {
                    let body = r#"{"error":{"code":"unavailable","message":"busy"}}"#;
                    return (status, [("retry-after", retry_after)], body).into_response();
                }
                ok_status()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let url = format!(
        "http://{}",
        listener.local_addr().unwrap_or_else(|e| panic!("{e}"))
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, hits)
}

fn ok_status() -> Response {
    let body = serde_json::json!({
        "target": {"url": "http://t", "state": "up", "since": "2026-01-01T00:00:00Z",
                   "loaded_models": [], "available_models": [], "vram_used_bytes": 0},
        "queue": {"by_state": {}, "queued_by_key": {}}
    });
    axum::Json(body).into_response()
}

fn client(url: &str, retries: u32) -> Client {
    Client::builder(url)
        .token("t0ken")
        .max_retries(retries)
        .max_retry_wait(Duration::from_secs(5))
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn retries_503_and_429_until_success() {
    for status in [
        StatusCode::SERVICE_UNAVAILABLE,
        StatusCode::TOO_MANY_REQUESTS,
    ] {
        let (url, hits) = stub(2, status, "0").await;
        let answer = client(&url, 3).status().await;
        assert!(answer.is_ok(), "{status}: {answer:?}");
        assert_eq!(
            hits.load(Ordering::SeqCst),
            3,
            "{status}: two failures, one success"
        );
    }
}

#[tokio::test]
async fn gives_up_after_the_bound_with_the_structured_error() {
    let (url, hits) = stub(10, StatusCode::SERVICE_UNAVAILABLE, "0").await;
    let err = client(&url, 2).status().await.expect_err("still busy");
    assert_eq!(hits.load(Ordering::SeqCst), 3, "one try plus two retries");
    match err {
        Error::Status { status, detail, .. } => {
            assert_eq!(status, 503);
            assert_eq!(detail.code, "unavailable");
            assert_eq!(detail.message, "busy");
        }
        other => panic!("expected a status error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_retry_after_beyond_the_cap_is_returned_at_once() {
    let (url, hits) = stub(1, StatusCode::SERVICE_UNAVAILABLE, "3600").await;
    let err = client(&url, 3)
        .status()
        .await
        .expect_err("not worth waiting an hour");
    assert_eq!(err.status(), Some(503));
    assert_eq!(hits.load(Ordering::SeqCst), 1, "no retry");
}

#[tokio::test]
async fn other_errors_are_not_retried() {
    let (url, hits) = stub(1, StatusCode::BAD_REQUEST, "0").await;
    let err = client(&url, 3).status().await.expect_err("400 is final");
    assert_eq!(err.status(), Some(400));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_unreachable_daemon_is_one_clear_line() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let url = format!(
        "http://{}",
        listener.local_addr().unwrap_or_else(|e| panic!("{e}"))
    );
    drop(listener);
    let err = client(&url, 3).status().await.expect_err("nothing listens");
    let line = err.to_string();
    assert!(line.contains(&url), "names the URL: {line}");
    assert!(
        line.to_lowercase().contains("refused"),
        "names the cause: {line}"
    );
    assert!(!line.contains('\n'), "one line: {line}");
}
