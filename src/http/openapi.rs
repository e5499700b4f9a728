//! `GET /openapi.json`: the OpenAPI 3.1 document of foreman's own routes, generated from the
//! Rust types (utoipa). The proxied Ollama and OpenAI routes are Ollama's and not described here.

use axum::Json;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "foreman",
        description = "Durable, drain-by-model job queue and transparent proxy in front of one Ollama"
    ),
    paths(
        super::health::healthz,
        super::health::readyz,
        super::status::status,
        super::status::history,
        super::jobs::submit,
        super::jobs::list,
        super::jobs::get,
        super::jobs::delete,
        super::jobs::cancel,
        super::jobs::events,
        super::jobs::deliveries,
        super::jobs::artifact,
        openapi_json,
        super::metrics::metrics
    ),
    components(schemas(foreman_api::jobs::WebhookPayload))
)]
pub struct ApiDoc;

#[utoipa::path(get, path = "/openapi.json", tag = "health",
    responses((status = 200, description = "This document", body = Object)))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
