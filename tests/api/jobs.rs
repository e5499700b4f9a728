//! The durable queue and the drain-by-model worker, against the simulator.

use std::time::Duration;

use foreman::worker::{Outcome, Wait, Worker};
use ollama_sim::{FaultKind, FaultRule, ModelSpec};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_proxy, spawn_sim};

async fn submit(app: &TestApp, body: Value) -> reqwest::Response {
    app.client
        .post(app.url("/jobs"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn submit_ok(app: &TestApp, body: Value) -> String {
    app.submit_ok(&body).await
}

async fn job(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/jobs/{id}")).await.json().await.unwrap()
}

fn chat(model: &str, text: &str) -> Value {
    json!({"request": {"model": model, "messages": [{"role": "user", "content": text}], "options": {"num_predict": 3}}})
}

async fn events(app: &TestApp, id: &str) -> Vec<(String, Option<String>)> {
    let id = id.to_string();
    app.state
        .store
        .read(move |c| {
            let mut s =
                c.prepare("SELECT state, detail FROM job_events WHERE job_id = ?1 ORDER BY id")?;
            let rows = s
                .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
        .unwrap()
}

/// Steps the worker until nothing is left to do; returns the outcomes.
async fn drain(worker: &mut Worker) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for _ in 0..10_000 {
        let o = worker.try_run_once().await.unwrap();
        match &o {
            Outcome::Idle => return outcomes,
            Outcome::Waiting(Wait::Backoff(_)) => {
                tokio::time::sleep(Duration::from_millis(5)).await
            }
            Outcome::Waiting(w) => panic!("worker waits: {w:?}"),
            Outcome::Ran { .. } => {}
        }
        outcomes.push(o);
    }
    panic!("worker did not drain");
}

#[tokio::test]
async fn a_job_runs_through_every_state_and_stores_its_result() {
    let sim = spawn_sim(|_| {}).await;
    let app = spawn_proxy(&sim.url(), |_| {}).await;
    let r = submit(&app, chat("llama3.2", "hello")).await;
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let v: Value = r.json().await.unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/jobs/{id}"));
    assert_eq!(v["state"], "queued");
    assert_eq!(v["kind"], "chat");
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);
    let done = app.wait_for_state(&id, &["done"]).await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["attempts"], 1);
    assert_eq!(done["result"]["message"]["role"], "assistant");
    assert!(
        !done["result"]["message"]["content"]
            .as_str()
            .unwrap()
            .is_empty()
    );
    assert_eq!(done["result"]["done_reason"], "length");
    assert_eq!(done["usage"]["completion_tokens"], 3);
    for t in ["created_at", "loading_at", "working_at", "finished_at"] {
        assert!(done["timestamps"][t].is_string(), "{t}");
    }
    let states: Vec<String> = events(&app, &id).await.into_iter().map(|e| e.0).collect();
    assert_eq!(states, ["queued", "loading", "working", "done"]);
    app.shutdown().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn generate_and_embed_jobs_are_inferred_and_assembled() {
    let sim = spawn_sim(|_| {}).await;
    let app = spawn_proxy(&sim.url(), |c| c.worker.enabled = false).await;
    let g = submit_ok(
        &app,
        json!({"request": {"model": "llama3.2", "prompt": "x", "options": {"num_predict": 2}}}),
    )
    .await;
    let e = submit_ok(
        &app,
        json!({"request": {"model": "all-minilm", "input": ["a", "b"]}, "metadata": {"batch": 7}}),
    )
    .await;
    drain(&mut Worker::new(app.state.clone())).await;
    let g = job(&app, &g).await;
    assert_eq!(g["kind"], "generate");
    assert!(g["result"]["response"].as_str().unwrap().len() > 1);
    let e = job(&app, &e).await;
    assert_eq!(e["kind"], "embed");
    assert_eq!(e["result"]["embeddings"].as_array().unwrap().len(), 2);
    assert_eq!(e["metadata"], json!({"batch": 7}));
    app.shutdown().await.unwrap();
    sim.shutdown().await;
}

/// Room for one model: a mixed batch costs one load per model, not one per switch.
#[tokio::test]
async fn a_mixed_batch_is_drained_by_model() {
    let gb = 1_000_000_000;
    let sim = spawn_sim(|c| {
        c.models = ["a", "b", "c"]
            .iter()
            .map(|m| ModelSpec::chat(m, 4 * gb, Duration::from_secs(10)))
            .collect();
        c.memory_capacity = 6 * gb;
    })
    .await;
    let app = spawn_proxy(&sim.url(), |c| c.worker.enabled = false).await;
    for i in 0..12 {
        let model = ["a", "b", "c"][i % 3];
        submit_ok(&app, chat(model, &format!("job {i}"))).await;
    }
    let outcomes = drain(&mut Worker::new(app.state.clone())).await;
    assert_eq!(outcomes.len(), 12);
    let stats = sim.stats();
    assert_eq!(stats.total_loads(), 3, "{stats:?}");
    let served: Vec<&str> = stats.served.iter().map(String::as_str).collect();
    assert_eq!(
        served,
        [["a:latest"; 4], ["b:latest"; 4], ["c:latest"; 4]].concat()
    );
    app.shutdown().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn the_fifo_scheduler_keeps_arrival_order_and_thrashes() {
    let gb = 1_000_000_000;
    let sim = spawn_sim(|c| {
        c.models = ["a", "b"]
            .iter()
            .map(|m| ModelSpec::chat(m, 4 * gb, Duration::from_secs(10)))
            .collect();
        c.memory_capacity = 6 * gb;
    })
    .await;
    let app = spawn_proxy(&sim.url(), |c| {
        c.worker.enabled = false;
        c.worker.scheduler = foreman::queue::select::Scheduler::Fifo;
    })
    .await;
    for i in 0..6 {
        submit_ok(&app, chat(["a", "b"][i % 2], "x")).await;
    }
    drain(&mut Worker::new(app.state.clone())).await;
    let stats = sim.stats();
    assert_eq!(
        stats.served,
        [
            "a:latest", "b:latest", "a:latest", "b:latest", "a:latest", "b:latest"
        ]
    );
    assert_eq!(stats.total_loads(), 6);
    app.shutdown().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn a_model_the_target_has_loaded_is_served_first() {
    let sim = spawn_sim(|_| {}).await;
    let app = spawn_proxy(&sim.url(), |c| c.worker.enabled = false).await;
    submit_ok(&app, chat("gemma3:4b", "older")).await;
    submit_ok(&app, chat("llama3.2", "newer")).await;
    // Something else loaded llama3.2; the monitor sees it.
    app.client
        .post(format!("{}/api/generate", sim.url()))
        .body(r#"{"model":"llama3.2"}"#)
        .send()
        .await
        .unwrap();
    app.state.monitor.poll_once().await;
    let mut w = Worker::new(app.state.clone());
    w.try_run_once().await.unwrap();
    assert_eq!(sim.stats().served, ["llama3.2:latest"]);
    app.shutdown().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_target_requeues_without_consuming_an_attempt() {
    let sim = spawn_sim(|_| {}).await;
    let addr = sim.addr();
    let app = spawn_proxy(&sim.url(), |c| c.worker.enabled = false).await;
    app.state.monitor.poll_once().await;
    let id = submit_ok(&app, chat("llama3.2", "x")).await;
    sim.shutdown().await; // the target goes away; the monitor has not noticed yet
    let mut w = Worker::new(app.state.clone());
    let o = w.try_run_once().await.unwrap();
    assert_eq!(
        o,
        Outcome::Ran {
            id: id.clone(),
            state: foreman_api::jobs::JobState::Queued
        }
    );
    let v = job(&app, &id).await;
    assert_eq!(v["state"], "queued");
    assert_eq!(v["attempts"], 0, "refunded");
    assert!(
        v["last_error"]
            .as_str()
            .unwrap()
            .starts_with("target unreachable")
    );
    // While the monitor sees it down, the worker waits instead of spinning.
    app.state.monitor.poll_once().await;
    assert_eq!(
        w.try_run_once().await.unwrap(),
        Outcome::Waiting(Wait::TargetDown)
    );
    // The target wakes up on the same address: the job finishes, first attempt.
    let sim = ollama_sim::spawn(ollama_sim::SimConfig {
        listen: addr,
        time_scale: 0.001,
        ..Default::default()
    })
    .await
    .unwrap();
    app.state.monitor.poll_once().await;
    drain(&mut w).await;
    let v = job(&app, &id).await;
    assert_eq!(v["state"], "done");
    assert_eq!(v["attempts"], 1);
    app.shutdown().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn an_asleep_target_delays_jobs_but_fails_none() {
    let sim = spawn_sim(|_| {}).await;
    sim.fault(FaultRule::once(FaultKind::Asleep { for_ms: 400 }));
    tokio::time::sleep(Duration::from_millis(30)).await; // the listener is closed now
    let app = spawn_proxy(&sim.url(), |_| {}).await;
    let ids: Vec<String> = futures::future::join_all(
        (0..3).map(|i| submit_ok(&app, chat("llama3.2", &i.to_string()))),
    )
    .await;
    for id in &ids {
        let app = &app;
        let state = app.wait_for_state(id, &["done", "failed"]).await["state"].clone();
        assert_eq!(state, "done", "{id}");
        assert_eq!(
            job(app, id).await["attempts"],
            1,
            "no attempt consumed while asleep"
        );
    }
    app.shutdown().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn busy_and_server_errors_are_retried_with_backoff() {
    let sim = spawn_sim(|_| {}).await;
    let app = spawn_proxy(&sim.url(), |c| {
        c.worker.enabled = false;
        c.worker.retry_base = Duration::from_millis(20);
    })
    .await;
    sim.fault(FaultRule {
        count: Some(1),
        ..FaultRule::once(FaultKind::Busy)
    });
    sim.fault(FaultRule::once(FaultKind::ErrorMidStream {
        after_lines: 1,
    }));
    let id = submit_ok(&app, chat("llama3.2", "x")).await;
    drain(&mut Worker::new(app.state.clone())).await;
    let v = job(&app, &id).await;
    assert_eq!(v["state"], "done");
    assert_eq!(v["attempts"], 3);
    let retries: Vec<String> = events(&app, &id)
        .await
        .into_iter()
        .filter_map(|(s, d)| (s == "queued").then_some(d).flatten())
        .collect();
    assert_eq!(retries.len(), 2, "{retries:?}");
    assert!(retries[0].contains("503"), "{retries:?}");
    assert!(
        retries[1].contains("model runner has unexpectedly stopped"),
        "{retries:?}"
    );
    app.shutdown().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn retries_stop_at_max_attempts() {
    let sim = spawn_sim(|_| {}).await;
    let app = spawn_proxy(&sim.url(), |c| {
        c.worker.enabled = false;
        c.worker.retry_base = Duration::from_millis(5);
        c.worker.max_attempts = 2;
    })
    .await;
    sim.fault(FaultRule {
        count: None,
        ..FaultRule::once(FaultKind::Status {
            status: 500,
            message: "boom".into(),
        })
    });
    let id = submit_ok(&app, chat("llama3.2", "x")).await;
    drain(&mut Worker::new(app.state.clone())).await;
    let v = job(&app, &id).await;
    assert_eq!(v["state"], "failed");
    assert_eq!(v["attempts"], 2);
    assert_eq!(v["last_error"], "target answered 500: boom");
    app.shutdown().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn an_unknown_model_fails_at_once_with_the_targets_message() {
    let sim = spawn_sim(|_| {}).await;
    let app = spawn_proxy(&sim.url(), |c| c.worker.enabled = false).await;
    let id = submit_ok(&app, chat("nope", "x")).await;
    drain(&mut Worker::new(app.state.clone())).await;
    let v = job(&app, &id).await;
    assert_eq!(v["state"], "failed");
    assert_eq!(v["attempts"], 1);
    assert_eq!(
        v["last_error"],
        "target answered 404: model 'nope' not found"
    );
    app.shutdown().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn the_worker_defers_to_interactive_traffic_within_the_grace() {
    let sim = spawn_sim(|c| c.time_scale = 0.01).await;
    let app = spawn_proxy(&sim.url(), |c| {
        c.worker.enabled = false;
        c.worker.interactive_grace = Duration::from_millis(300);
    })
    .await;
    submit_ok(&app, chat("gemma3:4b", "x")).await;
    let mut stream = app
        .client
        .post(app.url("/api/chat"))
        .body(r#"{"model":"llama3.2","messages":[{"role":"user","content":"x"}],"options":{"num_predict":100000}}"#)
        .send()
        .await
        .unwrap();
    stream.chunk().await.unwrap();
    let mut w = Worker::new(app.state.clone());
    assert_eq!(
        w.try_run_once().await.unwrap(),
        Outcome::Waiting(Wait::Interactive)
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(
        matches!(w.try_run_once().await.unwrap(), Outcome::Ran { .. }),
        "grace over: goes on regardless"
    );
    drop(stream);
    app.shutdown().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn after_interactive_traffic_the_worker_prefers_its_model() {
    let sim = spawn_sim(|_| {}).await;
    let app = spawn_proxy(&sim.url(), |c| c.worker.enabled = false).await;
    submit_ok(&app, chat("gemma3:4b", "older")).await;
    submit_ok(&app, chat("llama3.2", "newer")).await;
    let r = app
        .client
        .post(app.url("/api/chat"))
        .body(r#"{"model":"llama3.2","messages":[{"role":"user","content":"x"}],"stream":false}"#)
        .send()
        .await
        .unwrap();
    r.bytes().await.unwrap();
    sim.reset();
    let mut w = Worker::new(app.state.clone());
    w.try_run_once().await.unwrap();
    assert_eq!(sim.stats().served, ["llama3.2:latest"]);
    app.shutdown().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_job_bodies_get_clear_errors_and_store_nothing() {
    let app = spawn_proxy("http://127.0.0.1:9", |c| {
        c.worker.enabled = false;
        c.max_body_bytes = 4096;
    })
    .await;
    let cases: Vec<(&str, u16, Option<&str>)> = vec![
        ("{not json", 400, None),
        (
            r#"{"request": {"messages": []}}"#,
            400,
            Some("request.model"),
        ),
        (
            r#"{"request": {"model": 5, "prompt": "x"}}"#,
            400,
            Some("request.model"),
        ),
        (r#"{"request": {"model": "m"}}"#, 400, Some("kind")),
        (
            r#"{"request": {"model": "m", "prompt": "x"}, "kind": "paint"}"#,
            400,
            Some("kind"),
        ),
        (
            r#"{"request": {"model": "m", "messages": "hi"}}"#,
            400,
            Some("request.messages"),
        ),
        (
            r#"{"request": {"model": "m", "messages": []}}"#,
            422,
            Some("request.messages"),
        ),
        (
            r#"{"request": {"model": "m", "input": [1]}}"#,
            422,
            Some("request.input"),
        ),
        (r#"{"request": "text"}"#, 400, Some("request")),
        (
            r#"{"request": {"model": "m", "prompt": "x"}, "extra": 1}"#,
            400,
            Some("extra"),
        ),
    ];
    for (body, status, field) in cases {
        let r = app
            .client
            .post(app.url("/jobs"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{body}");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"]["message"].is_string(), "{body}: {v}");
        if let Some(field) = field {
            assert_eq!(v["error"]["field"], field, "{body}: {v}");
        }
    }
    let r = app
        .client
        .post(app.url("/jobs"))
        .body(vec![b' '; 5000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let r = app.get("/jobs/0190b5a4-0000-7000-8000-000000000000").await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "not_found");
    let n: i64 = app
        .state
        .store
        .read(|c| Ok(c.query_row("SELECT count(*) FROM jobs", [], |r| r.get(0))?))
        .await
        .unwrap();
    assert_eq!(n, 0, "nothing stored");
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_full_queue_answers_429_with_retry_after() {
    let app = spawn_proxy("http://127.0.0.1:9", |c| {
        c.worker.enabled = false;
        c.max_queued_jobs = 2;
    })
    .await;
    submit_ok(&app, chat("m", "1")).await;
    submit_ok(&app, chat("m", "2")).await;
    let r = submit(&app, chat("m", "3")).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "30");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "queue_full");
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn status_shows_the_queue() {
    let app = spawn_proxy("http://127.0.0.1:9", |c| {
        c.worker.enabled = false;
        c.max_queued_jobs = 10;
    })
    .await;
    submit_ok(&app, chat("a", "1")).await;
    submit_ok(&app, chat("a", "2")).await;
    let mut opts = chat("b", "3");
    opts["request"]["options"]["num_ctx"] = json!(8192);
    submit_ok(&app, opts).await;
    let v: Value = app.get("/status").await.json().await.unwrap();
    let q = &v["queue"];
    assert_eq!(q["by_state"]["queued"], 3);
    assert_eq!(q["queued_by_key"]["a:latest"], 2);
    assert_eq!(q["queued_by_key"]["b:latest|num_ctx=8192"], 1);
    assert!(q["oldest_queued_age_s"].as_f64().unwrap() >= 0.0);
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn cancel_a_queued_job_at_once_and_refuse_terminal_ones() {
    let app = spawn_proxy("http://127.0.0.1:9", |c| c.worker.enabled = false).await;
    let id = submit_ok(&app, chat("m", "x")).await;
    let r = app
        .client
        .post(app.url(&format!("/jobs/{id}/cancel")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["state"], "canceled");
    let r = app
        .client
        .delete(app.url(&format!("/jobs/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "conflict");
    let r = app
        .client
        .post(app.url("/jobs/nope/cancel"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = app.get("/status").await.json().await.unwrap();
    assert!(
        v["queue"]["queued_by_key"].as_object().unwrap().is_empty(),
        "left the queue"
    );
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn cancel_a_working_job_aborts_the_upstream_request() {
    let sim = spawn_sim(|c| c.time_scale = 0.01).await;
    let app = spawn_proxy(&sim.url(), |_| {}).await;
    let long = json!({"request": {"model": "llama3.2", "messages": [{"role": "user", "content": "x"}], "options": {"num_predict": 100000}}});
    let id = submit_ok(&app, long).await;
    let state = app.wait_for_state(&id, &["working"]).await["state"].clone();
    assert_eq!(state, "working");
    let r = app
        .client
        .delete(app.url(&format!("/jobs/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["state"], "canceled");
    crate::helpers::eventually("the simulator sees the abort", || {
        sim.stats().cancelled == 1
    })
    .await;
    let states: Vec<String> = events(&app, &id).await.into_iter().map(|e| e.0).collect();
    assert_eq!(states, ["queued", "loading", "working", "canceled"]);
    app.shutdown().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn long_poll_returns_as_soon_as_the_job_ends() {
    let sim = spawn_sim(|_| {}).await;
    let app = spawn_proxy(&sim.url(), |c| c.worker.enabled = false).await;
    let id = submit_ok(&app, chat("llama3.2", "x")).await;
    let url = app.url(&format!("/jobs/{id}?wait=30s"));
    let client = app.client.clone();
    let poll = tokio::spawn(async move {
        client
            .get(url)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    });
    tokio::task::yield_now().await;
    let started = std::time::Instant::now();
    drain(&mut Worker::new(app.state.clone())).await;
    let v = poll.await.unwrap();
    assert_eq!(v["state"], "done");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "not the full wait"
    );
    // `Prefer: wait=N` on a terminal job answers at once; a bad wait is a 400.
    let r = app
        .client
        .get(app.url(&format!("/jobs/{id}")))
        .header("prefer", "wait=5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["state"], "done");
    let r = app.get(&format!("/jobs/{id}?wait=soon")).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["field"], "wait");
    app.shutdown().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn list_pages_newest_first_with_a_stable_cursor() {
    let app = spawn_proxy("http://127.0.0.1:9", |c| c.worker.enabled = false).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(submit_ok(&app, chat(if i % 2 == 0 { "a" } else { "b" }, "x")).await);
    }
    let page: Value = app.get("/jobs?limit=2").await.json().await.unwrap();
    let got: Vec<&str> = page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [ids[4].as_str(), ids[3].as_str()]);
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    // A job inserted now does not shift the next page.
    submit_ok(&app, chat("a", "late")).await;
    let page: Value = app
        .get(&format!("/jobs?limit=2&cursor={cursor}"))
        .await
        .json()
        .await
        .unwrap();
    let got: Vec<&str> = page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [ids[2].as_str(), ids[1].as_str()]);
    let a: Value = app
        .get("/jobs?model=a&state=queued")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(a["jobs"].as_array().unwrap().len(), 4);
    assert!(a.get("next_cursor").is_none());
    for bad in [
        "/jobs?cursor=zzz",
        "/jobs?limit=0",
        "/jobs?state=sleeping",
        "/jobs?since=yesterday",
    ] {
        let r = app.get(bad).await;
        assert_eq!(r.status(), 400, "{bad}");
    }
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn events_are_listed_and_followed_live() {
    let sim = spawn_sim(|_| {}).await;
    let app = spawn_proxy(&sim.url(), |c| c.worker.enabled = false).await;
    let id = submit_ok(&app, chat("llama3.2", "x")).await;
    let mut follow = app
        .client
        .get(app.url(&format!("/jobs/{id}/events?follow=true")))
        .send()
        .await
        .unwrap();
    assert_eq!(follow.headers()["content-type"], "text/event-stream");
    drain(&mut Worker::new(app.state.clone())).await;
    let mut text = String::new();
    while let Some(chunk) = follow.chunk().await.unwrap() {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let states: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| {
            serde_json::from_str::<Value>(d).unwrap()["state"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(states, ["queued", "loading", "working", "done"], "{text}");
    let listed: Value = app
        .get(&format!("/jobs/{id}/events"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["events"].as_array().unwrap().len(), 4);
    assert_eq!(app.get("/jobs/nope/events").await.status(), 404);
    app.shutdown().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn a_done_job_has_an_artifact_with_etag_and_length() {
    let sim = spawn_sim(|_| {}).await;
    let app = spawn_proxy(&sim.url(), |c| c.worker.enabled = false).await;
    let id = submit_ok(&app, chat("llama3.2", "x")).await;
    assert_eq!(
        app.get(&format!("/jobs/{id}/artifact")).await.status(),
        404,
        "not before done"
    );
    drain(&mut Worker::new(app.state.clone())).await;
    let r = app.get(&format!("/jobs/{id}/artifact")).await;
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let length: usize = r.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = r.bytes().await.unwrap();
    assert_eq!(body.len(), length);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["job_id"], id.as_str());
    assert_eq!(v["result"], job(&app, &id).await["result"]);
    for phase in ["queued", "loading", "working"] {
        assert!(v["timings_ms"][phase].as_i64().unwrap() >= 0, "{phase}");
    }
    let hex = etag.trim_matches('"');
    assert_eq!(
        hex,
        foreman::artifacts::hex(&<sha2::Sha256 as sha2::Digest>::digest(&body))
    );
    let r = app
        .client
        .get(app.url(&format!("/jobs/{id}/artifact")))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    for bad in [
        "/jobs/..%2F..%2Fetc%2Fpasswd/artifact",
        "/jobs/nope/artifact",
    ] {
        assert_eq!(app.get(bad).await.status(), 404, "{bad}");
    }
    app.shutdown().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn an_oversized_result_fails_the_job_instead_of_storing_it() {
    let sim = spawn_sim(|_| {}).await;
    let app = spawn_proxy(&sim.url(), |c| {
        c.worker.enabled = false;
        c.artifact_max_bytes = 100;
    })
    .await;
    let id = submit_ok(&app, chat("llama3.2", "x")).await;
    drain(&mut Worker::new(app.state.clone())).await;
    let v = job(&app, &id).await;
    assert_eq!(v["state"], "failed");
    assert!(
        v["last_error"]
            .as_str()
            .unwrap()
            .contains("artifact_max_bytes")
    );
    app.shutdown().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn idempotency_keys_replay_the_same_job_and_refuse_a_different_body() {
    let app = spawn_proxy("http://127.0.0.1:9", |c| c.worker.enabled = false).await;
    let send = |body: Value, key: &'static str| {
        app.client
            .post(app.url("/jobs"))
            .header("idempotency-key", key)
            .json(&body)
            .send()
    };
    let first = send(chat("m", "a"), "k-1").await.unwrap();
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let again = send(chat("m", "a"), "k-1").await.unwrap();
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap()["id"], first["id"]);
    let other = send(chat("m", "b"), "k-1").await.unwrap();
    assert_eq!(other.status(), 422);
    assert_eq!(
        other.json::<Value>().await.unwrap()["error"]["field"],
        "Idempotency-Key"
    );
    let list: Value = app.get("/jobs").await.json().await.unwrap();
    assert_eq!(list["jobs"].as_array().unwrap().len(), 1, "one job stored");
    let bad = app
        .client
        .post(app.url("/jobs"))
        .header("idempotency-key", "")
        .json(&chat("m", "a"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn pruning_removes_old_finished_jobs_with_their_files_and_keeps_the_rest() {
    let sim = spawn_sim(|_| {}).await;
    let app = spawn_proxy(&sim.url(), |c| c.worker.enabled = false).await;
    let done = submit_ok(&app, chat("llama3.2", "x")).await;
    drain(&mut Worker::new(app.state.clone())).await;
    let queued = submit_ok(&app, chat("llama3.2", "y")).await;
    let dir = app.state.config.artifacts_dir();
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    // Far in the future every finished job is past its retention; queued ones are never pruned.
    let future = foreman::clock::now_ms() + 30 * 24 * 3600 * 1000;
    let retention = 7 * 24 * 3600 * 1000;
    let p = foreman::prune::prune(&app.state.store, &dir, future, retention)
        .await
        .unwrap();
    assert_eq!((p.jobs, p.files), (1, 1));
    assert_eq!(app.get(&format!("/jobs/{done}")).await.status(), 404);
    assert_eq!(job(&app, &queued).await["state"], "queued");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    let events: i64 = app
        .state
        .store
        .read(move |c| {
            Ok(c.query_row(
                "SELECT count(*) FROM job_events WHERE job_id = ?1",
                [&done],
                |r| r.get(0),
            )?)
        })
        .await
        .unwrap();
    assert_eq!(events, 0, "events went with the job");
    app.shutdown().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn following_a_working_job_shows_token_progress_at_most_every_500_ms() {
    // 1,600 tokens at 40 tok/s = 40 s simulated = 0.8 s real at 0.02: a few progress notices.
    let sim = spawn_sim(|c| c.time_scale = 0.02).await;
    let app = spawn_proxy(&sim.url(), |_| {}).await;
    let body = json!({"request": {"model": "llama3.2", "messages": [{"role": "user", "content": "x"}], "options": {"num_predict": 1600}}});
    let id = submit_ok(&app, body).await;
    let mut follow = app
        .client
        .get(app.url(&format!("/jobs/{id}/events?follow=true")))
        .send()
        .await
        .unwrap();
    let mut text = String::new();
    while let Some(chunk) = follow.chunk().await.unwrap() {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let progress: Vec<u64> = text
        .split("\n\n")
        .filter(|e| e.contains("event: progress"))
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|d| {
            serde_json::from_str::<Value>(d).unwrap()["tokens"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!(!progress.is_empty(), "{text}");
    assert!(
        progress.windows(2).all(|w| w[0] < w[1]),
        "increasing: {progress:?}"
    );
    assert!(
        progress.len() <= 3,
        "throttled to ≥ 500 ms over ~0.8 s: {progress:?}"
    );
    assert!(text.contains("\"state\":\"done\""));
    app.shutdown().await.unwrap();
    sim.shutdown().await;
}
