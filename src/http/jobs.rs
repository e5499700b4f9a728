//! foreman's job routes: submit, get (with long-poll), list, cancel, events.

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use foreman_api::jobs::{JobEvent, JobEvents, JobKind, JobList, JobState, JobView, SubmitJob};
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::broadcast;

use super::error::ApiError;
use crate::app::AppState;
use crate::clock::now_ms;
use crate::queue::bus::JobChange;
use crate::queue::{self, Change, NewJob};
use crate::store::StoreError;

/// Seconds a client is asked to wait when the queue is full.
const RETRY_AFTER_S: u64 = 30;

/// Header of the IETF idempotency-key draft.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

#[utoipa::path(post, path = "/jobs", tag = "jobs", request_body = SubmitJob,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the original job for the same body within 24 h")),
    responses(
        (status = 202, description = "Queued; `Location` names the job", body = JobView),
        (status = 400, body = foreman_api::ErrorBody), (status = 413, body = foreman_api::ErrorBody), (status = 422, body = foreman_api::ErrorBody),
        (status = 429, description = "Queue full; see Retry-After", body = foreman_api::ErrorBody),
        (status = 503, body = foreman_api::ErrorBody)))]
pub async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    // Body-limit and read failures get foreman's structured error, not axum's plain text.
    let body = body.map_err(|rejection| {
        if super::error::is_body_timeout(&rejection) {
            ApiError::Timeout(format!(
                "the request body stopped arriving for {}",
                humantime::format_duration(state.config.request_read_timeout)
            ))
        } else if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(format!(
                "request body exceeds the limit of {} bytes",
                state.config.max_body_bytes
            ))
        } else {
            ApiError::bad_request(format!(
                "cannot read request body: {}",
                rejection.body_text()
            ))
        }
    })?;
    let idempotency = idempotency_key(&headers)?;
    let submit: SubmitJob = parse(&body)?;
    let (kind, model) = validate(&submit)?;
    let webhook = submit
        .webhook
        .as_ref()
        .map(|sub| {
            crate::webhooks::check(sub, &state.config.webhook.allow_hosts).map_err(|e| {
                ApiError::Unprocessable {
                    message: e.message,
                    field: Some(e.field.into()),
                }
            })?;
            serde_json::to_value(sub).map_err(|e| ApiError::Internal(e.to_string()))
        })
        .transpose()?;
    let max = i64::try_from(state.config.max_queued_jobs).unwrap_or(i64::MAX);
    let new = NewJob {
        id: uuid::Uuid::now_v7().to_string(),
        kind,
        model,
        request: submit.request,
        webhook,
        metadata: submit.metadata,
        now_ms: now_ms(),
    };
    let body_hash = crate::artifacts::hex(&<sha2::Sha256 as sha2::Digest>::digest(&body));
    let (view, replayed) = state
        .store
        .write(move |c| {
            let now = new.now_ms;
            if let Some(key) = &idempotency
                && let Some(view) = replay(c, key, &body_hash, now)?
            {
                return Ok((view, true));
            }
            if queue::queued_total(c)? >= max {
                return Err(StoreError::Invalid("queue full".into()));
            }
            let view = queue::insert(c, &new)?;
            if let Some(key) = &idempotency {
                c.execute(
                    "INSERT INTO idempotency_keys (key, body_hash, job_id, created_at) VALUES (?1, ?2, ?3, ?4)",
                    rusqlite::params![key, body_hash, view.id, now],
                )?;
            }
            Ok((view, false))
        })
        .await
        .map_err(|e| match e {
            StoreError::Invalid(m) if m == "queue full" => ApiError::TooMany {
                message: format!("the queue holds {max} jobs; try again later"),
                retry_after: RETRY_AFTER_S,
            },
            StoreError::Invalid(m) if m == "idempotency mismatch" => ApiError::Unprocessable {
                message: "Idempotency-Key was already used with a different body".into(),
                field: Some("Idempotency-Key".into()),
            },
            other => ApiError::from(other),
        })?;
    if !replayed {
        state.queue_wakeup.notify_one();
        state.bus.publish(&view.id, JobState::Queued);
    }
    let location = format!("/jobs/{}", view.id);
    let mut response = (StatusCode::ACCEPTED, Json(view)).into_response();
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// The `Idempotency-Key` header, if any: 1 to 255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::bad_field(
                "Idempotency-Key",
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            )
        })?;
    Ok(Some(key.to_string()))
}

/// The job of a live key with the same body; an error for a different body.
fn replay(
    c: &rusqlite::Connection,
    key: &str,
    body_hash: &str,
    now: i64,
) -> Result<Option<JobView>, StoreError> {
    use rusqlite::OptionalExtension;
    let found: Option<(String, String, i64)> = c
        .query_row(
            "SELECT body_hash, job_id, created_at FROM idempotency_keys WHERE key = ?1",
            [key],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((hash, job_id, created)) = found else {
        return Ok(None);
    };
    if now - created > crate::prune::IDEMPOTENCY_TTL_MS {
        c.execute("DELETE FROM idempotency_keys WHERE key = ?1", [key])?;
        return Ok(None);
    }
    if hash != body_hash {
        return Err(StoreError::Invalid("idempotency mismatch".into()));
    }
    queue::view(c, &job_id)
}

/// Decodes a JSON body; the error names the offending field and the position.
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        // An unknown field is reported at its parent; name the field itself.
        let field = if path == "." {
            message
                .strip_prefix("unknown field `")
                .and_then(|m| m.split('`').next())
                .map(str::to_string)
        } else {
            Some(path)
        };
        ApiError::BadRequest {
            message: format!("invalid JSON body: {message}"),
            field,
        }
    })
}

/// Checks the Ollama body enough to know where it goes; returns the kind and model.
pub fn validate(submit: &SubmitJob) -> Result<(JobKind, String), ApiError> {
    let request = submit.request.as_object().ok_or_else(|| {
        ApiError::bad_field(
            "request",
            "request must be a JSON object (an Ollama request body)",
        )
    })?;
    let model = match request.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => m.clone(),
        Some(Value::String(_)) | None => {
            return Err(ApiError::bad_field(
                "request.model",
                "request.model is required",
            ));
        }
        Some(_) => {
            return Err(ApiError::bad_field(
                "request.model",
                "request.model must be a string",
            ));
        }
    };
    let inferred = if request.contains_key("messages") {
        Some(JobKind::Chat)
    } else if request.contains_key("input") {
        Some(JobKind::Embed)
    } else if request.contains_key("prompt") {
        Some(JobKind::Generate)
    } else {
        None
    };
    let kind = submit.kind.or(inferred).ok_or_else(|| {
        ApiError::bad_field(
            "kind",
            "kind is required when the request has no messages, prompt or input",
        )
    })?;
    let unprocessable = |field: &str, message: &str| ApiError::Unprocessable {
        message: message.into(),
        field: Some(field.into()),
    };
    match kind {
        JobKind::Chat => match request.get("messages") {
            Some(Value::Array(m)) if !m.is_empty() => {}
            Some(Value::Array(_)) | None => {
                return Err(unprocessable(
                    "request.messages",
                    "request.messages must be a non-empty array",
                ));
            }
            Some(_) => {
                return Err(ApiError::bad_field(
                    "request.messages",
                    "request.messages must be an array",
                ));
            }
        },
        JobKind::Generate => match request.get("prompt") {
            Some(Value::String(p)) if !p.is_empty() => {}
            Some(Value::String(_)) | None => {
                return Err(unprocessable(
                    "request.prompt",
                    "request.prompt must be a non-empty string",
                ));
            }
            Some(_) => {
                return Err(ApiError::bad_field(
                    "request.prompt",
                    "request.prompt must be a string",
                ));
            }
        },
        JobKind::Embed => match request.get("input") {
            Some(Value::String(s)) if !s.is_empty() => {}
            Some(Value::Array(a)) if !a.is_empty() && a.iter().all(Value::is_string) => {}
            _ => {
                return Err(unprocessable(
                    "request.input",
                    "request.input must be a non-empty string or array of strings",
                ));
            }
        },
    }
    Ok((kind, model))
}

/// Longest a long-poll may wait.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// The wait of a long-poll: `?wait=30s` (or seconds) or `Prefer: wait=30`, capped at 60 s.
fn wait_of(
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<Option<Duration>, ApiError> {
    let raw = query.get("wait").cloned().or_else(|| {
        headers
            .get("prefer")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').find_map(|p| p.trim().strip_prefix("wait=")))
            .map(str::to_string)
    });
    let Some(raw) = raw else { return Ok(None) };
    let parsed = raw
        .parse::<u64>()
        .map(Duration::from_secs)
        .or_else(|_| humantime::parse_duration(&raw))
        .map_err(|_| {
            ApiError::bad_field(
                "wait",
                format!("wait must be seconds or a duration like 30s, got {raw:?}"),
            )
        })?;
    Ok(Some(parsed.min(MAX_WAIT)))
}

#[utoipa::path(get, path = "/jobs/{id}", tag = "jobs",
    params(("id" = String, Path), ("wait" = Option<String>, Query, description = "Long-poll until the job ends: seconds or a duration like 30s (cap 60 s); also `Prefer: wait=N`")),
    responses((status = 200, body = JobView), (status = 400, body = foreman_api::ErrorBody), (status = 404, body = foreman_api::ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Json<JobView>, ApiError> {
    let wait = wait_of(&query, &headers)?;
    // Subscribe before reading, so a change between the read and the wait is not missed.
    let mut changes = state.bus.subscribe();
    let view = read_view(&state, &id).await?;
    let Some(wait) = wait.filter(|_| !view.state.is_terminal()) else {
        return Ok(Json(view));
    };
    let _ = tokio::time::timeout(wait, async {
        loop {
            match changes.recv().await {
                Ok(c) if c.id == id && c.state.is_terminal() => return,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    if read_view(&state, &id)
                        .await
                        .is_ok_and(|v| v.state.is_terminal())
                    {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    })
    .await;
    Ok(Json(read_view(&state, &id).await?))
}

async fn read_view(state: &AppState, id: &str) -> Result<JobView, ApiError> {
    let lookup = id.to_string();
    state
        .store
        .read(move |c| queue::view(c, &lookup))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no job {id}")))
}

/// What a cancel request found.
enum CancelStep {
    Missing,
    Canceled,
    Running,
    Terminal(JobState),
}

/// `POST /jobs/{id}/cancel` and `DELETE /jobs/{id}`.
#[utoipa::path(post, path = "/jobs/{id}/cancel", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, description = "Canceled (a running job's upstream request is aborted)", body = JobView),
              (status = 404, body = foreman_api::ErrorBody), (status = 409, description = "Already finished", body = foreman_api::ErrorBody)))]
pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let mut changes = state.bus.subscribe();
    let lookup = id.clone();
    let step = state
        .store
        .write(move |c| {
            let Some(v) = queue::view(c, &lookup)? else {
                return Ok(CancelStep::Missing);
            };
            Ok(match v.state {
                JobState::Queued => {
                    let change = Change {
                        detail: Some("canceled by request while queued".into()),
                        ..Change::default()
                    };
                    queue::transition(c, &lookup, JobState::Canceled, now_ms(), &change)?;
                    CancelStep::Canceled
                }
                JobState::Loading | JobState::Working => CancelStep::Running,
                s => CancelStep::Terminal(s),
            })
        })
        .await?;
    match step {
        CancelStep::Missing => return Err(ApiError::NotFound(format!("no job {id}"))),
        CancelStep::Terminal(s) => {
            return Err(ApiError::Conflict(format!(
                "job {id} is already {}",
                s.as_str()
            )));
        }
        CancelStep::Canceled => state.bus.publish(&id, JobState::Canceled),
        CancelStep::Running => abort_running(&state, &id, &mut changes).await,
    }
    let view = read_view(&state, &id).await?;
    // The attempt may have completed between the claim check and the abort: then the job
    // ended its own way, and the cancel is answered like one that came too late.
    if view.state.is_terminal() && view.state != JobState::Canceled {
        return Err(ApiError::Conflict(format!(
            "job {id} finished as {} before the cancel took effect",
            view.state.as_str()
        )));
    }
    Ok(Json(view))
}

/// Aborts the worker's attempt and waits (bounded) for the job to settle.
async fn abort_running(state: &AppState, id: &str, changes: &mut broadcast::Receiver<JobChange>) {
    // The worker registers a claimed job a moment after the claim commits; retry briefly.
    for _ in 0..200 {
        if state.running.cancel(id) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(c) = changes.recv().await {
            if c.id == id && c.state.is_terminal() {
                return;
            }
        }
    })
    .await;
}

/// `GET /jobs?state=&model=&since=&limit=&cursor=`.
#[utoipa::path(get, path = "/jobs", tag = "jobs",
    params(("state" = Option<JobState>, Query), ("model" = Option<String>, Query),
           ("since" = Option<String>, Query, description = "RFC 3339: jobs created at or after"),
           ("limit" = Option<u32>, Query, description = "1 to 500, default 50"),
           ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page")),
    responses((status = 200, body = JobList), (status = 400, body = foreman_api::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<JobList>, ApiError> {
    let filter = list_filter(&query)?;
    let (jobs, next) = state.store.read(move |c| queue::list(c, &filter)).await?;
    Ok(Json(JobList {
        jobs,
        next_cursor: next.map(|seq| seq.to_string()),
    }))
}

fn list_filter(query: &HashMap<String, String>) -> Result<queue::ListFilter, ApiError> {
    let state = query
        .get("state")
        .map(|s| {
            JobState::parse(s)
                .ok_or_else(|| ApiError::bad_field("state", format!("unknown state {s:?}")))
        })
        .transpose()?;
    let since_ms = query
        .get("since")
        .map(|s| {
            crate::clock::parse_rfc3339_ms(s).ok_or_else(|| {
                ApiError::bad_field(
                    "since",
                    format!("since must be an RFC 3339 time, got {s:?}"),
                )
            })
        })
        .transpose()?;
    let before_seq = query
        .get("cursor")
        .map(|c| {
            c.parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ApiError::bad_field("cursor", "invalid cursor"))
        })
        .transpose()?;
    let limit = match query.get("limit") {
        None => 50,
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=500).contains(n))
            .ok_or_else(|| ApiError::bad_field("limit", "limit must be 1 to 500"))?,
    };
    Ok(queue::ListFilter {
        state,
        model: query.get("model").cloned(),
        since_ms,
        before_seq,
        limit,
    })
}

/// `GET /jobs/{id}/events`; `?follow=true` streams them as server-sent events until the job ends.
#[utoipa::path(get, path = "/jobs/{id}/events", tag = "jobs",
    params(("id" = String, Path), ("follow" = Option<bool>, Query, description = "Stream as server-sent events until the job ends")),
    responses((status = 200, body = JobEvents), (status = 400, body = foreman_api::ErrorBody), (status = 404, body = foreman_api::ErrorBody)))]
pub async fn events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let follow = match query.get("follow").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(ApiError::bad_field(
                "follow",
                "follow must be true or false",
            ));
        }
    };
    let changes = state.bus.subscribe();
    let view = read_view(&state, &id).await?;
    let lookup = id.clone();
    let past = state
        .store
        .read(move |c| queue::events(c, &lookup, 0))
        .await?;
    if !follow {
        return Ok(Json(JobEvents { events: past }).into_response());
    }
    let last = past.last().map_or(0, |e| e.id);
    let done = view.state.is_terminal();
    let initial = futures::stream::iter(past.into_iter().map(sse_event));
    let live = follow_events(state, id, last, changes, done);
    let stream = initial.chain(live).map(Ok::<_, std::convert::Infallible>);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

fn sse_event(e: JobEvent) -> Event {
    Event::default()
        .event("state")
        .id(e.id.to_string())
        .json_data(&e)
        .unwrap_or_else(|_| Event::default().comment("unserializable event"))
}

/// New events of `id` as they commit, ending after a terminal one.
fn follow_events(
    state: AppState,
    id: String,
    last: i64,
    changes: broadcast::Receiver<JobChange>,
    done: bool,
) -> impl futures::Stream<Item = Event> {
    futures::stream::unfold(
        (state, id, last, changes, done),
        |(state, id, mut last, mut changes, mut done)| async move {
            loop {
                if done {
                    return None;
                }
                match changes.recv().await {
                    Ok(c) if c.id != id => continue,
                    Ok(JobChange {
                        tokens: Some(tokens),
                        ..
                    }) => {
                        let progress = Event::default()
                            .event("progress")
                            .data(serde_json::json!({ "tokens": tokens }).to_string());
                        let batch = vec![progress];
                        return Some((
                            futures::stream::iter(batch),
                            (state, id, last, changes, done),
                        ));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                    _ => {}
                }
                let lookup = id.clone();
                let new = state
                    .store
                    .read(move |c| queue::events(c, &lookup, last))
                    .await
                    .ok()?;
                if new.is_empty() {
                    continue;
                }
                last = new.last().map_or(last, |e| e.id);
                done = new.iter().any(|e| e.state.is_terminal());
                let batch: Vec<Event> = new.into_iter().map(sse_event).collect();
                return Some((
                    futures::stream::iter(batch),
                    (state, id, last, changes, done),
                ));
            }
        },
    )
    .flatten()
}

/// `GET /jobs/{id}/deliveries`: webhook deliveries of the job with every attempt.
#[utoipa::path(get, path = "/jobs/{id}/deliveries", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 200, description = "Webhook deliveries with every attempt", body = Object), (status = 404, body = foreman_api::ErrorBody)))]
pub async fn deliveries(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    read_view(&state, &id).await?;
    let lookup = id.clone();
    let list = state
        .store
        .read(move |c| crate::webhooks::deliveries(c, &lookup))
        .await?;
    Ok(Json(serde_json::json!({ "deliveries": list })))
}

/// `GET /jobs/{id}/artifact`: the stored result file, with `ETag` and `Content-Length`.
#[utoipa::path(get, path = "/jobs/{id}/artifact", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, description = "The stored result, with ETag", body = Object),
              (status = 304, description = "Not modified (If-None-Match)"), (status = 404, body = foreman_api::ErrorBody)))]
pub async fn artifact(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::NotFound(format!("no artifact for job {id}"));
    // Only a UUID ever reaches the filesystem.
    let path = crate::artifacts::path(&state.config.artifacts_dir(), &id).ok_or_else(not_found)?;
    let lookup = id.clone();
    let sha: Option<String> = state
        .store
        .read(move |c| {
            use rusqlite::OptionalExtension;
            Ok(c.query_row(
                "SELECT artifact_sha256 FROM jobs WHERE id = ?1 AND artifact IS NOT NULL",
                [lookup],
                |r| r.get(0),
            )
            .optional()?)
        })
        .await?;
    let etag = format!("\"{}\"", sha.ok_or_else(not_found)?);
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let etag_value = HeaderValue::from_str(&etag).map_err(|e| ApiError::Internal(e.to_string()))?;
    if matches {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        r.headers_mut().insert(header::ETAG, etag_value);
        return Ok(r);
    }
    let bytes = tokio::fs::read(&path).await.map_err(|_| not_found())?;
    let mut r = (StatusCode::OK, bytes).into_response();
    r.headers_mut().insert(header::ETAG, etag_value);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

/// `DELETE /jobs/{id}`: the same as `POST /jobs/{id}/cancel`.
#[utoipa::path(delete, path = "/jobs/{id}", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, body = JobView), (status = 404, body = foreman_api::ErrorBody), (status = 409, body = foreman_api::ErrorBody)))]
pub async fn delete(state: State<AppState>, id: Path<String>) -> Result<Json<JobView>, ApiError> {
    cancel(state, id).await
}
