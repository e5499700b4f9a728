//! Contracts: the OpenAPI document covers every route of foreman's own, and the committed JSON
//! Schemas (docs/schemas/) match the Rust types. Regenerate with `UPDATE_SCHEMAS=1 cargo test
//! --test api contracts`.

use serde_json::{Value, json};
use utoipa::OpenApi;

use crate::helpers::spawn_app;

/// Standalone JSON Schema (2020-12) for one component, with every component as `$defs`.
fn bundle(doc: &Value, name: &str) -> Value {
    let defs = doc["components"]["schemas"].clone();
    let text = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": format!("https://foreman.invalid/schemas/{name}.json"),
        "title": name,
        "$ref": format!("#/$defs/{name}"),
        "$defs": defs,
    })
    .to_string()
    .replace("#/components/schemas/", "#/$defs/");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn committed_json_schemas_match_the_types() {
    let doc = serde_json::to_value(foreman::http::openapi::ApiDoc::openapi()).unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/schemas");
    for (file, name) in [
        ("job-request.json", "SubmitJob"),
        ("job-view.json", "JobView"),
        ("webhook-payload.json", "WebhookPayload"),
    ] {
        let generated = serde_json::to_string_pretty(&bundle(&doc, name)).unwrap() + "\n";
        let path = dir.join(file);
        if std::env::var_os("UPDATE_SCHEMAS").is_some() {
            std::fs::write(&path, &generated).unwrap();
            continue;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} drifted from the Rust types; run UPDATE_SCHEMAS=1 cargo test --test api contracts",
            path.display()
        );
    }
}

#[tokio::test]
async fn openapi_document_covers_every_foreman_route() {
    let app = spawn_app().await;
    let r = app.get("/openapi.json").await;
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    let expected: &[(&str, &[&str])] = &[
        ("/healthz", &["get"]),
        ("/readyz", &["get"]),
        ("/status", &["get"]),
        ("/status/history", &["get"]),
        ("/openapi.json", &["get"]),
        ("/metrics", &["get"]),
        ("/jobs", &["get", "post"]),
        ("/jobs/{id}", &["get", "delete"]),
        ("/jobs/{id}/cancel", &["post"]),
        ("/jobs/{id}/events", &["get"]),
        ("/jobs/{id}/deliveries", &["get"]),
        ("/jobs/{id}/artifact", &["get"]),
    ];
    for (path, methods) in expected {
        for m in *methods {
            assert!(
                paths.get(*path).and_then(|p| p.get(*m)).is_some(),
                "{m} {path} missing"
            );
        }
    }
    assert_eq!(
        paths.len(),
        expected.len(),
        "a documented route that is not expected"
    );
    for schema in [
        "SubmitJob",
        "JobView",
        "WebhookPayload",
        "ErrorBody",
        "Status",
    ] {
        assert!(
            doc["components"]["schemas"].get(schema).is_some(),
            "{schema}"
        );
    }
    app.shutdown().await.unwrap();
}
