//! Standard Webhooks (<https://www.standardwebhooks.com>) signing and verification.
//!
//! foreman signs every delivery with `webhook-id`, `webhook-timestamp` and
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed with the
//! bytes behind the `whsec_…` secret (`foreman webhook secret` prints it). A receiver checks a
//! delivery with [`verify_webhook`], whatever its HTTP framework: headers are read through the
//! small [`Headers`] trait, implemented for `http::HeaderMap` (axum, reqwest, hyper), maps and
//! slices of pairs.
//!
//! ```
//! use foreman_client::webhook::{Secret, sign, verify_webhook_at};
//! use std::time::{Duration, SystemTime};
//!
//! let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
//! let body = br#"{"type":"job.done","timestamp":"2026-01-01T00:00:00Z","data":{"id":"j","kind":"chat","model":"m","drain_key":"m","state":"done","timestamps":{"created_at":"2026-01-01T00:00:00Z"},"attempts":1}}"#;
//! let signature = sign(&Secret::parse(secret).unwrap(), "msg_1", 1_767_225_600, body);
//! let headers = [
//!     ("webhook-id", "msg_1"),
//!     ("webhook-timestamp", "1767225600"),
//!     ("webhook-signature", signature.as_str()),
//! ];
//! let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_660);
//! let event = verify_webhook_at(secret, &headers[..], body, now).unwrap();
//! assert_eq!(event.event_type, "job.done");
//! ```

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use foreman_api::jobs::WebhookPayload;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far a delivery's timestamp may be from the receiver's clock (replay protection).
pub const TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// Why a delivery was rejected.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook secret is not whsec_<base64> of at least 16 bytes: {0}")]
    InvalidSecret(String),
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("webhook-timestamp is not a unix time in seconds")]
    InvalidTimestamp,
    #[error("webhook-timestamp is more than 5 minutes away from now")]
    StaleTimestamp,
    #[error("no webhook-signature matches")]
    InvalidSignature,
    #[error("the body is not a foreman event: {0}")]
    InvalidPayload(#[from] serde_json::Error),
}

/// The signing key: the bytes behind `whsec_…`.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    /// Parses `whsec_<base64>` (the prefix is optional).
    pub fn parse(secret: &str) -> Result<Self, WebhookError> {
        let b64 = secret
            .trim()
            .strip_prefix("whsec_")
            .unwrap_or(secret.trim());
        let bytes = B64
            .decode(b64)
            .map_err(|e| WebhookError::InvalidSecret(e.to_string()))?;
        if bytes.len() < 16 {
            return Err(WebhookError::InvalidSecret(format!(
                "{} bytes",
                bytes.len()
            )));
        }
        Ok(Self(bytes))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

/// The `webhook-signature` value for one delivery: `v1,<base64 HMAC-SHA256>`.
pub fn sign(secret: &Secret, id: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = secret.mac(id, timestamp, body).finalize().into_bytes();
    format!("v1,{}", B64.encode(tag))
}

/// Read access to request headers by (lower-case) name.
pub trait Headers {
    fn header(&self, name: &str) -> Option<&str>;
}

impl Headers for http::HeaderMap {
    fn header(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| v.to_str().ok())
    }
}

impl<K: AsRef<str>, V: AsRef<str>> Headers for [(K, V)] {
    fn header(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k.as_ref().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }
}

impl<V: AsRef<str>, S: std::hash::BuildHasher> Headers for HashMap<String, V, S> {
    fn header(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }
}

impl<V: AsRef<str>> Headers for BTreeMap<String, V> {
    fn header(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }
}

/// Checks a delivery's signature and timestamp (±5 min) and returns the event.
/// Pass the body exactly as received: re-serialised JSON does not verify.
pub fn verify_webhook<H: Headers + ?Sized>(
    secret: &str,
    headers: &H,
    body: &[u8],
) -> Result<WebhookPayload, WebhookError> {
    verify_webhook_at(secret, headers, body, SystemTime::now())
}

/// [`verify_webhook`] against a given clock.
pub fn verify_webhook_at<H: Headers + ?Sized>(
    secret: &str,
    headers: &H,
    body: &[u8],
    now: SystemTime,
) -> Result<WebhookPayload, WebhookError> {
    let secret = Secret::parse(secret)?;
    let get = |name: &'static str| {
        headers
            .header(name)
            .ok_or(WebhookError::MissingHeader(name))
    };
    let id = get("webhook-id")?;
    let timestamp: i64 = get("webhook-timestamp")?
        .trim()
        .parse()
        .map_err(|_| WebhookError::InvalidTimestamp)?;
    check_timestamp(timestamp, now)?;
    let signatures = get("webhook-signature")?;
    // Several space-separated signatures may be sent while a secret is being rotated.
    let matches = signatures
        .split_whitespace()
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|b64| B64.decode(b64).ok())
        .any(|tag| secret.mac(id, timestamp, body).verify_slice(&tag).is_ok());
    if !matches {
        return Err(WebhookError::InvalidSignature);
    }
    Ok(serde_json::from_slice(body)?)
}

fn check_timestamp(timestamp: i64, now: SystemTime) -> Result<(), WebhookError> {
    let now = match now.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(_) => 0,
    };
    let tolerance = i64::try_from(TOLERANCE.as_secs()).unwrap_or(i64::MAX);
    if timestamp.abs_diff(now) > tolerance.unsigned_abs() {
        return Err(WebhookError::StaleTimestamp);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn signs_like_the_standard_webhooks_test_vector() {
        let secret = Secret::parse(SPEC_SECRET).unwrap_or_else(|e| panic!("{e}"));
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    fn signed(body: &[u8], ts: i64) -> Vec<(String, String)> {
        let secret = Secret::parse(SPEC_SECRET).unwrap_or_else(|e| panic!("{e}"));
        vec![
            ("Webhook-Id".into(), "msg_1".into()),
            ("webhook-timestamp".into(), ts.to_string()),
            (
                "webhook-signature".into(),
                format!("v1,bm90IGl0 {}", sign(&secret, "msg_1", ts, body)),
            ),
        ]
    }

    const BODY: &[u8] = br#"{"type":"job.queued","timestamp":"2026-01-01T00:00:00Z","data":{"id":"j","kind":"generate","model":"m","drain_key":"m","state":"queued","timestamps":{"created_at":"2026-01-01T00:00:00Z"},"attempts":0}}"#;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn accepts_a_rotated_signature_list_and_rejects_tampering() {
        let headers = signed(BODY, 1_000_000);
        let event = verify_webhook_at(SPEC_SECRET, &headers[..], BODY, at(1_000_100))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(event.data.id, "j");
        let mut tampered = BODY.to_vec();
        tampered[10] = b'X';
        assert!(matches!(
            verify_webhook_at(SPEC_SECRET, &headers[..], &tampered, at(1_000_100)),
            Err(WebhookError::InvalidSignature)
        ));
        let other = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert!(matches!(
            verify_webhook_at(other, &headers[..], BODY, at(1_000_100)),
            Err(WebhookError::InvalidSignature)
        ));
    }

    #[test]
    fn rejects_old_future_and_missing_timestamps() {
        let headers = signed(BODY, 1_000_000);
        for now in [1_000_301, 999_699] {
            assert!(
                matches!(
                    verify_webhook_at(SPEC_SECRET, &headers[..], BODY, at(now)),
                    Err(WebhookError::StaleTimestamp)
                ),
                "now = {now}"
            );
        }
        let without: Vec<_> = headers
            .into_iter()
            .filter(|(k, _)| k != "webhook-timestamp")
            .collect();
        assert!(matches!(
            verify_webhook_at(SPEC_SECRET, &without[..], BODY, at(1_000_000)),
            Err(WebhookError::MissingHeader("webhook-timestamp"))
        ));
    }

    #[test]
    fn reads_an_http_header_map() {
        let mut map = http::HeaderMap::new();
        for (k, v) in signed(BODY, 1_000_000) {
            let name = http::HeaderName::from_bytes(k.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
            map.insert(name, v.parse().unwrap_or_else(|e| panic!("{e:?}")));
        }
        assert!(verify_webhook_at(SPEC_SECRET, &map, BODY, at(1_000_000)).is_ok());
    }
}
