//! Wire-level tests of the simulator against ollama-wire.md: framing, field order, errors,
//! idioms, scheduler behaviour, faults. Byte-level where the spec is byte-level.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use ollama_sim::{FaultKind, FaultRule, ModelSpec, SimConfig, SimServer};
use serde_json::{Value, json};

async fn sim_with(adjust: impl FnOnce(&mut SimConfig)) -> SimServer {
    let mut config = SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        time_scale: 0.001,
        ..SimConfig::default()
    };
    adjust(&mut config);
    ollama_sim::spawn(config).await.unwrap()
}

async fn sim() -> SimServer {
    sim_with(|_| {}).await
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn post(sim: &SimServer, path: &str, body: &str) -> reqwest::Response {
    client()
        .post(format!("{}{path}", sim.url()))
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

async fn get(sim: &SimServer, path: &str) -> reqwest::Response {
    client()
        .get(format!("{}{path}", sim.url()))
        .send()
        .await
        .unwrap()
}

fn lines(body: &str) -> Vec<Value> {
    assert!(body.ends_with('\n'), "NDJSON ends with a newline: {body:?}");
    body.lines()
        .map(|l| {
            assert!(!l.is_empty(), "no blank lines");
            serde_json::from_str(l).unwrap()
        })
        .collect()
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

#[tokio::test]
async fn root_and_head_answer_ollama_is_running() {
    let sim = sim().await;
    let r = client().get(sim.url()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(r.text().await.unwrap(), "Ollama is running");
    let r = client().head(sim.url()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "17");
    assert_eq!(r.text().await.unwrap(), "");
    let r = client()
        .head(format!("{}/api/version", sim.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_path_is_404_and_wrong_method_405() {
    let sim = sim().await;
    let r = get(&sim, "/api/nope").await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.text().await.unwrap(), "404 page not found");
    let r = get(&sim, "/api/chat").await;
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    assert_eq!(r.text().await.unwrap(), "405 method not allowed");
    sim.shutdown().await;
}

#[tokio::test]
async fn version_is_exact_json_without_newline() {
    let sim = sim().await;
    let r = get(&sim, "/api/version").await;
    assert_eq!(
        r.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    assert_eq!(r.text().await.unwrap(), r#"{"version":"0.33.0"}"#);
    sim.shutdown().await;
}

#[tokio::test]
async fn chat_streams_ndjson_with_ollamas_field_order_and_metrics() {
    let sim = sim().await;
    let r = post(
        &sim,
        "/api/chat",
        r#"{"model":"llama3.2","messages":[{"role":"user","content":"hello"}],"options":{"num_predict":5}}"#,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    assert!(r.headers().get("content-length").is_none());
    let body = r.text().await.unwrap();
    let ls = lines(&body);
    assert_eq!(ls.len(), 6, "5 tokens + done");
    for l in &ls[..5] {
        assert_eq!(keys(l), ["model", "created_at", "message", "done"]);
        assert_eq!(l["model"], "llama3.2", "model echoed verbatim");
        assert_eq!(keys(&l["message"]), ["role", "content"]);
        let created = l["created_at"].as_str().unwrap();
        assert!(
            created.ends_with('Z') && !created.contains(".0Z"),
            "{created}"
        );
    }
    let done = &ls[5];
    assert_eq!(
        keys(done),
        [
            "model",
            "created_at",
            "message",
            "done",
            "done_reason",
            "total_duration",
            "load_duration",
            "prompt_eval_count",
            "prompt_eval_duration",
            "eval_count",
            "eval_duration"
        ]
    );
    assert_eq!(done["message"]["content"], "");
    assert_eq!(done["done_reason"], "length");
    assert_eq!(done["eval_count"], 5);
    let total = done["total_duration"].as_u64().unwrap();
    let load = done["load_duration"].as_u64().unwrap();
    let prompt = done["prompt_eval_duration"].as_u64().unwrap();
    let eval = done["eval_duration"].as_u64().unwrap();
    assert!(total >= load + prompt + eval, "total covers the parts");
    assert!(
        load >= 5_000_000_000,
        "cold load of llama3.2 is ~6 s simulated: {load}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn resident_model_has_millisecond_load_duration() {
    let sim = sim().await;
    let body = r#"{"model":"llama3.2","prompt":"hi","stream":false,"options":{"num_predict":2}}"#;
    post(&sim, "/api/generate", body)
        .await
        .text()
        .await
        .unwrap();
    let v: Value = post(&sim, "/api/generate", body)
        .await
        .json()
        .await
        .unwrap();
    let load = v["load_duration"].as_u64().unwrap();
    assert!(load < 1_000_000_000, "resident: {load} ns");
    assert_eq!(sim.stats().loads["llama3.2:latest"], 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn generate_non_streamed_is_one_object_with_concatenated_text_and_context() {
    let sim = sim().await;
    let r = post(
        &sim,
        "/api/generate",
        r#"{"model":"llama3.2","prompt":"why","stream":false,"options":{"num_predict":4,"seed":3}}"#,
    )
    .await;
    assert_eq!(
        r.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    let text = r.text().await.unwrap();
    assert!(!text.ends_with('\n'));
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        &keys(&v)[..6],
        [
            "model",
            "created_at",
            "response",
            "done",
            "done_reason",
            "context"
        ]
    );
    // Same prompt and seed stream the same words.
    let streamed = post(
        &sim,
        "/api/generate",
        r#"{"model":"llama3.2","prompt":"why","options":{"num_predict":4,"seed":3}}"#,
    )
    .await
    .text()
    .await
    .unwrap();
    let joined: String = lines(&streamed)
        .iter()
        .map(|l| l["response"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(v["response"].as_str().unwrap(), joined);
    sim.shutdown().await;
}

#[tokio::test]
async fn html_characters_are_escaped_like_go() {
    let sim = sim().await;
    // Enough tokens that the vocabulary's "<b>" and "&" appear.
    let body = post(
        &sim,
        "/api/generate",
        r#"{"model":"llama3.2","prompt":"x","stream":false,"options":{"num_predict":400}}"#,
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(body.contains("\\u003cb\\u003e"), "escaped <b>");
    assert!(body.contains("\\u0026"), "escaped &");
    assert!(!body.contains('<') && !body.contains('&'));
    sim.shutdown().await;
}

#[tokio::test]
async fn load_and_unload_idioms_answer_one_object() {
    let sim = sim().await;
    let r = post(&sim, "/api/chat", r#"{"model":"llama3.2","messages":[]}"#).await;
    assert_eq!(
        r.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        keys(&v),
        ["model", "created_at", "message", "done", "done_reason"]
    );
    assert_eq!(v["done_reason"], "load");
    let ps: Value = get(&sim, "/api/ps").await.json().await.unwrap();
    assert_eq!(ps["models"][0]["name"], "llama3.2:latest");
    assert_eq!(
        keys(&ps["models"][0]),
        [
            "name",
            "model",
            "size",
            "digest",
            "details",
            "expires_at",
            "size_vram",
            "context_length"
        ]
    );
    let v: Value = post(
        &sim,
        "/api/generate",
        r#"{"model":"llama3.2","keep_alive":0}"#,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["done_reason"], "unload");
    assert_eq!(v["response"], "");
    let ps: Value = get(&sim, "/api/ps").await.json().await.unwrap();
    assert_eq!(ps["models"], json!([]));
    assert_eq!(sim.stats().unloads["llama3.2:latest"], 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn keep_alive_is_sticky_and_expires() {
    // time_scale 0.001: a 10 s keep-alive lasts 10 ms of real time.
    let sim = sim().await;
    post(
        &sim,
        "/api/generate",
        r#"{"model":"llama3.2","keep_alive":"10s"}"#,
    )
    .await;
    // A request without keep_alive keeps the 10 s (sticky), so the model expires soon.
    post(
        &sim,
        "/api/generate",
        r#"{"model":"llama3.2","prompt":"a","stream":false}"#,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        sim.sim().sched.loaded().is_empty(),
        "expired after keep_alive"
    );
    // Negative keep_alive pins it "forever" (~292 years).
    post(
        &sim,
        "/api/generate",
        r#"{"model":"llama3.2","keep_alive":-1}"#,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let loaded = sim.sim().sched.loaded();
    assert_eq!(loaded.len(), 1);
    let years = loaded[0]
        .expires_at
        .duration_since(std::time::SystemTime::now())
        .unwrap()
        .as_secs()
        / (365 * 24 * 3600);
    assert!(years > 200, "{years}");
    sim.shutdown().await;
}

#[tokio::test]
async fn error_catalogue_matches_ollama() {
    let sim = sim().await;
    let cases: &[(&str, &str, u16, &str)] = &[
        ("/api/chat", "", 400, r#"{"error":"missing request body"}"#),
        (
            "/api/chat",
            "{x",
            400,
            r#"{"error":"invalid character 'x' looking for beginning of object key string"}"#,
        ),
        (
            "/api/chat",
            r#"{"messages":[]}"#,
            400,
            r#"{"error":"model is required"}"#,
        ),
        (
            "/api/generate",
            r#"{"prompt":"a"}"#,
            404,
            r#"{"error":"model '' not found"}"#,
        ),
        (
            "/api/generate",
            r#"{"model":"foo","prompt":"a"}"#,
            404,
            r#"{"error":"model 'foo' not found"}"#,
        ),
        (
            "/api/embed",
            r#"{"model":"foo","input":"a"}"#,
            404,
            r#"{"error":"model \"foo\" not found, try pulling it first"}"#,
        ),
        (
            "/api/embed",
            r#"{"model":"all-minilm","input":[1]}"#,
            400,
            r#"{"error":"invalid input type"}"#,
        ),
        (
            "/api/chat",
            r#"{"model":"all-minilm","messages":[{"role":"user","content":"x"}]}"#,
            400,
            r#"{"error":"\"all-minilm\" does not support chat"}"#,
        ),
        (
            "/api/generate",
            r#"{"model":"llama3.2","prompt":"a","keep_alive":"-1"}"#,
            400,
            r#"{"error":"time: missing unit in duration \"-1\""}"#,
        ),
        (
            "/api/generate",
            r#"{"model":"llama3.2","prompt":"a","think":"x"}"#,
            400,
            r#"{"error":"invalid think value: \"x\" (must be \"high\", \"medium\", \"low\", \"max\", true, or false)"}"#,
        ),
        (
            "/api/show",
            r#"{"model":"nope"}"#,
            404,
            r#"{"error":"model 'nope:latest' not found"}"#,
        ),
    ];
    for (path, body, status, expected) in cases {
        let r = post(&sim, path, body).await;
        assert_eq!(r.status().as_u16(), *status, "{path} {body}");
        let got = r.text().await.unwrap();
        // The decoder's exact wording for `{x` differs by position; check the start only.
        if body == &"{x" {
            assert!(
                got.starts_with(r#"{"error":"invalid character 'x'"#),
                "{got}"
            );
        } else {
            assert_eq!(&got, expected, "{path} {body}");
        }
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn embed_returns_unit_vectors_in_order() {
    let sim = sim().await;
    let v: Value = post(
        &sim,
        "/api/embed",
        r#"{"model":"all-minilm","input":["a","b"]}"#,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        keys(&v),
        [
            "model",
            "embeddings",
            "total_duration",
            "load_duration",
            "prompt_eval_count"
        ]
    );
    let e = v["embeddings"].as_array().unwrap();
    assert_eq!(e.len(), 2);
    assert_eq!(e[0].as_array().unwrap().len(), 384);
    let norm: f64 = e[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap().powi(2))
        .sum();
    assert!((norm - 1.0).abs() < 1e-3);
    let empty: Value = post(&sim, "/api/embed", r#"{"model":"all-minilm","input":[]}"#)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(empty, json!({"model":"all-minilm","embeddings":[]}));
    sim.shutdown().await;
}

#[tokio::test]
async fn thinking_model_streams_thinking_before_content() {
    let sim = sim().await;
    let body = post(
        &sim,
        "/api/chat",
        r#"{"model":"qwen3:8b","messages":[{"role":"user","content":"q"}],"options":{"num_predict":6}}"#,
    )
    .await
    .text()
    .await
    .unwrap();
    let ls = lines(&body);
    assert!(ls[0]["message"]["thinking"].is_string());
    assert_eq!(ls[0]["message"]["content"], "");
    assert!(
        ls.iter()
            .any(|l| l["message"]["content"] != "" && l["message"].get("thinking").is_none())
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn tool_call_chunk_has_ollamas_shape() {
    let sim = sim().await;
    let body = post(
        &sim,
        "/api/chat",
        r#"{"model":"llama3.2","stream":false,"messages":[{"role":"user","content":"weather?"}],
            "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","required":["city"],"properties":{"city":{"type":"string"}}}}}]}"#,
    )
    .await
    .json::<Value>()
    .await
    .unwrap();
    let call = &body["message"]["tool_calls"][0];
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], json!({"city": "Tokyo"}));
    sim.shutdown().await;
}

#[tokio::test]
async fn openai_chat_streams_sse_with_finish_usage_and_done() {
    let sim = sim().await;
    let r = post(
        &sim,
        "/v1/chat/completions",
        r#"{"model":"llama3.2","stream":true,"max_tokens":3,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let body = r.text().await.unwrap();
    let events: Vec<&str> = body.split_terminator("\n\n").collect();
    assert!(events.iter().all(|e| e.starts_with("data: ")));
    assert_eq!(*events.last().unwrap(), "data: [DONE]");
    let parsed: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(&e[6..]).unwrap())
        .collect();
    assert_eq!(parsed[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(parsed[1]["choices"][0]["delta"].get("role").is_none());
    let finish = &parsed[parsed.len() - 2];
    assert_eq!(finish["choices"][0]["delta"], json!({}));
    assert_eq!(finish["choices"][0]["finish_reason"], "length");
    let usage = &parsed[parsed.len() - 1];
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 3);
    // Not streamed by default on /v1, with a trailing newline (json.NewEncoder).
    let r = post(
        &sim,
        "/v1/chat/completions",
        r#"{"model":"llama3.2","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    let text = r.text().await.unwrap();
    assert!(text.ends_with("}\n"));
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["object"], "chat.completion");
    let r = post(
        &sim,
        "/v1/chat/completions",
        r#"{"model":"llama3.2","messages":[]}"#,
    )
    .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["message"], "[] is too short - 'messages'");
    sim.shutdown().await;
}

#[tokio::test]
async fn openai_models_and_embeddings() {
    let sim = sim().await;
    let v: Value = get(&sim, "/v1/models").await.json().await.unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["object"], "model");
    let v: Value = post(
        &sim,
        "/v1/embeddings",
        r#"{"model":"all-minilm","input":["a","b"]}"#,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["data"][1]["index"], 1);
    assert_eq!(v["data"][0]["object"], "embedding");
    sim.shutdown().await;
}

#[tokio::test]
async fn pull_streams_progress_and_reports_unknown_models_in_band() {
    let sim = sim().await;
    let body = post(&sim, "/api/pull", r#"{"model":"tinyllama"}"#)
        .await
        .text()
        .await
        .unwrap();
    let ls = lines(&body);
    assert_eq!(ls[0], json!({"status":"pulling manifest"}));
    assert_eq!(ls.last().unwrap(), &json!({"status":"success"}));
    assert!(ls[1]["status"].as_str().unwrap().starts_with("pulling "));
    assert!(
        ls[1].get("completed").is_none(),
        "completed omitted while 0"
    );
    let tags: Value = get(&sim, "/api/tags").await.json().await.unwrap();
    assert!(
        tags["models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "tinyllama:latest")
    );
    let r = post(&sim, "/api/pull", r#"{"model":"no-such-model"}"#).await;
    assert_eq!(r.status(), 200);
    let ls = lines(&r.text().await.unwrap());
    assert_eq!(
        ls[1],
        json!({"error":"pull model manifest: file does not exist"})
    );
    let r = post(
        &sim,
        "/api/pull",
        r#"{"model":"no-such-model","stream":false}"#,
    )
    .await;
    assert_eq!(r.status(), 500);
    let r = client()
        .delete(format!("{}/api/delete", sim.url()))
        .body(r#"{"model":"tinyllama"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "");
    sim.shutdown().await;
}

/// Room for one of two models: alternating requests reload on every switch, as Ollama does.
#[tokio::test]
async fn alternating_models_that_do_not_fit_together_thrash() {
    let gb = 1_000_000_000;
    let sim = sim_with(|c| {
        c.models = vec![
            ModelSpec::chat("a", 4 * gb, Duration::from_secs(5)),
            ModelSpec::chat("b", 4 * gb, Duration::from_secs(5)),
        ];
        c.memory_capacity = 6 * gb;
    })
    .await;
    for i in 0..6 {
        let model = if i % 2 == 0 { "a" } else { "b" };
        let body = format!(
            r#"{{"model":"{model}","prompt":"p","stream":false,"options":{{"num_predict":1}}}}"#
        );
        assert_eq!(post(&sim, "/api/generate", &body).await.status(), 200);
    }
    let stats = sim.stats();
    assert_eq!(stats.total_loads(), 6, "one load per switch: {stats:?}");
    assert_eq!(stats.unloads.values().sum::<u64>(), 5);
    assert_eq!(
        stats.served,
        [
            "a:latest", "b:latest", "a:latest", "b:latest", "a:latest", "b:latest"
        ]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn models_that_fit_stay_loaded_side_by_side() {
    let sim = sim().await;
    for model in ["llama3.2", "gemma3:4b", "llama3.2", "gemma3:4b"] {
        let body = format!(
            r#"{{"model":"{model}","prompt":"p","stream":false,"options":{{"num_predict":1}}}}"#
        );
        post(&sim, "/api/generate", &body).await;
    }
    assert_eq!(sim.stats().total_loads(), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn changed_runner_options_force_a_reload() {
    let sim = sim().await;
    post(
        &sim,
        "/api/generate",
        r#"{"model":"llama3.2","prompt":"p","stream":false,"options":{"num_predict":1}}"#,
    )
    .await;
    post(&sim, "/api/generate", r#"{"model":"llama3.2","prompt":"p","stream":false,"options":{"num_predict":1,"num_ctx":8192}}"#).await;
    let stats = sim.stats();
    assert_eq!(stats.loads["llama3.2:latest"], 2);
    assert_eq!(sim.sim().sched.loaded()[0].context_length, 8192);
    sim.shutdown().await;
}

#[tokio::test]
async fn pending_queue_is_bounded_with_ollamas_503_text() {
    let gb = 1_000_000_000;
    let sim = sim_with(|c| {
        c.time_scale = 0.01;
        c.models = vec![
            ModelSpec::chat("slow", gb, Duration::from_secs(100)),
            ModelSpec::chat("other", gb, Duration::from_secs(1)),
        ];
        c.max_queue = 2;
    })
    .await;
    let spawn = |model: &'static str| {
        let url = format!("{}/api/generate", sim.url());
        tokio::spawn(async move {
            let body = format!(r#"{{"model":"{model}","prompt":"p","stream":false}}"#);
            client().post(url).body(body).send().await
        })
    };
    // The loader is busy loading "slow"; requests for "slow" itself take the fast path and
    // are not counted (as in Ollama), requests for "other" wait in the bounded queue.
    let mut waiting = vec![spawn("slow")];
    wait_until(|| sim.sim().sched.loaded().len() == 1).await;
    waiting.push(spawn("slow"));
    waiting.push(spawn("other"));
    waiting.push(spawn("other"));
    wait_until(|| sim.sim().sched.pending() == 2).await;
    let r = post(
        &sim,
        "/api/generate",
        r#"{"model":"other","prompt":"p","stream":false}"#,
    )
    .await;
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"error":"server busy, please try again.  maximum pending requests exceeded"}"#
    );
    assert_eq!(sim.stats().rejected_busy, 1);
    for w in waiting {
        w.abort();
    }
    sim.shutdown().await;
}

async fn wait_until(mut cond: impl FnMut() -> bool) {
    for _ in 0..400 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("condition not reached in 2 s");
}

#[tokio::test]
async fn client_disconnect_during_load_aborts_the_load() {
    let gb = 1_000_000_000;
    let sim = sim_with(|c| {
        c.time_scale = 0.01;
        c.models = vec![ModelSpec::chat("big", gb, Duration::from_secs(100))];
    })
    .await;
    let r = client()
        .post(format!("{}/api/generate", sim.url()))
        .timeout(Duration::from_millis(100))
        .body(r#"{"model":"big","prompt":"p"}"#)
        .send()
        .await;
    assert!(r.is_err(), "timed out while loading");
    for _ in 0..200 {
        if sim.stats().loads_aborted == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stats = sim.stats();
    assert_eq!(stats.loads_aborted, 1, "{stats:?}");
    assert!(sim.sim().sched.loaded().is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn client_disconnect_mid_stream_is_counted_as_cancelled() {
    let sim = sim_with(|c| c.time_scale = 0.01).await;
    let mut r = post(
        &sim,
        "/api/chat",
        r#"{"model":"llama3.2","messages":[{"role":"user","content":"x"}],"options":{"num_predict":1000}}"#,
    )
    .await;
    r.chunk().await.unwrap().unwrap();
    drop(r);
    for _ in 0..200 {
        if sim.stats().cancelled == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stats = sim.stats();
    assert_eq!(stats.cancelled, 1);
    assert_eq!(stats.in_flight, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_status_busy_midstream_error_and_drop() {
    let sim = sim().await;
    let chat = r#"{"model":"llama3.2","messages":[{"role":"user","content":"x"}],"options":{"num_predict":6}}"#;
    sim.fault(FaultRule::once(FaultKind::Status {
        status: 500,
        message: "boom".into(),
    }));
    let r = post(&sim, "/api/chat", chat).await;
    assert_eq!(r.status(), 500);
    assert_eq!(r.text().await.unwrap(), r#"{"error":"boom"}"#);

    sim.fault(FaultRule::once(FaultKind::Busy));
    assert_eq!(post(&sim, "/api/chat", chat).await.status(), 503);

    sim.fault(FaultRule::once(FaultKind::ErrorMidStream {
        after_lines: 2,
    }));
    let r = post(&sim, "/api/chat", chat).await;
    assert_eq!(r.status(), 200);
    let ls = lines(&r.text().await.unwrap());
    assert_eq!(ls.len(), 3);
    assert_eq!(keys(&ls[2]), ["error"]);

    sim.fault(FaultRule::once(FaultKind::DropAfterLines {
        after_lines: 2,
    }));
    let r = post(&sim, "/api/chat", chat).await;
    assert!(r.text().await.is_err(), "connection cut mid-body");

    // The fault was consumed: the next request is normal.
    assert_eq!(
        lines(&post(&sim, "/api/chat", chat).await.text().await.unwrap()).len(),
        7
    );
    assert_eq!(sim.stats().faults_fired, 4);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_stall_goes_silent_after_the_headers_then_finishes() {
    use futures::StreamExt;
    let sim = sim().await;
    sim.fault(FaultRule::once(FaultKind::StallAfterLines {
        after_lines: 1,
        stall_ms: 400,
    }));
    let r = client()
        .post(format!("{}/api/chat", sim.url()))
        .body(r#"{"model":"llama3.2","messages":[{"role":"user","content":"x"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "headers are sent");
    let mut body = r.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(first.ends_with(b"\n"), "one whole line first");
    let silent = tokio::time::timeout(Duration::from_millis(100), body.next()).await;
    assert!(silent.is_err(), "nothing while stalled");
    let mut rest = Vec::new();
    while let Some(chunk) = body.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    assert!(
        String::from_utf8_lossy(&rest).contains("\"done\":true"),
        "then it goes on"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn hang_before_headers_sends_nothing() {
    let sim = sim().await;
    sim.fault(FaultRule::once(FaultKind::HangBeforeHeaders));
    let r = client()
        .post(format!("{}/api/chat", sim.url()))
        .timeout(Duration::from_millis(200))
        .body(r#"{"model":"llama3.2","messages":[{"role":"user","content":"x"}]}"#)
        .send()
        .await;
    assert!(r.unwrap_err().is_timeout());
    sim.shutdown().await;
}

#[tokio::test]
async fn asleep_refuses_connections_then_wakes() {
    let sim = sim().await;
    let control = client()
        .post(format!("{}/_sim/faults", sim.url()))
        .json(&json!({"kind": "asleep", "for_ms": 300}))
        .send()
        .await
        .unwrap();
    assert_eq!(control.status(), 204);
    tokio::time::sleep(Duration::from_millis(60)).await;
    let refused = reqwest::Client::new()
        .get(sim.url())
        .send()
        .await
        .unwrap_err();
    assert!(refused.is_connect(), "{refused:?}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = reqwest::Client::new().get(sim.url()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn stats_endpoint_reports_loads_and_served_log() {
    let sim = sim().await;
    post(
        &sim,
        "/api/generate",
        r#"{"model":"llama3.2","prompt":"p","stream":false}"#,
    )
    .await;
    let v: Value = get(&sim, "/_sim/stats").await.json().await.unwrap();
    assert_eq!(v["loads"]["llama3.2:latest"], 1);
    assert_eq!(v["served"], json!(["llama3.2:latest"]));
    assert_eq!(v["loaded"], json!(["llama3.2:latest"]));
    client()
        .post(format!("{}/_sim/reset", sim.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(sim.stats().total_loads(), 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn zero_delay_mode_serves_a_thousand_concurrent_streams() {
    let sim = sim_with(|c| c.zero_delay = true).await;
    let url = format!("{}/api/chat", sim.url());
    let body = r#"{"model":"llama3.2","messages":[{"role":"user","content":"x"}],"options":{"num_predict":20}}"#;
    let clients: Vec<_> = (0..1000)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                // One connection per stream, like 1,000 independent clients.
                let c = reqwest::Client::builder()
                    .pool_max_idle_per_host(0)
                    .build()
                    .unwrap();
                c.post(url).body(body).send().await?.text().await
            })
        })
        .collect();
    let mut ok = 0;
    for c in clients {
        let text = c.await.unwrap().unwrap();
        assert_eq!(text.lines().count(), 21);
        ok += 1;
    }
    assert_eq!(ok, 1000);
    assert_eq!(sim.stats().requests["llama3.2:latest"], 1000);
    sim.shutdown().await;
}

#[tokio::test]
async fn slow_first_token_delays_only_the_first_line() {
    // 0.01 real s per simulated s: a 20 s (simulated) first-token delay is 200 ms of wall time.
    let sim = sim_with(|c| c.time_scale = 0.01).await;
    let chat = r#"{"model":"llama3.2","messages":[{"role":"user","content":"x"}],"options":{"num_predict":3}}"#;
    post(&sim, "/api/chat", chat).await.text().await.unwrap(); // load the model first
    sim.fault(FaultRule::once(FaultKind::SlowFirstToken {
        delay_ms: 20_000,
    }));
    let started = std::time::Instant::now();
    let body = post(&sim, "/api/chat", chat).await.text().await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    let done = lines(&body).pop().unwrap();
    assert!(
        done["total_duration"].as_u64().unwrap() >= 20_000_000_000,
        "reported in simulated time"
    );
    sim.shutdown().await;
}
