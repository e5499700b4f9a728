//! Transparent passthrough of Ollama's `/`, `/api/*` and OpenAI's `/v1/*` routes
//! (ollama-wire.md §9 proxy checklist).
//!
//! Method, path, query and body bytes go to the target unchanged; status, headers (minus
//! hop-by-hop ones) and body bytes come back unchanged, each chunk forwarded as soon as it
//! arrives. The request body is read whole first (bounded by `max_body_bytes`) so an oversized
//! body is refused before anything reaches the target. There is no time-to-first-byte limit
//! unless `target.header_timeout` is set (loads take minutes); streams are cut after
//! `target.idle_timeout` of silence. A client that disconnects drops the response body, which
//! drops the upstream connection, so the target sees the cancellation at once.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{Stream, StreamExt};

use super::error::OllamaError;
use crate::app::AppState;
use crate::target::{Failure, Target};

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

pub async fn forward(State(state): State<AppState>, request: Request) -> Response {
    let started = std::time::Instant::now();
    let route = crate::metrics::route_label(request.uri().path());
    let response = proxy(state, request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(crate::metrics::PASSTHROUGH_REQUESTS, "route" => route, "status" => status)
        .increment(1);
    metrics::histogram!(crate::metrics::PASSTHROUGH_TTFB, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

async fn proxy(state: AppState, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let limit = state.config.max_body_bytes;
    let body = match read_body(body, &parts.headers, limit).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_string();
    // Generations through passthrough hold the worker back until their answer is complete.
    let interactive = crate::interactive::is_generation_path(parts.uri.path()).then(|| {
        let model = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                v.get("model")
                    .and_then(|m| m.as_str())
                    .map(crate::queue::canonical_model)
            });
        state.interactive.begin(model)
    });
    let target = &state.target;
    let upstream = target
        .request(parts.method.clone(), &path)
        .headers(request_headers(
            &parts.headers,
            target.has_token() || !state.config.api_tokens.is_empty(),
        ))
        .body(body);
    let response = match target.send(upstream).await {
        Ok(r) => r,
        Err(failure) => return failure_response(target, &failure),
    };
    let route = crate::metrics::route_label(parts.uri.path());
    respond(response, target.idle_timeout, interactive, route)
}

async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, OllamaError> {
    let too_large = || {
        OllamaError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("foreman: request body exceeds the limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let inner = e.into_inner();
        if inner
            .downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
        {
            too_large()
        } else if super::error::is_body_timeout(&*inner) {
            OllamaError::new(
                StatusCode::REQUEST_TIMEOUT,
                "foreman: the request body stopped arriving",
            )
        } else {
            OllamaError::new(
                StatusCode::BAD_REQUEST,
                format!("foreman: cannot read request body: {inner}"),
            )
        }
    })
}

/// The client's headers minus hop-by-hop ones, `Host` (reqwest sets the target's, which a
/// loopback-bound Ollama requires) and `Content-Length` (set from the body). `Authorization`
/// is dropped when foreman owns it: inbound auth is on (the client's token is foreman's) or an
/// upstream token replaces it.
fn request_headers(incoming: &HeaderMap, drop_authorization: bool) -> HeaderMap {
    let listed = connection_listed(incoming);
    let mut out = HeaderMap::with_capacity(incoming.len());
    for (name, value) in incoming {
        let skip = is_hop_by_hop(name)
            || listed.contains(&name.as_str().to_ascii_lowercase())
            || name == header::HOST
            || name == header::CONTENT_LENGTH
            || (drop_authorization && name == header::AUTHORIZATION);
        if !skip {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str())
}

/// Header names listed in `Connection` are hop-by-hop too.
fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .collect()
}

fn failure_response(target: &Target, failure: &Failure) -> Response {
    let url = target.url().as_str().trim_end_matches('/');
    match failure {
        Failure::Unreachable(reason) => OllamaError::new(
            StatusCode::BAD_GATEWAY,
            format!("foreman: target {url} unreachable: {reason}"),
        ),
        Failure::Timeout => OllamaError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!("foreman: target {url} sent no response headers in time"),
        ),
    }
    .into_response()
}

fn respond(
    upstream: reqwest::Response,
    idle: Duration,
    guard: Option<crate::interactive::Guard>,
    route: &'static str,
) -> Response {
    let started = std::time::Instant::now();
    let timer = Finished(route, started);
    let status = upstream.status();
    let listed = connection_listed(upstream.headers());
    let mut headers = HeaderMap::with_capacity(upstream.headers().len() + 1);
    for (name, value) in upstream.headers() {
        if !is_hop_by_hop(name) && !listed.contains(&name.as_str().to_ascii_lowercase()) {
            headers.append(name.clone(), value.clone());
        }
    }
    if is_streamed(&headers) {
        headers.insert(
            HeaderName::from_static("x-accel-buffering"),
            HeaderValue::from_static("no"),
        );
    }
    // The guard lives as long as the body stream: dropped when it ends or the client leaves.
    let stream = with_idle_timeout(upstream.bytes_stream(), idle).map(move |chunk| {
        let _held = (&guard, &timer);
        chunk
    });
    let body = Body::from_stream(stream);
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// Records the whole duration of a passthrough response when its body ends or is dropped.
struct Finished(&'static str, std::time::Instant);

impl Drop for Finished {
    fn drop(&mut self) {
        metrics::histogram!(crate::metrics::PASSTHROUGH_DURATION, "route" => self.0)
            .record(self.1.elapsed().as_secs_f64());
    }
}

/// NDJSON and SSE answers are streams; so is anything without a length.
fn is_streamed(headers: &HeaderMap) -> bool {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    content_type.starts_with("application/x-ndjson")
        || content_type.starts_with("text/event-stream")
        || !headers.contains_key(header::CONTENT_LENGTH)
}

/// Ends the stream with an error (cutting the connection) after `idle` without a chunk.
fn with_idle_timeout<S>(
    stream: S,
    idle: Duration,
) -> impl Stream<Item = Result<Bytes, std::io::Error>>
where
    S: Stream<Item = Result<Bytes, reqwest::Error>> + Send + 'static,
{
    futures::stream::unfold(Box::pin(stream), move |mut s| async move {
        match tokio::time::timeout(idle, s.next()).await {
            Ok(Some(Ok(chunk))) => Some((Ok(chunk), s)),
            Ok(Some(Err(e))) => {
                tracing::warn!(error = %crate::target::root_cause(&e), "upstream stream failed");
                Some((Err(std::io::Error::other(e)), s))
            }
            Ok(None) => None,
            Err(_) => {
                tracing::warn!(?idle, "upstream stream idle too long; cutting it");
                Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "upstream idle timeout",
                    )),
                    s,
                ))
            }
        }
    })
    .take_while_inclusive_err()
}

/// Stream helper: stop right after the first error.
trait TakeWhileInclusiveErr: Stream + Sized {
    fn take_while_inclusive_err(self) -> impl Stream<Item = Self::Item>;
}

impl<S, T, E> TakeWhileInclusiveErr for S
where
    S: Stream<Item = Result<T, E>> + Sized,
{
    fn take_while_inclusive_err(self) -> impl Stream<Item = Self::Item> {
        let mut failed = false;
        self.take_while(move |item| {
            let go_on = !failed;
            failed |= item.is_err();
            futures::future::ready(go_on)
        })
    }
}
