//! HTTP routes: Ollama's native API ([`native`]), the OpenAI shim ([`openai`]) and the
//! simulator's control surface ([`control`]), plus the response helpers they share.
//!
//! Validation helpers return `Result<_, Response>` so a handler can answer an error early;
//! those paths are cold, so the size of `Response` in the `Err` variant does not matter.
#![allow(clippy::result_large_err)]

pub mod control;
pub mod native;
pub mod openai;

use std::convert::Infallible;

use axum::Router;
use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::Stream;
use serde::Serialize;

use crate::Sim;
use crate::gojson;

/// Content type of `c.JSON` answers.
pub const JSON_UTF8: &str = "application/json; charset=utf-8";

/// Builds the simulator's router.
pub fn router(sim: Sim) -> Router {
    native::routes()
        .merge(openai::routes())
        .merge(control::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::disable())
        .with_state(sim)
}

async fn not_found() -> Response {
    text(StatusCode::NOT_FOUND, "404 page not found")
}

async fn method_not_allowed() -> Response {
    text(StatusCode::METHOD_NOT_ALLOWED, "405 method not allowed")
}

/// A `text/plain` answer.
pub fn text(status: StatusCode, body: &'static str) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// `c.JSON(status, v)`: Go-encoded, no trailing newline.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response {
    with_type(status, JSON_UTF8, gojson::to_vec(value))
}

/// Ollama's error shape before streaming: status + `{"error": message}`.
pub fn error(status: StatusCode, message: &str) -> Response {
    json(status, &serde_json::json!({ "error": message }))
}

pub fn with_type(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A streamed answer (`first` is already computed, so headers go out with the first object,
/// as Ollama's do).
pub fn stream<S>(content_type: &'static str, first: Bytes, rest: S) -> Response
where
    S: Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
{
    use futures::StreamExt;
    let body = futures::stream::once(async move { Ok::<_, std::io::Error>(first) }).chain(rest);
    let mut r = Response::new(Body::from_stream(body));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// An `Infallible`-typed helper so handlers can `?` on early responses.
pub type Early = Result<Response, Infallible>;
