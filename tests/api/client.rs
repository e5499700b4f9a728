//! `foreman-client` against the real daemon and the simulator: the facade answers what the
//! target answers, every job call round-trips, and errors arrive typed.

use std::time::Duration;

use foreman_api::jobs::{JobState, SubmitJob};
use foreman_client::ollama::{ChatRequest, EmbedRequest, GenerateRequest, Message};
use foreman_client::{Client, Error, ListFilter, Update};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_proxy, spawn_sim};

fn client(app: &TestApp) -> Client {
    Client::new(app.base.clone()).unwrap()
}

fn generate_job(model: &str, prompt: &str) -> SubmitJob {
    SubmitJob {
        request: json!({"model": model, "prompt": prompt, "options": {"num_predict": 3}}),
        kind: None,
        webhook: None,
        metadata: None,
    }
}

#[tokio::test]
async fn the_facade_answers_what_the_target_answers() {
    let sim = spawn_sim(|_| {}).await;
    let app = spawn_proxy(&sim.url(), |_| {}).await;
    let client = client(&app);

    let chat = ChatRequest::new("llama3.2", vec![Message::user("Why is the sky blue?")])
        .option("num_predict", 5);
    let expected = crate::helpers::direct_answer(
        &sim.url(),
        "/api/chat",
        &serde_json::to_value(&chat).unwrap(),
    )
    .await;
    let reply = client.chat(chat).await.unwrap();
    assert_eq!(reply.message.role, "assistant");
    assert_eq!(
        reply.message.content,
        expected["message"]["content"].as_str().unwrap()
    );
    assert_eq!(reply.eval_count, expected["eval_count"].as_u64());

    let generate = GenerateRequest::new("qwen3:8b", "Name a colour").option("num_predict", 4);
    let expected = crate::helpers::direct_answer(
        &sim.url(),
        "/api/generate",
        &serde_json::to_value(&generate).unwrap(),
    )
    .await;
    let answer = client.generate(generate).await.unwrap();
    assert_eq!(answer.response, expected["response"].as_str().unwrap());

    let embed = EmbedRequest::new("llama3.2", ["one", "two"]);
    let expected = crate::helpers::direct_answer(
        &sim.url(),
        "/api/embed",
        &serde_json::to_value(&embed).unwrap(),
    )
    .await;
    let vectors = client.embed(embed).await.unwrap();
    assert_eq!(vectors.embeddings.len(), 2);
    let direct_vectors: Vec<Vec<f32>> =
        serde_json::from_value(expected["embeddings"].clone()).unwrap();
    assert_eq!(vectors.embeddings, direct_vectors);
    sim.shutdown().await;
}

#[tokio::test]
async fn follow_sees_every_state_then_wait_and_artifact_agree() {
    let sim = spawn_sim(|_| {}).await;
    let app = spawn_proxy(&sim.url(), |_| {}).await;
    let client = client(&app);
    let job = client
        .submit(&generate_job("llama3.2", "hello"))
        .await
        .unwrap();
    assert_eq!(job.state, JobState::Queued);

    let updates: Vec<Update> = client
        .follow(&job.id)
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    let states: Vec<JobState> = updates
        .iter()
        .filter_map(|u| match u {
            Update::State(e) => Some(e.state),
            Update::Progress { .. } => None,
        })
        .collect();
    assert_eq!(
        states,
        [
            JobState::Queued,
            JobState::Loading,
            JobState::Working,
            JobState::Done
        ],
        "the stream ends after the terminal state"
    );

    let done = client.wait(&job.id, Duration::from_secs(10)).await.unwrap();
    assert_eq!(done.state, JobState::Done);
    let artifact: Value = serde_json::from_slice(&client.artifact(&job.id).await.unwrap()).unwrap();
    assert_eq!(artifact["job_id"], json!(job.id));
    assert_eq!(
        Some(&artifact["result"]),
        done.result.as_ref(),
        "the artifact holds the stored result"
    );
    assert_eq!(client.events(&job.id).await.unwrap().len(), 4);
    sim.shutdown().await;
}

#[tokio::test]
async fn list_pages_through_every_job_newest_first() {
    let app = spawn_proxy("http://127.0.0.1:9", |c| c.worker.enabled = false).await;
    let client = client(&app);
    let mut ids = Vec::new();
    for i in 0..7 {
        let model = if i % 2 == 0 { "even" } else { "odd" };
        ids.push(
            client
                .submit(&generate_job(model, &format!("p{i}")))
                .await
                .unwrap()
                .id,
        );
    }
    let listed = |filter: ListFilter| {
        let client = client.clone();
        async move {
            client
                .list(filter)
                .map(|j| j.unwrap().id)
                .collect::<Vec<_>>()
                .await
        }
    };
    let all = listed(ListFilter {
        page_size: Some(3),
        ..ListFilter::default()
    })
    .await;
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(all, newest_first, "three pages of 3, 3 and 1");
    let odd = listed(ListFilter {
        model: Some("odd".into()),
        state: Some(JobState::Queued),
        page_size: Some(2),
        ..ListFilter::default()
    })
    .await;
    assert_eq!(odd, [ids[5].clone(), ids[3].clone(), ids[1].clone()]);
}

#[tokio::test]
async fn waits_end_in_typed_errors() {
    let app = spawn_proxy("http://127.0.0.1:9", |c| c.worker.enabled = false).await;
    let client = Client::builder(app.base.clone())
        .job_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let job = client.submit(&generate_job("m", "x")).await.unwrap();
    match client.wait(&job.id, Duration::from_millis(200)).await {
        Err(Error::Timeout { id, .. }) => assert_eq!(id, job.id),
        other => panic!("expected a timeout, got {other:?}"),
    }

    // The facade's own job is canceled by someone else while it waits.
    let waiting = tokio::spawn({
        let client = Client::new(app.base.clone()).unwrap();
        async move { client.generate(GenerateRequest::new("victim", "x")).await }
    });
    let victim = loop {
        let queued = client
            .list_page(
                &ListFilter {
                    model: Some("victim".into()),
                    ..ListFilter::default()
                },
                None,
            )
            .await
            .unwrap();
        if let Some(j) = queued.jobs.first() {
            break j.id.clone();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(
        client.cancel(&victim).await.unwrap().state,
        JobState::Canceled
    );
    match waiting.await.unwrap() {
        Err(Error::Canceled { id, .. }) => assert_eq!(id, victim),
        other => panic!("expected canceled, got {other:?}"),
    }

    match client.get("0190b1a0-0000-7000-8000-000000000000").await {
        Err(Error::Status {
            status: 404,
            detail,
            ..
        }) => assert_eq!(detail.code, "not_found"),
        other => panic!("expected 404, got {other:?}"),
    }
    let mut bad = generate_job("m", "x");
    bad.request = json!("not an object");
    match client.submit(&bad).await {
        Err(Error::Status { status, detail, .. }) => {
            assert!((400..500).contains(&status), "{status}");
            assert_eq!(detail.field.as_deref(), Some("request"), "{detail:?}");
        }
        other => panic!("expected a 4xx, got {other:?}"),
    }
}

#[tokio::test]
async fn a_failed_job_carries_the_targets_message() {
    let sim = spawn_sim(|_| {}).await;
    let app = spawn_proxy(&sim.url(), |c| c.worker.max_attempts = 1).await;
    match client(&app)
        .generate(GenerateRequest::new("no-such-model", "x"))
        .await
    {
        Err(Error::JobFailed { message, job, .. }) => {
            assert!(message.contains("not found"), "{message}");
            assert_eq!(job.state, JobState::Failed);
        }
        other => panic!("expected a failed job, got {other:?}"),
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn the_token_is_sent() {
    let app = spawn_proxy("http://127.0.0.1:9", |c| {
        c.api_tokens = vec![foreman::config::Secret::new("s3cret")];
    })
    .await;
    let anonymous = client(&app).status().await;
    assert_eq!(anonymous.err().and_then(|e| e.status()), Some(401));
    let with_token = Client::builder(app.base.clone())
        .token("s3cret")
        .build()
        .unwrap();
    let status = with_token.status().await.unwrap();
    assert_eq!(status.target.url, "http://127.0.0.1:9/");
}

/// The blocking client from a plain thread; the daemon and simulator run on their own runtime.
#[test]
fn the_blocking_client_needs_no_runtime() {
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let sim = spawn_sim(|_| {}).await;
            let app = spawn_proxy(&sim.url(), |_| {}).await;
            tx.send((app.base.clone(), sim.url())).unwrap();
            let _ = stop_rx.await;
            app.shutdown().await.unwrap();
            sim.shutdown().await;
        });
    });
    let (base, _sim) = rx.recv().unwrap();
    let client = foreman_client::blocking::Client::new(base).unwrap();
    let answer = client
        .generate(GenerateRequest::new("llama3.2", "hi").option("num_predict", 2))
        .unwrap();
    assert!(!answer.response.is_empty());
    let jobs: Vec<_> = client
        .list(ListFilter::default())
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(jobs.len(), 1);
    let states: Vec<_> = client
        .follow(&jobs[0].id)
        .unwrap()
        .filter_map(|u| match u.unwrap() {
            Update::State(e) => Some(e.state),
            Update::Progress { .. } => None,
        })
        .collect();
    assert_eq!(states.last(), Some(&JobState::Done));
    stop_tx.send(()).unwrap();
    server.join().unwrap();
}
