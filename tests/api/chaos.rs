//! Crash consistency: the real binary against the simulator and a webhook receiver, killed with
//! SIGKILL at random moments over many cycles while jobs are submitted, loaded, streamed,
//! committed and their webhooks delivered. At the end every acknowledged job is terminal and
//! done exactly once, every recorded event was delivered at least once with one stable
//! `webhook-id` and identical bytes across duplicates, and the database is intact.
//!
//! CI runs a bounded version; `FOREMAN_SOAK=1` runs 1,000 jobs over 40 kills. The seed is
//! printed (and taken from `FOREMAN_CHAOS_SEED`) so a failing run can be replayed.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::HeaderMap;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::health::start_daemon_env;
use crate::helpers::spawn_sim;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Every delivery the receiver saw: webhook-id → the bodies received under it.
type Seen = Arc<Mutex<HashMap<String, Vec<Bytes>>>>;

async fn receiver() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let app = Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
        let record = record.clone();
        async move {
            // A little work per delivery, so kills land while deliveries are in flight.
            tokio::time::sleep(Duration::from_millis(3)).await;
            let ok = foreman_client::verify_webhook(SECRET, &headers, &body).is_ok();
            assert!(ok, "every delivery is signed");
            let id = headers["webhook-id"].to_str().unwrap().to_string();
            record.lock().unwrap().entry(id).or_default().push(body);
            axum::http::StatusCode::NO_CONTENT
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

struct Plan {
    jobs: usize,
    kills: usize,
}

fn plan() -> Plan {
    if std::env::var_os("FOREMAN_SOAK").is_some() {
        Plan {
            jobs: 1000,
            kills: 40,
        }
    } else {
        Plan {
            jobs: 150,
            kills: 8,
        }
    }
}

/// Submits `n` jobs (4 at a time) to whichever daemon is up, retrying while it is down.
/// Returns the ids of the acknowledged (202) submissions.
async fn submit_all(base: Arc<RwLock<String>>, hook: String, n: usize) -> Vec<String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let next = Arc::new(Mutex::new(0..n));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let workers = (0..4).map(|_| {
        let (client, base, hook, next, acked) = (
            client.clone(),
            base.clone(),
            hook.clone(),
            next.clone(),
            acked.clone(),
        );
        async move {
            loop {
                let Some(i) = next.lock().unwrap().next() else {
                    return;
                };
                let model = ["llama3.2", "qwen3:8b", "gemma3:4b"][i % 3];
                let body = json!({"request": {"model": model, "prompt": format!("job {i}"),
                                              "options": {"num_predict": 6}},
                                  "webhook": {"url": hook}, "metadata": {"i": i}});
                loop {
                    let url = format!("{}/jobs", base.read().unwrap());
                    match client.post(url).json(&body).send().await {
                        Ok(r) if r.status() == 202 => {
                            let v: Value = r.json().await.unwrap();
                            acked
                                .lock()
                                .unwrap()
                                .push(v["id"].as_str().unwrap().to_string());
                            break;
                        }
                        // Down, restarting, or killed mid-answer: try again (a job committed
                        // before the kill but never acknowledged is allowed to exist).
                        _ => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            }
        }
    });
    futures::future::join_all(workers).await;
    Arc::try_unwrap(acked).unwrap().into_inner().unwrap()
}

/// Waits until no job is unfinished and no webhook is pending (from the scrape).
async fn settle(base: &str) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status: Value = client
            .get(format!("{base}/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let by_state = &status["queue"]["by_state"];
        let unfinished: u64 = ["queued", "loading", "working"]
            .iter()
            .map(|s| by_state[*s].as_u64().unwrap_or(0))
            .sum();
        let scrape = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let pending = scrape
            .lines()
            .find(|l| l.starts_with("foreman_webhook_pending "))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok());
        if unfinished == 0 && pending == Some(0.0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not settled: {status} pending {pending:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_kill_9_cycles_lose_nothing_and_deliver_everything() {
    let plan = plan();
    let seed: u64 = std::env::var("FOREMAN_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("chaos seed {seed} (replay with FOREMAN_CHAOS_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    // 1 simulated second = 10 ms: loads take 50-100 ms, a job a few ms of streaming.
    let sim = spawn_sim(|c| c.time_scale = 0.01).await;
    let (hook, seen) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let target = sim.url();
    let args = ["--target", target.as_str(), "--data-dir", "data"];
    let env = [
        ("FOREMAN_WEBHOOK_SECRET", SECRET),
        (
            "FOREMAN_WEBHOOK_SCHEDULE",
            "20ms,20ms,20ms,50ms,100ms,200ms,500ms",
        ),
        // Kills interrupt attempts, and interrupted attempts count: leave room for all of them.
        ("FOREMAN_WORKER_MAX_ATTEMPTS", "100"),
        ("FOREMAN_WORKER_RETRY_BASE", "10ms"),
    ];
    let (daemon, base) = start_daemon_env(dir.path(), &args, &env);
    let mut daemon = crate::helpers::KillOnDrop(daemon);
    let current = Arc::new(RwLock::new(base));
    let submitter = tokio::spawn(submit_all(current.clone(), hook, plan.jobs));

    let mut kills_with_work = 0;
    for _ in 0..plan.kills {
        tokio::time::sleep(Duration::from_millis(rng.random_range(30..400))).await;
        let before = current.read().unwrap().clone();
        let busy = reqwest::Client::new()
            .get(format!("{before}/status"))
            .timeout(Duration::from_millis(200))
            .send()
            .await;
        if let Ok(r) = busy {
            let s: Value = r.json().await.unwrap_or_default();
            let running = s["queue"]["by_state"]["loading"].as_u64().unwrap_or(0)
                + s["queue"]["by_state"]["working"].as_u64().unwrap_or(0);
            kills_with_work += usize::from(running > 0);
        }
        crate::helpers::signal(&daemon.0, "-9");
        daemon.0.wait().unwrap();
        let (next, base) = start_daemon_env(dir.path(), &args, &env);
        daemon = crate::helpers::KillOnDrop(next);
        *current.write().unwrap() = base;
    }
    let acked = submitter.await.unwrap();
    let base = current.read().unwrap().clone();
    settle(&base).await;
    crate::helpers::signal(&daemon.0, "-TERM");
    assert_eq!(
        daemon.0.wait().unwrap().code(),
        Some(0),
        "clean stop after the chaos"
    );
    eprintln!(
        "chaos: {} jobs, {} kills ({kills_with_work} with a job loading or working)",
        acked.len(),
        plan.kills
    );

    let db = rusqlite::Connection::open(dir.path().join("data/foreman.db")).unwrap();
    let ok: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");

    // Every acknowledged job exists and is done, once.
    assert_eq!(acked.len(), plan.jobs);
    let mut states = db.prepare("SELECT state FROM jobs WHERE id = ?1").unwrap();
    let mut done_events = db
        .prepare("SELECT count(*) FROM job_events WHERE job_id = ?1 AND state = 'done'")
        .unwrap();
    for id in &acked {
        let state: String = states.query_row([id], |r| r.get(0)).unwrap();
        assert_eq!(state, "done", "job {id}");
        let dones: i64 = done_events.query_row([id], |r| r.get(0)).unwrap();
        assert_eq!(dones, 1, "job {id} finished exactly once");
        let artifact = dir.path().join(format!("data/artifacts/{id}.json"));
        let stored: Value = serde_json::from_slice(&std::fs::read(&artifact).unwrap()).unwrap();
        assert_eq!(stored["job_id"], id.as_str(), "one complete artifact");
    }
    let unfinished: i64 = db
        .query_row(
            "SELECT count(*) FROM jobs WHERE state NOT IN ('done')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(unfinished, 0, "no job stuck or failed, acknowledged or not");

    // Every recorded event has its delivery, and every delivery reached the receiver with
    // one webhook-id and the same bytes however often it was retried.
    let events: i64 = db
        .query_row("SELECT count(*) FROM job_events", [], |r| r.get(0))
        .unwrap();
    let mut rows = db
        .prepare("SELECT id, state, payload FROM webhook_deliveries")
        .unwrap();
    let deliveries: Vec<(String, String, String)> = rows
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        deliveries.len() as i64,
        events,
        "one delivery per state change"
    );
    let seen = seen.lock().unwrap().clone();
    let mut duplicated = 0;
    for (id, state, payload) in &deliveries {
        assert_eq!(state, "delivered", "{id}");
        let bodies = seen
            .get(id)
            .unwrap_or_else(|| panic!("{id} never reached the receiver"));
        assert!(
            bodies.iter().all(|b| b == payload.as_bytes()),
            "{id}: same bytes every time"
        );
        duplicated += usize::from(bodies.len() > 1);
    }
    let known: HashSet<&String> = deliveries.iter().map(|d| &d.0).collect();
    assert!(
        seen.keys().all(|k| known.contains(k)),
        "no delivery from nowhere"
    );
    eprintln!(
        "chaos: {} deliveries, {duplicated} received more than once",
        deliveries.len()
    );
    sim.shutdown().await;
}
