//! Passthrough: byte-for-byte transparency, streaming without buffering, disconnects, auth,
//! target failures, limits, and the target monitor.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ollama_sim::{FaultKind, FaultRule, ModelSpec};
use reqwest::Method;

use crate::helpers::{eventually, spawn_proxy, spawn_sim};
use crate::upstreams::{spawn_echo, spawn_fixed, spawn_scripted};

/// Masks values that legitimately differ between two calls (clock readings).
fn mask(body: &str) -> String {
    let re = regex::Regex::new(
        r#""(created_at|expires_at|created|total_duration|load_duration|prompt_eval_duration|eval_duration|id)":("[^"]*"|\d+)"#,
    )
    .unwrap();
    re.replace_all(body, "\"$1\":X").into_owned()
}

struct Answer {
    status: u16,
    content_type: Option<String>,
    body: Vec<u8>,
}

async fn call(base: &str, method: Method, path: &str, body: &str) -> Answer {
    let r = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    Answer {
        status: r.status().as_u16(),
        content_type: r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string()),
        body: r.bytes().await.map(|b| b.to_vec()).unwrap_or_default(),
    }
}

#[tokio::test]
async fn every_route_answers_as_the_target_does() {
    let sim = spawn_sim(|_| {}).await;
    let app = spawn_proxy(&sim.url(), |_| {}).await;
    let chat = r#"{"model":"llama3.2","messages":[{"role":"user","content":"hi <b> & co"}],"options":{"num_predict":6}}"#;
    let cases: Vec<(Method, &str, &str)> = vec![
        (Method::GET, "/", ""),
        (Method::HEAD, "/", ""),
        (Method::HEAD, "/api/version", ""),
        (Method::GET, "/api/version", ""),
        (Method::GET, "/api/tags", ""),
        (Method::GET, "/api/tags?unused=1", ""),
        (Method::POST, "/api/show", r#"{"model":"llama3.2"}"#),
        (Method::POST, "/api/chat", chat),
        (
            Method::POST,
            "/api/chat",
            r#"{"model":"llama3.2","stream":false,"messages":[{"role":"user","content":"hi"}],"options":{"num_predict":6}}"#,
        ),
        (
            Method::POST,
            "/api/generate",
            r#"{"model":"llama3.2","prompt":"x","options":{"num_predict":4}}"#,
        ),
        (
            Method::POST,
            "/api/generate",
            r#"{"model":"llama3.2","prompt":"x","stream":false,"options":{"num_predict":4}}"#,
        ),
        (Method::POST, "/api/generate", r#"{"model":"llama3.2"}"#),
        (
            Method::POST,
            "/api/embed",
            r#"{"model":"all-minilm","input":["a","b"]}"#,
        ),
        (Method::POST, "/api/pull", r#"{"model":"does-not-exist"}"#),
        (Method::GET, "/api/ps", ""),
        (Method::GET, "/v1/models", ""),
        (
            Method::POST,
            "/v1/chat/completions",
            r#"{"model":"llama3.2","messages":[{"role":"user","content":"x"}],"max_tokens":3}"#,
        ),
        (
            Method::POST,
            "/v1/chat/completions",
            r#"{"model":"llama3.2","stream":true,"messages":[{"role":"user","content":"x"}],"max_tokens":3,"stream_options":{"include_usage":true}}"#,
        ),
        (
            Method::POST,
            "/v1/completions",
            r#"{"model":"llama3.2","prompt":"x","max_tokens":3,"stream":true}"#,
        ),
        (
            Method::POST,
            "/v1/embeddings",
            r#"{"model":"all-minilm","input":"a"}"#,
        ),
        // Errors before streaming.
        (Method::POST, "/api/chat", ""),
        (Method::POST, "/api/chat", "not json"),
        (
            Method::POST,
            "/api/chat",
            r#"{"model":"nope","messages":[{"role":"user","content":"x"}]}"#,
        ),
        (Method::GET, "/api/chat", ""),
        (Method::GET, "/api/unknown", ""),
        (Method::DELETE, "/api/delete", r#"{"model":"nope"}"#),
        (
            Method::POST,
            "/v1/chat/completions",
            r#"{"model":"llama3.2","messages":[]}"#,
        ),
    ];
    for (method, path, body) in &cases {
        let direct = call(&sim.url(), method.clone(), path, body).await;
        let proxied = call(&app.base, method.clone(), path, body).await;
        let what = format!("{method} {path} {body}");
        assert_eq!(direct.status, proxied.status, "{what}");
        assert_eq!(direct.content_type, proxied.content_type, "{what}");
        let (d, p) = (
            String::from_utf8(direct.body).unwrap(),
            String::from_utf8(proxied.body).unwrap(),
        );
        if mask(&d) == d {
            assert_eq!(d, p, "byte-for-byte: {what}");
        } else {
            // Clock readings (timestamps, durations) differ between two calls; all else is equal.
            assert_eq!(mask(&d), mask(&p), "{what}");
            assert_eq!(d.lines().count(), p.lines().count(), "same framing: {what}");
        }
    }
    app.shutdown().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn errors_during_a_stream_pass_through_in_band() {
    let sim = spawn_sim(|_| {}).await;
    let app = spawn_proxy(&sim.url(), |_| {}).await;
    let chat = r#"{"model":"llama3.2","messages":[{"role":"user","content":"x"}],"options":{"num_predict":9}}"#;
    sim.fault(FaultRule::once(FaultKind::ErrorMidStream {
        after_lines: 3,
    }));
    let r = call(&app.base, Method::POST, "/api/chat", chat).await;
    assert_eq!(r.status, 200);
    let text = String::from_utf8(r.body).unwrap();
    let last = text.lines().last().unwrap();
    assert!(
        last.starts_with(r#"{"error":"model runner has unexpectedly stopped"#),
        "{text}"
    );
    assert_eq!(text.lines().count(), 4);

    sim.fault(FaultRule::once(FaultKind::Status {
        status: 503,
        message: "model is overloaded".into(),
    }));
    let r = call(&app.base, Method::POST, "/api/chat", chat).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body, br#"{"error":"model is overloaded"}"#);

    // A cut upstream connection cuts the client's too (no fake clean end).
    sim.fault(FaultRule::once(FaultKind::DropAfterLines {
        after_lines: 2,
    }));
    let r = reqwest::Client::new()
        .post(format!("{}/api/chat", app.base))
        .body(chat)
        .send()
        .await
        .unwrap();
    assert!(r.text().await.is_err());
    app.shutdown().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn method_path_query_headers_and_body_reach_the_target_unchanged() {
    let echo = spawn_echo().await;
    let app = spawn_proxy(&echo.url, |_| {}).await;
    let body = b"\xff not even utf-8 {".to_vec();
    let r = app
        .client
        .post(app.url("/api/chat?ts=1700000000&x=a%20b"))
        .header("x-custom", "kept")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "dropped")
        .header("authorization", "Bearer client-key")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = echo.seen.lock().unwrap().clone().unwrap();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path_and_query, "/api/chat?ts=1700000000&x=a%20b");
    assert_eq!(seen.body, body);
    assert_eq!(seen.headers["x-custom"], "kept");
    assert!(seen.headers.get("x-hop").is_none(), "listed in Connection");
    assert!(seen.headers.get("content-type").is_none(), "nothing added");
    assert_eq!(
        seen.headers["authorization"], "Bearer client-key",
        "no inbound auth, no token: passed on"
    );
    let host = seen.headers["host"].to_str().unwrap();
    assert_eq!(
        format!("http://{host}"),
        echo.url,
        "Host rewritten to the target"
    );
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn upstream_token_replaces_whatever_the_client_sent() {
    let echo = spawn_echo().await;
    let app = spawn_proxy(&echo.url, |c| {
        c.target.token = Some(foreman::config::Secret::new("upstream-secret"));
    })
    .await;
    app.client
        .post(app.url("/api/show"))
        .header("authorization", "Bearer client-key")
        .send()
        .await
        .unwrap();
    let seen = echo.seen.lock().unwrap().clone().unwrap();
    let auth: Vec<_> = seen.headers.get_all("authorization").iter().collect();
    assert_eq!(auth, ["Bearer upstream-secret"]);
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn each_line_reaches_the_client_before_the_next_is_emitted() {
    let (url, lines) = spawn_scripted().await;
    let app = spawn_proxy(&url, |_| {}).await;
    let send = lines.clone();
    send.send(Bytes::from_static(b"{\"n\":0}\n")).await.unwrap();
    let mut r = app
        .client
        .post(app.url("/api/chat"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-accel-buffering"], "no");
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    for n in 0..20 {
        // The upstream has emitted line n and nothing after it: the client must get it now.
        let chunk = r.chunk().await.unwrap().unwrap();
        assert_eq!(chunk, format!("{{\"n\":{n}}}\n"));
        send.send(Bytes::from(format!("{{\"n\":{}}}\n", n + 1)))
            .await
            .unwrap();
    }
    drop(send);
    drop(lines);
    assert_eq!(r.chunk().await.unwrap().unwrap(), "{\"n\":20}\n");
    assert!(r.chunk().await.unwrap().is_none());
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_20_mb_streamed_body_arrives_intact() {
    let body: Arc<Vec<u8>> = Arc::new((0..20 * 1024 * 1024).map(|i| (i % 251) as u8).collect());
    let url = spawn_fixed(body.clone(), 64 * 1024).await;
    let app = spawn_proxy(&url, |_| {}).await;
    let got = app.get("/api/pull").await.bytes().await.unwrap();
    assert_eq!(got.len(), body.len());
    assert!(got.as_ref() == body.as_slice());
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn client_disconnect_mid_stream_cancels_the_upstream_request() {
    let sim = spawn_sim(|c| c.time_scale = 0.01).await;
    let app = spawn_proxy(&sim.url(), |_| {}).await;
    let mut r = app
        .client
        .post(app.url("/api/chat"))
        .body(r#"{"model":"llama3.2","messages":[{"role":"user","content":"x"}],"options":{"num_predict":100000}}"#)
        .send()
        .await
        .unwrap();
    r.chunk().await.unwrap().unwrap();
    drop(r);
    eventually("simulator sees the cancellation", || {
        sim.stats().cancelled == 1
    })
    .await;
    assert_eq!(sim.stats().in_flight, 0);
    app.shutdown().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn client_disconnect_while_loading_aborts_the_load() {
    let sim = spawn_sim(|c| {
        c.time_scale = 0.01;
        c.models = vec![ModelSpec::chat(
            "big",
            1_000_000_000,
            Duration::from_secs(300),
        )];
    })
    .await;
    let app = spawn_proxy(&sim.url(), |_| {}).await;
    let r = app
        .client
        .post(app.url("/api/generate"))
        .timeout(Duration::from_millis(150))
        .body(r#"{"model":"big","prompt":"x"}"#)
        .send()
        .await;
    assert!(r.unwrap_err().is_timeout());
    eventually("load aborted", || sim.stats().loads_aborted == 1).await;
    app.shutdown().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_target_is_a_502_with_the_reason() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let app = spawn_proxy(&url, |_| {}).await;
    let r = app.get("/api/tags").await;
    assert_eq!(r.status(), 502);
    let v: serde_json::Value = r.json().await.unwrap();
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.starts_with(&format!("foreman: target {url} unreachable: ")),
        "{msg}"
    );
    assert!(msg.to_lowercase().contains("refused"), "{msg}");
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_configured_header_timeout_gives_504() {
    let sim = spawn_sim(|_| {}).await;
    let app = spawn_proxy(&sim.url(), |c| {
        c.target.header_timeout = Some(Duration::from_millis(200))
    })
    .await;
    sim.fault(FaultRule::once(FaultKind::HangBeforeHeaders));
    let r = app
        .client
        .post(app.url("/api/chat"))
        .body(r#"{"model":"llama3.2","messages":[{"role":"user","content":"x"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("no response headers"));
    app.shutdown().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn a_silent_stream_is_cut_after_the_idle_timeout() {
    let (url, lines) = spawn_scripted().await;
    let app = spawn_proxy(&url, |c| c.target.idle_timeout = Duration::from_millis(150)).await;
    lines
        .send(Bytes::from_static(b"{\"n\":0}\n"))
        .await
        .unwrap();
    let mut r = app
        .client
        .post(app.url("/api/chat"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.chunk().await.unwrap().unwrap(), "{\"n\":0}\n");
    assert!(r.chunk().await.is_err(), "cut, not ended cleanly");
    drop(lines);
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_oversized_body_is_refused_with_413_before_reaching_the_target() {
    let echo = spawn_echo().await;
    let app = spawn_proxy(&echo.url, |c| c.max_body_bytes = 1024).await;
    let r = app
        .client
        .post(app.url("/api/chat"))
        .body(vec![b'x'; 2048])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        v["error"],
        "foreman: request body exceeds the limit of 1024 bytes"
    );
    // Chunked (no Content-Length) bodies are limited too.
    let stream = futures::stream::iter((0..4).map(|_| Ok::<_, std::io::Error>(vec![b'y'; 512])));
    let r = app
        .client
        .post(app.url("/api/chat"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(
        echo.seen.lock().unwrap().is_none(),
        "nothing reached the target"
    );
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn inbound_tokens_guard_every_route_but_health() {
    let echo = spawn_echo().await;
    let app = spawn_proxy(&echo.url, |c| {
        c.api_tokens = vec![
            foreman::config::Secret::new("t1"),
            foreman::config::Secret::new("t2"),
        ];
    })
    .await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.get("/readyz").await.status(), 200);
    let r = app.get("/api/tags").await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v["error"].is_string(), "Ollama shape on proxied routes");
    let r = app.get("/status").await;
    assert_eq!(r.status(), 401);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        v["error"]["code"], "unauthorized",
        "structured on foreman's routes"
    );
    let wrong = app
        .client
        .get(app.url("/api/tags"))
        .bearer_auth("t3")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let ok = app
        .client
        .post(app.url("/api/show"))
        .bearer_auth("t2")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let seen = echo.seen.lock().unwrap().clone().unwrap();
    assert!(
        seen.headers.get("authorization").is_none(),
        "foreman's token is not forwarded"
    );
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn routes_outside_the_proxied_namespaces_get_a_structured_404() {
    let echo = spawn_echo().await;
    let app = spawn_proxy(&echo.url, |_| {}).await;
    let r = app.get("/nope").await;
    assert_eq!(r.status(), 404);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "not_found");
    assert!(echo.seen.lock().unwrap().is_none());
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn status_reports_the_target_and_history_is_persisted() {
    let sim = spawn_sim(|_| {}).await;
    let app = spawn_proxy(&sim.url(), |_| {}).await;
    app.client
        .post(app.url("/api/generate"))
        .body(r#"{"model":"llama3.2"}"#)
        .send()
        .await
        .unwrap();
    app.state.monitor.poll_once().await;
    let v: serde_json::Value = app.get("/status").await.json().await.unwrap();
    let t = &v["target"];
    assert_eq!(t["state"], "up");
    assert_eq!(t["version"], "0.33.0");
    assert_eq!(t["url"], format!("{}/", sim.url()));
    assert_eq!(t["loaded_models"][0]["name"], "llama3.2:latest");
    assert!(t["loaded_models"][0]["size_vram"].as_u64().unwrap() > 0);
    assert!(
        t["available_models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == "all-minilm:latest")
    );
    assert_eq!(t["vram_used_bytes"], t["loaded_models"][0]["size_vram"]);

    sim.shutdown().await;
    app.state.monitor.poll_once().await;
    let v: serde_json::Value = app.get("/status").await.json().await.unwrap();
    assert_eq!(v["target"]["state"], "down");
    assert!(
        v["target"]["last_error"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("refused")
    );
    let states: Vec<String> = app
        .state
        .store
        .read(|c| {
            let mut s = c.prepare("SELECT state FROM target_snapshots ORDER BY id")?;
            let rows = s.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
        .unwrap();
    assert_eq!(states.last().unwrap(), "down");
    assert!(states.contains(&"up".to_string()));
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn snapshot_history_is_bounded() {
    let sim = spawn_sim(|_| {}).await;
    let app = spawn_proxy(&sim.url(), |c| c.target.history_limit = 3).await;
    for i in 0..6 {
        if i % 2 == 0 {
            app.client
                .post(app.url("/api/generate"))
                .body(r#"{"model":"llama3.2"}"#)
                .send()
                .await
                .unwrap();
        } else {
            app.client
                .post(app.url("/api/generate"))
                .body(r#"{"model":"llama3.2","keep_alive":0}"#)
                .send()
                .await
                .unwrap();
        }
        app.state.monitor.poll_once().await;
    }
    let n: i64 = app
        .state
        .store
        .read(|c| Ok(c.query_row("SELECT count(*) FROM target_snapshots", [], |r| r.get(0))?))
        .await
        .unwrap();
    assert!(n <= 3 && n > 0, "{n}");
    app.shutdown().await.unwrap();
    sim.shutdown().await;
}
