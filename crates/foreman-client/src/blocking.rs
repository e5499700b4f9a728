//! The same surface as [`crate::Client`] for callers without an async runtime (feature
//! `blocking`). Each call runs the async client on a private current-thread runtime; like
//! `reqwest::blocking`, it must not be called from inside an async context.
//!
//! ```no_run
//! use foreman_client::blocking::Client;
//! use foreman_client::ollama::GenerateRequest;
//!
//! let client = Client::new("http://127.0.0.1:11435")?;
//! let answer = client.generate(GenerateRequest::new("llama3.2", "Say hi"))?;
//! println!("{}", answer.response);
//! # Ok::<(), foreman_client::Error>(())
//! ```

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use foreman_api::health::Status;
use foreman_api::jobs::{JobEvent, JobView, SubmitJob};
use futures::{Stream, StreamExt};

use crate::ollama::{
    ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, GenerateRequest, GenerateResponse,
};
use crate::{ClientBuilder, Error, ListFilter, Result, Update};

/// A blocking handle on one foreman daemon.
#[derive(Debug)]
pub struct Client {
    inner: crate::Client,
    runtime: tokio::runtime::Runtime,
}

impl Client {
    /// A client with default settings.
    pub fn new(base_url: impl Into<String>) -> Result<Self> {
        Self::from_builder(crate::Client::builder(base_url))
    }

    /// A client from a configured [`ClientBuilder`].
    pub fn from_builder(builder: ClientBuilder) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::InvalidUrl {
                url: String::new(),
                reason: format!("cannot start the client runtime: {e}"),
            })?;
        // reqwest's connection pool belongs to the runtime it is first used on.
        let inner = runtime.block_on(async { builder.build() })?;
        Ok(Self { inner, runtime })
    }

    pub fn submit(&self, job: &SubmitJob) -> Result<JobView> {
        self.runtime.block_on(self.inner.submit(job))
    }

    pub fn submit_with_key(&self, job: &SubmitJob, key: &str) -> Result<JobView> {
        self.runtime.block_on(self.inner.submit_with_key(job, key))
    }

    pub fn get(&self, id: &str) -> Result<JobView> {
        self.runtime.block_on(self.inner.get(id))
    }

    pub fn wait(&self, id: &str, timeout: Duration) -> Result<JobView> {
        self.runtime.block_on(self.inner.wait(id, timeout))
    }

    pub fn cancel(&self, id: &str) -> Result<JobView> {
        self.runtime.block_on(self.inner.cancel(id))
    }

    /// Every matching job, newest first; pages are fetched as the iterator advances.
    pub fn list(&self, filter: ListFilter) -> impl Iterator<Item = Result<JobView>> + '_ {
        Blocking {
            runtime: &self.runtime,
            stream: Box::pin(self.inner.list(filter)),
        }
    }

    pub fn events(&self, id: &str) -> Result<Vec<JobEvent>> {
        self.runtime.block_on(self.inner.events(id))
    }

    /// Past and live state changes and token progress until the job ends.
    pub fn follow(&self, id: &str) -> Result<impl Iterator<Item = Result<Update>> + '_> {
        let stream = self.runtime.block_on(self.inner.follow(id))?;
        Ok(Blocking {
            runtime: &self.runtime,
            stream: Box::pin(stream),
        })
    }

    pub fn artifact(&self, id: &str) -> Result<Bytes> {
        self.runtime.block_on(self.inner.artifact(id))
    }

    pub fn status(&self) -> Result<Status> {
        self.runtime.block_on(self.inner.status())
    }

    pub fn submit_and_wait(&self, job: &SubmitJob) -> Result<JobView> {
        self.runtime.block_on(self.inner.submit_and_wait(job))
    }

    pub fn chat(&self, request: ChatRequest) -> Result<ChatResponse> {
        self.runtime.block_on(self.inner.chat(request))
    }

    pub fn generate(&self, request: GenerateRequest) -> Result<GenerateResponse> {
        self.runtime.block_on(self.inner.generate(request))
    }

    pub fn embed(&self, request: EmbedRequest) -> Result<EmbedResponse> {
        self.runtime.block_on(self.inner.embed(request))
    }
}

/// A stream driven item by item on the client's runtime.
struct Blocking<'a, T> {
    runtime: &'a tokio::runtime::Runtime,
    stream: Pin<Box<dyn Stream<Item = T> + 'a>>,
}

impl<T> Iterator for Blocking<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.runtime.block_on(self.stream.next())
    }
}
