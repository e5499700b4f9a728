//! Target faults (through the simulator's fault injection), one case per fault: what a
//! passthrough client gets, what happens to a job, and that nothing is left running after.

use std::time::Duration;

use ollama_sim::{FaultKind, FaultRule, ModelSpec};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_proxy, spawn_sim};

/// What a passthrough client should see while the fault applies.
enum Client {
    /// This status, and the body contains this text.
    Status(u16, &'static str),
    /// 200, and the streamed body contains this text (an in-band error).
    StreamWith(&'static str),
    /// 200 headers, then the body is cut (the client sees an incomplete body).
    StreamCut,
}

struct Case {
    name: &'static str,
    fault: FaultKind,
    model: &'static str,
    client: Client,
    /// Attempts the job needs (1 when the fault only delays it).
    attempts: u64,
    adjust: fn(&mut foreman::config::Config),
}

fn no_change(_: &mut foreman::config::Config) {}

fn short_header_timeout(c: &mut foreman::config::Config) {
    c.target.header_timeout = Some(Duration::from_millis(300));
}

fn short_idle_timeout(c: &mut foreman::config::Config) {
    c.target.idle_timeout = Duration::from_millis(200);
}

fn cases() -> Vec<Case> {
    let asleep_ms = if std::env::var_os("FOREMAN_SOAK").is_some() {
        60_000
    } else {
        500
    };
    vec![
        Case {
            name: "500 from the target",
            fault: FaultKind::Status {
                status: 500,
                message: "boom".into(),
            },
            model: "llama3.2",
            client: Client::Status(500, r#"{"error":"boom"}"#),
            attempts: 2,
            adjust: no_change,
        },
        Case {
            name: "503 busy",
            fault: FaultKind::Busy,
            model: "llama3.2",
            client: Client::Status(503, "server busy"),
            attempts: 2,
            adjust: no_change,
        },
        Case {
            name: "hangs before headers",
            fault: FaultKind::HangBeforeHeaders,
            model: "llama3.2",
            client: Client::Status(504, "error"),
            attempts: 2,
            adjust: short_header_timeout,
        },
        Case {
            name: "runner crash mid-stream",
            fault: FaultKind::ErrorMidStream { after_lines: 1 },
            model: "llama3.2",
            client: Client::StreamWith("model runner has unexpectedly stopped"),
            attempts: 2,
            adjust: no_change,
        },
        Case {
            name: "dies mid-stream",
            fault: FaultKind::DropAfterLines { after_lines: 1 },
            model: "llama3.2",
            client: Client::StreamCut,
            attempts: 2,
            adjust: no_change,
        },
        Case {
            name: "stalls after the headers (idle timeout)",
            fault: FaultKind::StallAfterLines {
                after_lines: 1,
                stall_ms: 5_000,
            },
            model: "llama3.2",
            client: Client::StreamCut,
            attempts: 2,
            adjust: short_idle_timeout,
        },
        Case {
            name: "slow first token",
            fault: FaultKind::SlowFirstToken { delay_ms: 300_000 },
            model: "llama3.2",
            client: Client::StreamWith("\"done\":true"),
            attempts: 1,
            adjust: no_change,
        },
        Case {
            name: "slow load (no time-to-first-byte timeout)",
            fault: FaultKind::SlowFirstToken { delay_ms: 0 },
            model: "slow-loader",
            client: Client::StreamWith("\"done\":true"),
            attempts: 1,
            adjust: no_change,
        },
        Case {
            name: "asleep, then back",
            fault: FaultKind::Asleep { for_ms: asleep_ms },
            model: "llama3.2",
            client: Client::Status(502, "error"),
            attempts: 1,
            adjust: no_change,
        },
    ]
}

async fn passthrough(app: &TestApp, model: &str) -> Result<(u16, String), String> {
    let body = json!({"model": model, "prompt": "hi", "options": {"num_predict": 3}});
    let r = app
        .client
        .post(app.url("/api/generate"))
        .json(&body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    let text = r.text().await.map_err(|e| format!("body cut: {e}"))?;
    Ok((status, text))
}

/// Nothing in flight anywhere: no passthrough request, no running job, no busy runner.
async fn assert_idle(app: &TestApp, sim: &ollama_sim::SimServer, name: &str) {
    for _ in 0..1000 {
        let status: Value = app.get("/status").await.json().await.unwrap();
        let by_state = &status["queue"]["by_state"];
        let busy = ["queued", "loading", "working"]
            .iter()
            .any(|s| by_state[*s].as_u64().unwrap_or(0) > 0);
        if !busy && app.state.interactive.in_flight() == 0 && sim.stats().in_flight == 0 {
            assert!(status["queue"].get("waiting").is_none(), "{name}: {status}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!(
        "{name}: still busy: {}",
        app.get("/status").await.text().await.unwrap()
    );
}

#[tokio::test]
async fn every_target_fault_gets_the_right_answer_and_leaves_nothing_running() {
    for case in cases() {
        let sim = spawn_sim(|c| {
            c.models.push(ModelSpec::chat(
                "slow-loader",
                1 << 30,
                Duration::from_secs(600),
            ));
        })
        .await;
        let name = case.name;
        let asleep = matches!(case.fault, FaultKind::Asleep { .. });
        // Faults apply to the next request; "asleep" closes the listener, which only new
        // connections notice, so it starts before foreman has any.
        sim.fault(FaultRule::once(case.fault.clone()));
        if asleep {
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        let app = spawn_proxy(&sim.url(), |c| {
            c.worker.retry_base = Duration::from_millis(10);
            (case.adjust)(c);
        })
        .await;
        let answer = passthrough(&app, case.model).await;
        match (&case.client, &answer) {
            (Client::Status(want, text), Ok((got, body))) => {
                assert_eq!(got, want, "{name}: {body}");
                assert!(body.contains(text), "{name}: {body}");
            }
            (Client::StreamWith(text), Ok((200, body))) => {
                assert!(body.contains(text), "{name}: {body}");
            }
            (Client::StreamCut, Err(e)) => assert!(e.contains("body cut"), "{name}: {e}"),
            (Client::StreamCut, Ok((_, body))) => {
                assert!(
                    !body.contains("\"done\":true"),
                    "{name}: the client must see the cut: {body}"
                );
            }
            (_, other) => panic!("{name}: unexpected passthrough answer {other:?}"),
        }
        if !asleep {
            sim.fault(FaultRule::once(case.fault.clone()));
        }

        let body = json!({"request": {"model": case.model, "prompt": "job", "options": {"num_predict": 3}}});
        let id = &app.submit_ok(&body).await;
        // Long enough for the nap plus the monitor noticing the target is back.
        let waited = Duration::from_millis(match case.fault {
            FaultKind::Asleep { for_ms } => for_ms + 30_000,
            _ => 30_000,
        });
        let client = foreman_client::Client::new(app.base.clone()).unwrap();
        let view = serde_json::to_value(client.wait(id, waited).await.unwrap()).unwrap();
        assert_eq!(view["state"], "done", "{name}: {view}");
        assert_eq!(view["attempts"], case.attempts, "{name}: {view}");
        assert_idle(&app, &sim, name).await;
        app.shutdown().await.unwrap();
        sim.shutdown().await;
    }
}
