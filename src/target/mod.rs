//! The one Ollama server foreman fronts: a shared, pooled HTTP client ([`Target`]) and the
//! background [`monitor`] that keeps foreman's view of it (up/down, version, loaded models).

pub mod monitor;

use std::time::Duration;

use reqwest::{Client, Method, RequestBuilder};
use url::Url;

use crate::config::{Secret, TargetConfig};

/// A pooled client bound to the target's base URL. Cheap to clone (reqwest pools connections).
#[derive(Clone)]
pub struct Target {
    /// Path prefix of the base URL without its trailing slash (usually empty).
    base_path: String,
    url: Url,
    token: Option<Secret>,
    http: Client,
    pub header_timeout: Option<Duration>,
    pub idle_timeout: Duration,
}

/// How a request to the target failed before a response arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Connection refused, reset before any byte, DNS or TLS failure.
    Unreachable(String),
    /// No response headers within the configured wait.
    Timeout,
}

impl Target {
    pub fn new(config: &TargetConfig) -> Result<Self, reqwest::Error> {
        let http = Client::builder()
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(90))
            .build()?;
        Ok(Self {
            base_path: config.url.path().trim_end_matches('/').to_string(),
            url: config.url.clone(),
            token: config.token.clone(),
            http,
            header_timeout: config.header_timeout,
            idle_timeout: config.idle_timeout,
        })
    }

    /// The target's base URL as configured.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// A request to `path_and_query` (which starts with `/`), carrying the upstream token.
    pub fn request(&self, method: Method, path_and_query: &str) -> RequestBuilder {
        // The base URL is parsed once; per request only the path and query are set (a full
        // parse of the joined string, host and IDNA included, was a visible per-request cost).
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        let mut url = self.url.clone();
        url.set_path(&format!("{}{path}", self.base_path));
        url.set_query(query);
        let builder = self.http.request(method, url);
        match &self.token {
            Some(t) => builder.bearer_auth(t.expose()),
            None => builder,
        }
    }

    /// Sends a request built by [`Target::request`], applying `target.header_timeout` (when
    /// set) to the wait for response headers. Passthrough and the worker share this.
    pub async fn send(&self, request: RequestBuilder) -> Result<reqwest::Response, Failure> {
        let sent = match self.header_timeout {
            Some(limit) => tokio::time::timeout(limit, request.send())
                .await
                .map_err(|_| Failure::Timeout)?,
            None => request.send().await,
        };
        sent.map_err(|e| Self::classify(&e))
    }

    /// Whether foreman replaces the client's `Authorization` with its own token.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Classifies a send error and says why, in one line.
    pub fn classify(e: &reqwest::Error) -> Failure {
        if e.is_timeout() {
            return Failure::Timeout;
        }
        Failure::Unreachable(root_cause(e))
    }
}

/// The innermost error message (e.g. `Connection refused (os error 111)`).
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut current = e;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}
