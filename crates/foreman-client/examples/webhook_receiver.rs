//! A webhook receiver (axum) that accepts only deliveries signed with foreman's secret.
//!
//! ```sh
//! export FOREMAN_WEBHOOK_SECRET=$(foreman webhook secret)
//! cargo run -p foreman-client --example webhook_receiver   # listens on 127.0.0.1:8099
//! foreman jobs submit -m llama3.2 -p hi --webhook http://127.0.0.1:8099/hook
//! ```

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let secret = std::env::var("FOREMAN_WEBHOOK_SECRET").unwrap_or_default();
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let secret = secret.clone();
            async move {
                // Verify the raw body: re-serialised JSON would not match the signature.
                match foreman_client::verify_webhook(&secret, &headers, &body) {
                    Ok(event) => {
                        println!(
                            "{} {} ({})",
                            event.event_type, event.data.id, event.data.model
                        );
                        StatusCode::NO_CONTENT
                    }
                    Err(e) => {
                        eprintln!("rejected a delivery: {e}");
                        StatusCode::UNAUTHORIZED
                    }
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8099").await?;
    axum::serve(listener, app).await
}
