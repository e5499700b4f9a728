//! Signed, durable webhooks (Standard Webhooks).
//!
//! - [`outbox`] writes one delivery row per subscribed state change, inside the transaction of
//!   the change itself: a committed state change always has its delivery, and a rolled-back one
//!   never does.
//! - [`Sender`] is a background task separate from the job worker (a slow receiver never slows
//!   jobs). It sends due deliveries in order per job, signs each attempt
//!   (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>`), records
//!   every attempt, and reschedules failures on `webhook.schedule`; 410 Gone stops the job's
//!   remaining deliveries. Everything lives in SQLite, so retries survive restarts.
//! - The secret is `webhook.secret`, or one generated at first start and kept in
//!   `data_dir/webhook_secret` (mode 0600). It is never logged.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use foreman_api::jobs::JobState;
use foreman_client::webhook::Secret;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::clock::{ms_to_rfc3339, now_ms};
use crate::config::WebhookConfig;
use crate::store::{Result, Store, StoreError};

/// A job's subscription, as given in `POST /jobs`.
pub use foreman_api::jobs::WebhookSubscription as Subscription;

/// Why a subscription was refused (422 at submit time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: &'static str,
    pub message: String,
}

/// Checks a subscription: an http(s) URL with a host, allowed by `allow_hosts`.
pub fn check(sub: &Subscription, allow_hosts: &[String]) -> std::result::Result<(), Invalid> {
    let bad_url = |message: String| Invalid {
        field: "webhook.url",
        message,
    };
    let url = url::Url::parse(&sub.url)
        .map_err(|e| bad_url(format!("webhook.url {:?}: {e}", sub.url)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad_url("webhook.url must be http:// or https://".into()));
    }
    let host = url
        .host_str()
        .ok_or_else(|| bad_url("webhook.url needs a host".into()))?;
    if !allow_hosts.is_empty() && !allow_hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
        return Err(bad_url(format!(
            "webhook host {host} is not in webhook.allow_hosts"
        )));
    }
    Ok(())
}

fn wants(sub: &Subscription, state: JobState) -> bool {
    sub.events.as_ref().is_none_or(|e| e.contains(&state))
}

/// Writes the delivery of `state` for job `id` if the job subscribed to it. Runs inside the
/// transaction of the state change.
pub fn outbox(conn: &Connection, id: &str, state: JobState, now: i64) -> Result<()> {
    let webhook: Option<String> = conn
        .query_row("SELECT webhook FROM jobs WHERE id = ?1", [id], |r| r.get(0))
        .optional()?
        .flatten();
    let Some(sub) = webhook.and_then(|w| serde_json::from_str::<Subscription>(&w).ok()) else {
        return Ok(());
    };
    if !wants(&sub, state) {
        return Ok(());
    }
    let gone: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM webhook_deliveries WHERE job_id = ?1 AND state = 'gone')",
        [id],
        |r| r.get(0),
    )?;
    if gone {
        return Ok(()); // the receiver answered 410 for this job: tell it nothing more
    }
    let view =
        crate::queue::view(conn, id)?.ok_or_else(|| StoreError::Invalid(format!("no job {id}")))?;
    let event_type = format!("job.{}", state.as_str());
    let payload =
        serde_json::json!({"type": event_type, "timestamp": ms_to_rfc3339(now), "data": view});
    conn.execute(
        "INSERT INTO webhook_deliveries (id, job_id, event_type, url, payload, created_at, state, next_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?6)",
        params![
            format!("msg_{}", uuid::Uuid::now_v7().simple()),
            id,
            event_type,
            sub.url,
            payload.to_string(),
            now
        ],
    )?;
    Ok(())
}

/// The signing key (the bytes behind `whsec_…`); the HMAC itself is the client crate's, so
/// the daemon signs exactly what `foreman_client::verify_webhook` checks.
#[derive(Clone, Debug)]
pub struct SigningKey(Arc<Secret>);

impl SigningKey {
    /// Parses `whsec_<base64>`.
    pub fn from_secret(secret: &str) -> std::result::Result<Self, String> {
        Secret::parse(secret)
            .map(|s| Self(Arc::new(s)))
            .map_err(|e| e.to_string())
    }

    /// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        foreman_client::webhook::sign(&self.0, id, timestamp, body)
    }
}

/// The configured secret, else the one kept in the data dir, else a new one (saved there).
pub fn load_or_create_secret(
    config: &WebhookConfig,
    data_dir: &Path,
) -> std::result::Result<String, String> {
    if let Some(secret) = &config.secret {
        return Ok(secret.expose().to_string());
    }
    let path = data_dir.join("webhook_secret");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        return Ok(existing.trim().to_string());
    }
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    let secret = format!("whsec_{}", B64.encode(bytes));
    write_private(&path, &secret).map_err(|e| format!("cannot store {}: {e}", path.display()))?;
    Ok(secret)
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

/// One delivery due for an attempt.
struct Due {
    id: String,
    job_id: String,
    url: String,
    payload: String,
    attempts: u32,
}

/// Due deliveries, each the earliest pending one of its job (events of a job go in order).
fn due(conn: &Connection, now: i64, limit: u32) -> Result<Vec<Due>> {
    let mut stmt = conn.prepare_cached(
        "SELECT d.id, d.job_id, d.url, d.payload, d.attempts FROM webhook_deliveries d
         WHERE d.state = 'pending' AND d.next_at <= ?1
           AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e
                           WHERE e.job_id = d.job_id AND e.state = 'pending' AND e.seq < d.seq)
         ORDER BY d.seq LIMIT ?2",
    )?;
    let rows = stmt
        .query_map(params![now, limit], |r| {
            Ok(Due {
                id: r.get(0)?,
                job_id: r.get(1)?,
                url: r.get(2)?,
                payload: r.get(3)?,
                attempts: r.get(4)?,
            })
        })?
        .collect::<std::result::Result<_, _>>()?;
    Ok(rows)
}

/// When the next pending delivery falls due, if any.
fn next_due_at(conn: &Connection) -> Result<Option<i64>> {
    Ok(conn.query_row(
        "SELECT min(next_at) FROM webhook_deliveries WHERE state = 'pending'",
        [],
        |r| r.get(0),
    )?)
}

/// What one attempt got.
struct Attempt {
    status: Option<u16>,
    error: Option<String>,
    took_ms: i64,
}

/// The background sender.
pub struct Sender {
    store: Store,
    key: SigningKey,
    http: reqwest::Client,
    schedule: Vec<Duration>,
    /// Every committed job change may have written a delivery: it wakes the sender.
    bus: crate::queue::bus::JobBus,
}

impl Sender {
    pub fn new(
        store: Store,
        key: SigningKey,
        config: &WebhookConfig,
        bus: crate::queue::bus::JobBus,
    ) -> std::result::Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            store,
            key,
            http,
            schedule: config.schedule.clone(),
            bus,
        })
    }

    /// Delivers until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let mut changes = self.bus.subscribe();
        loop {
            let sent = tokio::select! {
                r = self.send_due() => r,
                () = stop.cancelled() => return,
            };
            if let Err(e) = &sent {
                tracing::error!(error = %e, "webhook delivery pass failed");
            }
            if matches!(sent, Ok(n) if n > 0) {
                continue;
            }
            let next = self.store.read(next_due_at).await.ok().flatten();
            let nap = next.map_or(Duration::from_secs(60), |at| {
                Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0).clamp(5, 60_000))
            });
            tokio::select! {
                _ = changes.recv() => {}
                () = tokio::time::sleep(nap) => {}
                () = stop.cancelled() => return,
            }
        }
    }

    /// Sends every due delivery once; returns how many were attempted.
    pub async fn send_due(&self) -> Result<usize> {
        let now = now_ms();
        let batch = self.store.read(move |c| due(c, now, 64)).await?;
        let n = batch.len();
        for d in batch {
            let attempt = self.attempt(&d).await;
            self.record(d, attempt).await?;
        }
        Ok(n)
    }

    async fn attempt(&self, d: &Due) -> Attempt {
        let timestamp = now_ms() / 1000;
        let signature = self.key.sign(&d.id, timestamp, d.payload.as_bytes());
        let started = Instant::now();
        let sent = self
            .http
            .post(&d.url)
            .header("content-type", "application/json")
            .header("webhook-id", &d.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(d.payload.clone())
            .send()
            .await;
        let took_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        match sent {
            Ok(r) => Attempt {
                status: Some(r.status().as_u16()),
                error: None,
                took_ms,
            },
            Err(e) => Attempt {
                status: None,
                error: Some(crate::target::root_cause(&e)),
                took_ms,
            },
        }
    }

    async fn record(&self, d: Due, a: Attempt) -> Result<()> {
        let attempts = d.attempts + 1;
        let now = now_ms();
        let retry_in = self.schedule.get(d.attempts as usize).copied();
        self.store
            .write(move |c| {
                c.execute(
                    "INSERT INTO webhook_attempts (delivery_id, at, status, error, duration_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![d.id, now, a.status, a.error, a.took_ms],
                )?;
                let (state, next_at): (&str, i64) = match a.status {
                    Some(s) if (200..300).contains(&s) => ("delivered", now),
                    Some(410) => ("gone", now),
                    _ => match retry_in {
                        Some(wait) => ("pending", now + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2)),
                        None => ("failed", now),
                    },
                };
                c.execute(
                    "UPDATE webhook_deliveries SET state = ?2, attempts = ?3, next_at = ?4, last_status = ?5, last_error = ?6
                     WHERE id = ?1",
                    params![d.id, state, attempts, next_at, a.status, a.error],
                )?;
                let result = if state == "pending" { "retry" } else { state };
                metrics::counter!(crate::metrics::WEBHOOK_DELIVERIES, "result" => result).increment(1);
                if state == "gone" {
                    // 410: the receiver wants nothing more about this job.
                    c.execute(
                        "UPDATE webhook_deliveries SET state = 'gone' WHERE job_id = ?1 AND state = 'pending'",
                        [&d.job_id],
                    )?;
                }
                Ok(())
            })
            .await
    }
}

/// Deliveries of a job with their attempts, for `GET /jobs/{id}/deliveries`.
pub fn deliveries(conn: &Connection, job_id: &str) -> Result<Vec<Value>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, event_type, url, state, attempts, next_at, last_status, last_error
         FROM webhook_deliveries WHERE job_id = ?1 ORDER BY seq",
    )?;
    let mut rows: Vec<(String, Value)> = stmt
        .query_map([job_id], |r| {
            let id: String = r.get(0)?;
            let state: String = r.get(3)?;
            let next_at: i64 = r.get(5)?;
            let row = serde_json::json!({
                "webhook_id": id, "type": r.get::<_, String>(1)?, "url": r.get::<_, String>(2)?,
                "state": state, "attempts": r.get::<_, u32>(4)?,
                "next_attempt_at": (state == "pending").then(|| ms_to_rfc3339(next_at)),
                "last_status": r.get::<_, Option<i64>>(6)?, "last_error": r.get::<_, Option<String>>(7)?,
            });
            Ok((id, row))
        })?
        .collect::<std::result::Result<_, _>>()?;
    let mut attempts = conn.prepare_cached(
        "SELECT at, status, error, duration_ms FROM webhook_attempts WHERE delivery_id = ?1 ORDER BY id",
    )?;
    for (id, row) in &mut rows {
        let history: Vec<Value> = attempts
            .query_map([&*id], |r| {
                Ok(serde_json::json!({
                    "at": ms_to_rfc3339(r.get(0)?), "status": r.get::<_, Option<i64>>(1)?,
                    "error": r.get::<_, Option<String>>(2)?, "duration_ms": r.get::<_, i64>(3)?
                }))
            })?
            .collect::<std::result::Result<_, _>>()?;
        row["history"] = Value::Array(history);
    }
    Ok(rows.into_iter().map(|(_, row)| row).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // From the Standard Webhooks specification's reference test vector.
        let key = SigningKey::from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let sig = key.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn subscriptions_are_checked() {
        let sub = |url: &str| Subscription {
            url: url.into(),
            events: None,
        };
        assert!(check(&sub("https://hooks.example/x"), &[]).is_ok());
        assert!(wants(&sub("http://h/x"), JobState::Done));
        let only = Subscription {
            url: "http://h/x".into(),
            events: Some(vec![JobState::Done]),
        };
        assert!(wants(&only, JobState::Done) && !wants(&only, JobState::Queued));
        for bad in ["ftp://h/x", "not a url"] {
            assert!(check(&sub(bad), &[]).is_err(), "{bad}");
        }
        let allowed = ["hooks.example".to_string()];
        assert!(check(&sub("https://evil.example/x"), &allowed).is_err());
        assert!(check(&sub("https://HOOKS.example/x"), &allowed).is_ok());
    }
}
