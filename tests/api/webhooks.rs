//! Webhooks: signed, ordered, retried, durable. The receiver verifies signatures with its own
//! HMAC computation (the Standard Webhooks algorithm), not with foreman's code.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::{TestApp, eventually, spawn_on, spawn_proxy, spawn_sim};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[derive(Debug, Clone)]
struct Received {
    id: String,
    body: Value,
    status: u16,
    signature_ok: bool,
    /// What the client crate's `verify_webhook` says about the same delivery.
    client_helper_ok: bool,
}

/// A receiver answering the statuses of `plan` in turn (then 200), recording every request.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

fn verify(headers: &HeaderMap, body: &[u8]) -> bool {
    let get = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (id, ts, sig) = (
        get("webhook-id"),
        get("webhook-timestamp"),
        get("webhook-signature"),
    );
    let key = B64.decode(SECRET.trim_start_matches("whsec_")).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    let expected = format!("v1,{}", B64.encode(mac.finalize().into_bytes()));
    let fresh = ts.parse::<i64>().is_ok_and(|t| (t - now_s()).abs() < 300);
    sig.split(' ').any(|s| s == expected) && fresh
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn receiver_on(listener: tokio::net::TcpListener, plan: Vec<u16>) -> Receiver {
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let plan = Arc::new(Mutex::new(plan.into_iter()));
    let record = got.clone();
    let app = Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
        let (record, plan) = (record.clone(), plan.clone());
        async move {
            let status = plan.lock().unwrap().next().unwrap_or(200);
            record.lock().unwrap().push(Received {
                id: headers["webhook-id"].to_str().unwrap().to_string(),
                body: serde_json::from_slice(&body).unwrap(),
                status,
                signature_ok: verify(&headers, &body),
                client_helper_ok: foreman_client::verify_webhook(SECRET, &headers, &body).is_ok(),
            });
            StatusCode::from_u16(status).unwrap()
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver { url, got }
}

async fn receiver(plan: Vec<u16>) -> Receiver {
    receiver_on(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        plan,
    )
    .await
}

fn fast_webhooks(c: &mut foreman::config::Config) {
    c.webhook.secret = Some(foreman::config::Secret::new(SECRET));
    c.webhook.schedule = vec![Duration::from_millis(30); 7];
}

async fn submit(app: &TestApp, webhook: Value) -> reqwest::Response {
    let body = json!({"request": {"model": "llama3.2", "messages": [{"role": "user", "content": "x"}],
                                  "options": {"num_predict": 2}}, "webhook": webhook});
    app.client
        .post(app.url("/jobs"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn delivered(r: &Receiver) -> Vec<Received> {
    r.got
        .lock()
        .unwrap()
        .iter()
        .filter(|x| x.status == 200)
        .cloned()
        .collect()
}

#[tokio::test]
async fn every_state_change_is_delivered_signed_and_in_order() {
    let sim = spawn_sim(|_| {}).await;
    let hook = receiver(vec![]).await;
    let app = spawn_proxy(&sim.url(), fast_webhooks).await;
    let r = submit(&app, json!({"url": hook.url})).await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    eventually("four deliveries", || delivered(&hook).len() == 4).await;
    let got = delivered(&hook);
    let types: Vec<&str> = got
        .iter()
        .map(|g| g.body["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["job.queued", "job.loading", "job.working", "job.done"]
    );
    assert!(got.iter().all(|g| g.signature_ok), "signatures verify");
    assert!(
        got.iter().all(|g| g.client_helper_ok),
        "foreman_client::verify_webhook accepts every real delivery"
    );
    assert!(got.iter().all(|g| g.body["data"]["id"] == id.as_str()));
    assert_eq!(got[3].body["data"]["state"], "done");
    assert!(got[3].body["data"]["result"]["message"]["content"].is_string());
    let ids: std::collections::HashSet<&str> = got.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(ids.len(), 4, "one webhook-id per event");
    // The receiver answers before foreman records the outcome: wait for the record.
    let mut list = Vec::new();
    for _ in 0..500 {
        let deliveries: Value = app
            .get(&format!("/jobs/{id}/deliveries"))
            .await
            .json()
            .await
            .unwrap();
        list = deliveries["deliveries"].as_array().unwrap().clone();
        if list.iter().all(|d| d["state"] == "delivered") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(list.len(), 4);
    assert!(
        list.iter()
            .all(|d| d["state"] == "delivered" && d["attempts"] == 1),
        "{list:?}"
    );
    app.shutdown().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn a_failing_receiver_gets_everything_later_in_order_with_stable_ids() {
    let sim = spawn_sim(|_| {}).await;
    let hook = receiver(vec![500, 503, 500]).await;
    let app = spawn_proxy(&sim.url(), fast_webhooks).await;
    let r = submit(&app, json!({"url": hook.url, "events": ["queued", "done"]})).await;
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    eventually("both events delivered", || delivered(&hook).len() == 2).await;
    let all = hook.got.lock().unwrap().clone();
    let ok = delivered(&hook);
    let types: Vec<&str> = ok
        .iter()
        .map(|g| g.body["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["job.queued", "job.done"],
        "in order, only the subscribed events"
    );
    // The three failures were retries of the first event: same webhook-id.
    assert!(
        all[..3]
            .iter()
            .all(|g| g.id == all[3].id && g.body["type"] == "job.queued")
    );
    assert!(all.iter().all(|g| g.signature_ok));
    let deliveries: Value = app
        .get(&format!("/jobs/{id}/deliveries"))
        .await
        .json()
        .await
        .unwrap();
    let first = &deliveries["deliveries"][0];
    assert_eq!(first["attempts"], 4);
    let statuses: Vec<i64> = first["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, [500, 503, 500, 200]);
    app.shutdown().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn gone_410_stops_deliveries_for_the_job() {
    let sim = spawn_sim(|_| {}).await;
    let hook = receiver(vec![410]).await;
    let app = spawn_proxy(&sim.url(), fast_webhooks).await;
    let r = submit(&app, json!({"url": hook.url})).await;
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.wait_for_state(&id, &["done"]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(hook.got.lock().unwrap().len(), 1, "nothing after 410");
    let deliveries: Value = app
        .get(&format!("/jobs/{id}/deliveries"))
        .await
        .json()
        .await
        .unwrap();
    let list = deliveries["deliveries"].as_array().unwrap();
    assert!(list.iter().all(|d| d["state"] == "gone"), "{deliveries}");
    app.shutdown().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn invalid_webhooks_are_refused_at_submit() {
    let app = spawn_proxy("http://127.0.0.1:9", |c| {
        c.worker.enabled = false;
        c.webhook.allow_hosts = vec!["hooks.example".into()];
    })
    .await;
    for (hook, field) in [
        (json!({"url": "ftp://hooks.example/x"}), "webhook.url"),
        (json!({"url": "::nope"}), "webhook.url"),
        (json!({"url": "https://elsewhere.example/x"}), "webhook.url"),
    ] {
        let r = submit(&app, hook.clone()).await;
        assert_eq!(r.status(), 422, "{hook}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"]["field"],
            field,
            "{hook}"
        );
    }
    let r = submit(
        &app,
        json!({"url": "https://hooks.example/x", "events": ["boom"]}),
    )
    .await;
    assert_eq!(r.status(), 400, "unknown event state");
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["field"],
        "webhook.events[0]"
    );
    assert_eq!(
        submit(&app, json!({"url": "https://hooks.example/x"}))
            .await
            .status(),
        202
    );
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn pending_deliveries_survive_a_restart() {
    // The receiver's port is reserved, then left closed: connection refused.
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = reserved.local_addr().unwrap();
    drop(reserved);
    let mut first = spawn_proxy("http://127.0.0.1:9", |c| {
        fast_webhooks(c);
        c.worker.enabled = false;
    })
    .await;
    let r = submit(&first, json!({"url": format!("http://{addr}/hook")})).await;
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    eventually("a failed attempt is recorded", || {
        futures::executor::block_on(first.state.store.read(|c| {
            Ok(
                c.query_row("SELECT count(*) FROM webhook_attempts", [], |r| {
                    r.get::<_, i64>(0)
                })?,
            )
        }))
        .unwrap()
            >= 1
    })
    .await;
    first.stop_and_wait().await.unwrap();
    let data = first.dir.path().join("data");
    let hook = receiver_on(tokio::net::TcpListener::bind(addr).await.unwrap(), vec![]).await;
    let second = spawn_on(&data, |c| {
        fast_webhooks(c);
        c.worker.enabled = false;
    })
    .await;
    eventually("delivered after the restart", || {
        delivered(&hook).len() == 1
    })
    .await;
    let got = delivered(&hook);
    assert_eq!(got[0].body["type"], "job.queued");
    assert_eq!(got[0].body["data"]["id"], id.as_str());
    assert!(got[0].signature_ok);
    second.shutdown().await.unwrap();
}

#[test]
fn webhook_secret_command_prints_a_stable_generated_secret() {
    let dir = tempfile::tempdir().unwrap();
    let run = || {
        std::process::Command::new(crate::helpers::foreman_bin())
            .args(["webhook", "secret"])
            .current_dir(dir.path())
            .env("HOME", dir.path())
            .output()
            .unwrap()
    };
    let first = run();
    assert!(first.status.success(), "{first:?}");
    let secret = String::from_utf8(first.stdout).unwrap();
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert_eq!(
        String::from_utf8(run().stdout).unwrap(),
        secret,
        "stable across runs"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("data/webhook_secret"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

/// A receiver that times out, then fails, then is slow but in time, then fine; and one that
/// is not listening at all until later. Deliveries follow the schedule and the worker never
/// waits for them.
#[tokio::test]
async fn receiver_faults_follow_the_schedule_and_never_slow_the_worker() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let schedule = [80u64, 120, 160, 200, 240, 280, 320];
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let flaky = Router::new().fallback(move |_body: Bytes| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            match n {
                // Longer than webhook.timeout: the attempt is abandoned.
                0 => {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    StatusCode::OK
                }
                1 => StatusCode::INTERNAL_SERVER_ERROR,
                // Slow, but within the timeout: accepted.
                _ => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    StatusCode::OK
                }
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let flaky_url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, flaky).await.unwrap() });
    // Nobody listens here yet: connection refused.
    let later = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let later_addr = later.local_addr().unwrap();
    drop(later);

    let sim = spawn_sim(|_| {}).await;
    let app = spawn_proxy(&sim.url(), |c| {
        fast_webhooks(c);
        c.webhook.timeout = Duration::from_millis(300);
        c.webhook.schedule = schedule
            .iter()
            .map(|ms| Duration::from_millis(*ms))
            .collect();
    })
    .await;
    let body = |url: String| {
        json!({"request": {"model": "llama3.2", "prompt": "x", "options": {"num_predict": 2}},
               "webhook": {"url": url, "events": ["done"]}})
    };
    let flaky_job = app.submit_ok(&body(flaky_url)).await;
    let refused_job = app
        .submit_ok(&body(format!("http://{later_addr}/hook")))
        .await;

    // Both jobs finish while their first deliveries are still failing.
    for id in [&flaky_job, &refused_job] {
        assert_eq!(app.wait_for_state(id, &["done"]).await["state"], "done");
    }
    let deliveries = |id: String| {
        let request = app.client.get(app.url(&format!("/jobs/{id}/deliveries")));
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let pending = deliveries(flaky_job.clone()).await;
    assert_ne!(pending["deliveries"][0]["state"], "delivered", "{pending}");

    // The refused receiver comes up after a few attempts.
    let mut seen = 0;
    while seen < 2 {
        let d = deliveries(refused_job.clone()).await;
        seen = d["deliveries"][0]["attempts"].as_u64().unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let listener = tokio::net::TcpListener::bind(later_addr).await.unwrap();
    let receiver = receiver_on(listener, vec![]).await;

    for id in [&flaky_job, &refused_job] {
        let mut d = deliveries(id.clone()).await;
        for _ in 0..500 {
            if d["deliveries"][0]["state"] == "delivered" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            d = deliveries(id.clone()).await;
        }
        let delivery = &d["deliveries"][0];
        assert_eq!(delivery["state"], "delivered", "{d}");
        let history = delivery["history"].as_array().unwrap();
        let at: Vec<i64> = history
            .iter()
            .map(|h| foreman::clock::parse_rfc3339_ms(h["at"].as_str().unwrap()).unwrap())
            .collect();
        for (i, pair) in at.windows(2).enumerate() {
            let gap = pair[1] - pair[0];
            let wanted = schedule[i] as i64;
            assert!(
                gap >= wanted,
                "{id}: attempt {} came {gap} ms after the last, schedule says {wanted}: {d}",
                i + 2
            );
        }
        if *id == flaky_job {
            let outcomes: Vec<String> = history
                .iter()
                .map(|h| match h["status"].as_i64() {
                    Some(s) => s.to_string(),
                    None => h["error"].as_str().unwrap().to_string(),
                })
                .collect();
            assert!(outcomes[0].contains("timed out"), "{outcomes:?}");
            assert_eq!(outcomes[1..], ["500", "200"], "{outcomes:?}");
        } else {
            let first = history[0]["error"].as_str().unwrap();
            assert!(first.contains("refused"), "{first}");
            assert_eq!(history.last().unwrap()["status"], 200);
        }
    }
    assert_eq!(
        delivered(&receiver).len(),
        1,
        "the late receiver got its one event"
    );
    sim.shutdown().await;
}
