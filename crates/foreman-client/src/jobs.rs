//! The job calls: one method per route of foreman's jobs API.

use std::time::{Duration, Instant};

use bytes::Bytes;
use eventsource_stream::Eventsource;
use foreman_api::health::Status;
use foreman_api::jobs::{JobEvent, JobEvents, JobList, JobState, JobView, SubmitJob};
use futures::{Stream, StreamExt, TryStreamExt};
use reqwest::Method;

use crate::{Client, Error, Result};

/// Longest wait foreman grants one long-poll; longer waits are a loop of these.
const MAX_POLL: Duration = Duration::from_secs(60);

/// Filter of [`Client::list`]; the default lists every job, newest first.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub state: Option<JobState>,
    pub model: Option<String>,
    /// RFC 3339: only jobs created at or after.
    pub since: Option<String>,
    /// Page size (1 to 500; foreman's default is 50). The stream fetches every page.
    pub page_size: Option<u32>,
}

/// What [`Client::follow`] yields.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// A recorded state change (every past one first, then live ones).
    State(JobEvent),
    /// Tokens generated so far by the running attempt (sent at most every 500 ms).
    Progress { tokens: u64 },
}

impl Client {
    /// `POST /jobs`. Sends a fresh `Idempotency-Key`, so the retries on `429`/`503` can never
    /// create the job twice.
    pub async fn submit(&self, job: &SubmitJob) -> Result<JobView> {
        self.submit_with_key(job, &uuid::Uuid::new_v4().to_string())
            .await
    }

    /// `POST /jobs` with the caller's `Idempotency-Key`: submitting the same body with the
    /// same key within 24 h returns the original job.
    pub async fn submit_with_key(&self, job: &SubmitJob, key: &str) -> Result<JobView> {
        let url = self.url(&["jobs"]);
        self.json(|| {
            self.request(Method::POST, url.clone())
                .header("idempotency-key", key)
                .json(job)
        })
        .await
    }

    /// `GET /jobs/{id}`.
    pub async fn get(&self, id: &str) -> Result<JobView> {
        let url = self.url(&["jobs", id]);
        self.json(|| self.request(Method::GET, url.clone())).await
    }

    /// Waits until the job ends (`done`, `failed` or `canceled`) and returns it, whatever the
    /// outcome; [`Error::Timeout`] when `timeout` passes first. Uses long-polls, so a finished
    /// job is seen at once, not at the next poll.
    pub async fn wait(&self, id: &str, timeout: Duration) -> Result<JobView> {
        let started = Instant::now();
        loop {
            let left = timeout.saturating_sub(started.elapsed());
            let view = self.poll(id, left.min(MAX_POLL)).await?;
            if view.state.is_terminal() {
                return Ok(view);
            }
            if started.elapsed() >= timeout {
                return Err(Error::Timeout {
                    id: id.to_string(),
                    waited: timeout,
                });
            }
        }
    }

    /// One long-poll: `GET /jobs/{id}?wait=…`.
    async fn poll(&self, id: &str, wait: Duration) -> Result<JobView> {
        let mut url = self.url(&["jobs", id]);
        url.query_pairs_mut()
            .append_pair("wait", &format!("{}ms", wait.as_millis()));
        let deadline = self.request_timeout() + wait;
        self.json(|| self.request(Method::GET, url.clone()).timeout(deadline))
            .await
    }

    /// `POST /jobs/{id}/cancel`: a queued job ends at once, a running one is aborted upstream.
    /// Returns the job as it ended.
    pub async fn cancel(&self, id: &str) -> Result<JobView> {
        let url = self.url(&["jobs", id, "cancel"]);
        self.json(|| self.request(Method::POST, url.clone())).await
    }

    /// One page of `GET /jobs`; `cursor` is the previous page's `next_cursor`.
    pub async fn list_page(&self, filter: &ListFilter, cursor: Option<&str>) -> Result<JobList> {
        let mut url = self.url(&["jobs"]);
        {
            let mut q = url.query_pairs_mut();
            if let Some(state) = filter.state {
                q.append_pair("state", state.as_str());
            }
            if let Some(model) = &filter.model {
                q.append_pair("model", model);
            }
            if let Some(since) = &filter.since {
                q.append_pair("since", since);
            }
            if let Some(limit) = filter.page_size {
                q.append_pair("limit", &limit.to_string());
            }
            if let Some(cursor) = cursor {
                q.append_pair("cursor", cursor);
            }
        }
        self.json(|| self.request(Method::GET, url.clone())).await
    }

    /// Every job matching `filter`, newest first, fetching pages as the stream is read.
    pub fn list(&self, filter: ListFilter) -> impl Stream<Item = Result<JobView>> + '_ {
        // State: the cursor of the next page; `None` once the last page was read.
        let pages = futures::stream::try_unfold(Some(None::<String>), move |cursor| {
            let filter = filter.clone();
            async move {
                let Some(cursor) = cursor else {
                    return Ok(None);
                };
                let page = self.list_page(&filter, cursor.as_deref()).await?;
                let next = page.next_cursor.map(Some);
                Ok(Some((
                    futures::stream::iter(page.jobs.into_iter().map(Ok)),
                    next,
                )))
            }
        });
        pages.try_flatten()
    }

    /// `GET /jobs/{id}/events`: the recorded state changes, oldest first.
    pub async fn events(&self, id: &str) -> Result<Vec<JobEvent>> {
        let url = self.url(&["jobs", id, "events"]);
        let events: JobEvents = self.json(|| self.request(Method::GET, url.clone())).await?;
        Ok(events.events)
    }

    /// `GET /jobs/{id}/events?follow=true`: every recorded state change, then live ones and
    /// token progress, ending after the terminal state.
    pub async fn follow(&self, id: &str) -> Result<impl Stream<Item = Result<Update>> + use<>> {
        let mut url = self.url(&["jobs", id, "events"]);
        url.query_pairs_mut().append_pair("follow", "true");
        let response = self.send(|| self.streaming_request(url.clone())).await?;
        let source = url.to_string();
        let stream = response
            .bytes_stream()
            .eventsource()
            .filter_map(move |item| {
                let source = source.clone();
                async move {
                    match item {
                        Ok(event) => decode_update(&source, &event.event, &event.data),
                        Err(e) => Some(Err(Error::decode(&source, e))),
                    }
                }
            });
        Ok(stream)
    }

    /// `GET /jobs/{id}/artifact`: the stored result file, JSON
    /// `{"job_id", "kind", "model", "result", "timings_ms"}` where `result` is the assembled
    /// Ollama response.
    pub async fn artifact(&self, id: &str) -> Result<Bytes> {
        let url = self.url(&["jobs", id, "artifact"]);
        let response = self.send(|| self.request(Method::GET, url.clone())).await?;
        response
            .bytes()
            .await
            .map_err(|e| Error::transport(url.as_str(), e))
    }

    /// `GET /status`: the target as the monitor sees it and the queue per drain key.
    pub async fn status(&self) -> Result<Status> {
        let url = self.url(&["status"]);
        self.json(|| self.request(Method::GET, url.clone())).await
    }
}

/// One server-sent event as an [`Update`]; keep-alive comments and unknown kinds are skipped.
fn decode_update(source: &str, kind: &str, data: &str) -> Option<Result<Update>> {
    #[derive(serde::Deserialize)]
    struct Progress {
        tokens: u64,
    }
    match kind {
        "state" => Some(
            serde_json::from_str(data)
                .map(Update::State)
                .map_err(|e| Error::decode(source, e)),
        ),
        "progress" => Some(
            serde_json::from_str::<Progress>(data)
                .map(|p| Update::Progress { tokens: p.tokens })
                .map_err(|e| Error::decode(source, e)),
        ),
        _ => None,
    }
}
