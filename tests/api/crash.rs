//! Crash recovery with the real binary: `kill -9` while a job is `working`, restart, and the job
//! finishes exactly once.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::health::start_daemon;
use crate::helpers::spawn_sim;

async fn get_job(base: &str, id: &str) -> Value {
    reqwest::get(format!("{base}/jobs/{id}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn wait_state(base: &str, id: &str, wanted: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = get_job(base, id).await;
        if v["state"] == wanted || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn kill_9_while_working_then_restart_finishes_the_job_exactly_once() {
    // 0.02 real seconds per simulated second: 400 tokens at 40 tok/s = 10 s simulated = 200 ms.
    let sim = spawn_sim(|c| c.time_scale = 0.02).await;
    let dir = tempfile::tempdir().unwrap();
    let target = sim.url();
    let args = ["--target", target.as_str(), "--data-dir", "data"];
    let (mut first, base) = start_daemon(dir.path(), &args);
    let body = json!({"request": {"model": "llama3.2", "messages": [{"role": "user", "content": "long"}], "options": {"num_predict": 400}}});
    let r = reqwest::Client::new()
        .post(format!("{base}/jobs"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let v = wait_state(&base, &id, "working").await;
    assert_eq!(v["state"], "working", "{v}");

    crate::helpers::signal(&first, "-9");
    first.wait().unwrap();

    let (mut second, base) = start_daemon(dir.path(), &args);
    let v = wait_state(&base, &id, "done").await;
    assert_eq!(v["state"], "done", "{v}");
    assert_eq!(v["attempts"], 2, "the interrupted attempt counts");
    assert_eq!(v["usage"]["completion_tokens"], 400);
    assert!(v["result"]["message"]["content"].as_str().unwrap().len() > 400);
    assert_eq!(
        sim.stats().cancelled,
        1,
        "the target saw the first attempt's connection drop"
    );

    crate::helpers::signal(&second, "-TERM");
    assert_eq!(second.wait().unwrap().code(), Some(0));
    let conn = rusqlite::Connection::open(dir.path().join("data/foreman.db")).unwrap();
    let mut stmt = conn
        .prepare("SELECT state, coalesce(detail, '') FROM job_events WHERE job_id = ?1 ORDER BY id")
        .unwrap();
    let events: Vec<(String, String)> = stmt
        .query_map([&id], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let states: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        states,
        [
            "queued", "loading", "working", "queued", "loading", "working", "done"
        ]
    );
    assert!(events[3].1.contains("interrupted"), "{events:?}");
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    sim.shutdown().await;
}
