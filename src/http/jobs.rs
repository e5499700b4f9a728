//! `POST /jobs` and `GET /jobs/{id}`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use foreman_api::jobs::{JobKind, JobView, SubmitJob};
use serde_json::Value;

use super::error::ApiError;
use crate::app::AppState;
use crate::clock::now_ms;
use crate::queue::{self, NewJob};
use crate::store::StoreError;

/// Seconds a client is asked to wait when the queue is full.
const RETRY_AFTER_S: u64 = 30;

pub async fn submit(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let submit: SubmitJob = parse(&body)?;
    let (kind, model) = validate(&submit)?;
    let max = i64::try_from(state.config.max_queued_jobs).unwrap_or(i64::MAX);
    let new = NewJob {
        id: uuid::Uuid::now_v7().to_string(),
        kind,
        model,
        request: submit.request,
        webhook: submit.webhook,
        metadata: submit.metadata,
        now_ms: now_ms(),
    };
    let view = state
        .store
        .write(move |c| {
            if queue::queued_total(c)? >= max {
                return Err(StoreError::Invalid("queue full".into()));
            }
            queue::insert(c, &new)
        })
        .await
        .map_err(|e| match e {
            StoreError::Invalid(m) if m == "queue full" => ApiError::TooMany {
                message: format!("the queue holds {max} jobs; try again later"),
                retry_after: RETRY_AFTER_S,
            },
            other => ApiError::from(other),
        })?;
    state.queue_wakeup.notify_one();
    let location = format!("/jobs/{}", view.id);
    let mut response = (StatusCode::ACCEPTED, Json(view)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
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
fn validate(submit: &SubmitJob) -> Result<(JobKind, String), ApiError> {
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

pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let lookup = id.clone();
    state
        .store
        .read(move |c| queue::view(c, &lookup))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no job {id}")))
}
