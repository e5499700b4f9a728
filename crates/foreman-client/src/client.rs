//! The client, its builder, and the one place requests are sent (auth, timeouts, retries,
//! error mapping).

use std::time::{Duration, SystemTime};

use foreman_api::{ErrorBody, ErrorDetail};
use reqwest::{Method, RequestBuilder, Response, StatusCode, header};
use serde::de::DeserializeOwned;
use url::Url;

use crate::{Error, Result};

/// Configures a [`Client`]. Every setting has a default; only the base URL is required.
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    base_url: String,
    token: Option<String>,
    timeout: Duration,
    connect_timeout: Duration,
    max_retries: u32,
    max_retry_wait: Duration,
    job_timeout: Duration,
}

impl ClientBuilder {
    /// Bearer token sent as `Authorization: Bearer …` (foreman's `api_tokens`).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Timeout of one ordinary request (default 30 s). Long-polls extend it by their wait.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Timeout of establishing a connection (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How often a `429`/`503` answer is retried (default 3; 0 disables retries).
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// The longest `Retry-After` the client is willing to sleep; a longer one is returned as
    /// the error at once (default 60 s).
    pub fn max_retry_wait(mut self, wait: Duration) -> Self {
        self.max_retry_wait = wait;
        self
    }

    /// How long [`Client::chat`], [`Client::generate`] and [`Client::embed`] wait for their
    /// job (default 10 min). Loading a large model can take minutes.
    pub fn job_timeout(mut self, timeout: Duration) -> Self {
        self.job_timeout = timeout;
        self
    }

    pub fn build(self) -> Result<Client> {
        let invalid = |reason: String| Error::InvalidUrl {
            url: self.base_url.clone(),
            reason,
        };
        let mut base = Url::parse(&self.base_url).map_err(|e| invalid(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(invalid("expected an http(s) URL".into()));
        }
        // Paths are appended segment by segment; a trailing slash would add an empty one.
        let trimmed = base.path().trim_end_matches('/').to_string();
        base.set_path(&trimmed);
        let http = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .user_agent(concat!("foreman-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::transport(base.as_str(), e))?;
        Ok(Client {
            http,
            base,
            token: self.token,
            timeout: self.timeout,
            max_retries: self.max_retries,
            max_retry_wait: self.max_retry_wait,
            job_timeout: self.job_timeout,
        })
    }
}

/// A handle on one foreman daemon. Cheap to clone; clones share the connection pool.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
    timeout: Duration,
    max_retries: u32,
    max_retry_wait: Duration,
    pub(crate) job_timeout: Duration,
}

impl Client {
    /// A client with default settings.
    pub fn new(base_url: impl Into<String>) -> Result<Self> {
        Self::builder(base_url).build()
    }

    pub fn builder(base_url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.into(),
            token: None,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_retries: 3,
            max_retry_wait: Duration::from_secs(60),
            job_timeout: Duration::from_secs(600),
        }
    }

    /// The daemon's base URL.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// `base` + the given path segments, each percent-encoded.
    pub(crate) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.extend(segments);
        }
        url
    }

    /// A request with the token and the ordinary timeout.
    pub(crate) fn request(&self, method: Method, url: Url) -> RequestBuilder {
        self.authorized(self.http.request(method, url).timeout(self.timeout))
    }

    /// A request without a total timeout, for streams that last as long as a job.
    pub(crate) fn streaming_request(&self, url: Url) -> RequestBuilder {
        self.authorized(self.http.get(url))
    }

    fn authorized(&self, builder: RequestBuilder) -> RequestBuilder {
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends the request `make` builds, retrying `429`/`503` as configured, and turns any
    /// non-2xx answer into [`Error::Status`].
    pub(crate) async fn send(&self, make: impl Fn() -> RequestBuilder) -> Result<Response> {
        let mut attempt = 0;
        loop {
            let request = make()
                .build()
                .map_err(|e| Error::transport(self.base.as_str(), e))?;
            let url = request.url().to_string();
            let response = self
                .http
                .execute(request)
                .await
                .map_err(|e| Error::transport(&url, e))?;
            let status = response.status();
            if status.is_success() || status == StatusCode::NOT_MODIFIED {
                return Ok(response);
            }
            if let Some(wait) = self.retry_wait(&response, attempt) {
                attempt += 1;
                tokio::time::sleep(wait).await;
                continue;
            }
            return Err(status_error(&url, response).await);
        }
    }

    /// Sends and decodes a JSON answer.
    pub(crate) async fn json<T: DeserializeOwned>(
        &self,
        make: impl Fn() -> RequestBuilder,
    ) -> Result<T> {
        let response = self.send(make).await?;
        let url = response.url().to_string();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| Error::transport(&url, e))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::decode(&url, e))
    }

    /// How long to sleep before retrying, or `None` when the answer is final.
    fn retry_wait(&self, response: &Response, attempt: u32) -> Option<Duration> {
        let retryable = matches!(
            response.status(),
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        );
        if !retryable || attempt >= self.max_retries {
            return None;
        }
        let wait = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()))
            .unwrap_or_else(|| backoff(attempt));
        (wait <= self.max_retry_wait).then_some(wait)
    }
}

/// Exponential backoff when the server gave no `Retry-After`: 0.5 s, 1 s, 2 s, … capped at 8 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500u64.saturating_mul(1 << attempt.min(4)))
}

/// `Retry-After` is either delay-seconds or an HTTP date (RFC 9110 §10.2.3).
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Reads an error answer: foreman's structured body when present, else the text.
async fn status_error(url: &str, response: Response) -> Error {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let detail = match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => body.error,
        Err(_) => ErrorDetail {
            code: format!("http_{}", status.as_u16()),
            message: plain_message(status, &text),
            field: None,
        },
    };
    Error::Status {
        status: status.as_u16(),
        url: url.to_string(),
        detail,
    }
}

/// A short message from a non-foreman body (Ollama's `{"error":"..."}`, or plain text).
fn plain_message(status: StatusCode, text: &str) -> String {
    #[derive(serde::Deserialize)]
    struct OllamaError {
        error: String,
    }
    if let Ok(e) = serde_json::from_str::<OllamaError>(text) {
        return e.error;
    }
    let text = text.trim();
    if text.is_empty() {
        return status.canonical_reason().unwrap_or("error").to_string();
    }
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(
            parse_retry_after("7", now),
            Some(Duration::from_secs(7)),
            "delay-seconds"
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30)),
            "an HTTP date 30 s ahead"
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO),
            "a past date means now"
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(0), Duration::from_millis(500));
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(10), Duration::from_secs(8));
    }

    #[test]
    fn base_url_must_be_http() {
        assert!(matches!(
            Client::new("ftp://host"),
            Err(Error::InvalidUrl { .. })
        ));
        assert!(matches!(
            Client::new("not a url"),
            Err(Error::InvalidUrl { .. })
        ));
        let c = Client::new("http://host:1/prefix/").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.url(&["jobs", "a/b"]).as_str(),
            "http://host:1/prefix/jobs/a%2Fb",
            "segments are appended and encoded"
        );
    }
}
