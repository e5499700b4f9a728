//! Hostile input and auth coverage: clear 4xx, no 5xx, nothing stored; every route but health
//! needs a token when tokens are configured (routes enumerated from the OpenAPI document, which a
//! contract test keeps complete, plus the proxied namespaces).

use serde_json::Value;
use utoipa::OpenApi;

use crate::helpers::spawn_proxy;

async fn jobs_stored(app: &crate::helpers::TestApp) -> i64 {
    app.state
        .store
        .read(|c| Ok(c.query_row("SELECT count(*) FROM jobs", [], |r| r.get(0))?))
        .await
        .unwrap()
}

#[tokio::test]
async fn hostile_job_bodies_get_4xx_and_store_nothing() {
    let app = spawn_proxy("http://127.0.0.1:9", |c| c.worker.enabled = false).await;
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let nested = format!(r#"{{"request": {{"model": "m", "prompt": "x", "options": {deep}}}}}"#);
    let bodies: Vec<Vec<u8>> = vec![
        deep.into_bytes(),
        nested.into_bytes(),
        b"{\"request\": {\"model\": \"\xff\xfe\", \"prompt\": \"x\"}}".to_vec(),
        b"\x00\x01\x02".to_vec(),
        b"{\"request\": {\"model\": \"m\", \"prompt\": \"x\"}".to_vec(),
        vec![b'x'; 17 * 1024 * 1024],
    ];
    for body in bodies {
        let len = body.len();
        let r = app
            .client
            .post(app.url("/jobs"))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert!((400..500).contains(&status), "{len} bytes → {status}");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"]["message"].is_string());
    }
    assert_eq!(jobs_stored(&app).await, 0);
    // The daemon is still fine.
    assert_eq!(app.get("/healthz").await.status(), 200);
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn huge_headers_and_odd_paths_do_not_break_the_server() {
    let app = spawn_proxy("http://127.0.0.1:9", |c| c.worker.enabled = false).await;
    let r = app
        .client
        .get(app.url("/status"))
        .header("x-huge", "a".repeat(200 * 1024))
        .send()
        .await;
    if let Ok(r) = r {
        assert!(
            r.status().is_client_error() || r.status().is_success(),
            "{}",
            r.status()
        );
    }
    for path in [
        "/jobs/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/jobs/../../etc/passwd/artifact",
        "/jobs/%00/events",
        "/jobs/0190b5a4-0000-7000-8000-000000000000/artifact",
    ] {
        let status = app.get(path).await.status().as_u16();
        assert!((400..500).contains(&status), "{path} → {status}");
    }
    assert_eq!(app.get("/healthz").await.status(), 200);
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn with_tokens_every_route_but_health_answers_401() {
    let app = spawn_proxy("http://127.0.0.1:9", |c| {
        c.worker.enabled = false;
        c.api_tokens = vec![foreman::config::Secret::new("s3cret")];
    })
    .await;
    let doc = serde_json::to_value(foreman::http::openapi::ApiDoc::openapi()).unwrap();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = path.replace("{id}", "0190b5a4-0000-7000-8000-000000000000");
        for method in item.as_object().unwrap().keys() {
            let method: reqwest::Method = method.to_uppercase().parse().unwrap();
            let status = app
                .client
                .request(method.clone(), app.url(&concrete))
                .send()
                .await
                .unwrap()
                .status();
            let open = foreman::http::auth::OPEN_PATHS.contains(&path.as_str());
            if open {
                assert_ne!(status, 401, "{method} {path} must stay open");
            } else {
                assert_eq!(status, 401, "{method} {path}");
            }
            checked += 1;
        }
    }
    for path in [
        "/",
        "/api/tags",
        "/api/chat",
        "/v1/models",
        "/v1/chat/completions",
    ] {
        assert_eq!(app.get(path).await.status(), 401, "{path}");
    }
    assert!(checked >= 13, "{checked}");
    app.shutdown().await.unwrap();
}

/// Raw TCP client for requests no HTTP library would send.
async fn raw(app: &crate::helpers::TestApp) -> tokio::net::TcpStream {
    tokio::net::TcpStream::connect(app.addr).await.unwrap()
}

/// Reads until the server closes the connection (bounded), returning what it sent.
async fn read_to_close(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut got),
    )
    .await;
    assert!(read.is_ok(), "the server must hang up on a stalled client");
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn slowloris_headers_and_bodies_are_cut() {
    use tokio::io::AsyncWriteExt;
    let app = crate::helpers::spawn_with(|c| {
        c.request_read_timeout = std::time::Duration::from_millis(300);
        c.worker.enabled = false;
    })
    .await;

    // Headers that never end.
    let mut s = raw(&app).await;
    s.write_all(b"POST /jobs HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut s).await;
    assert!(!answer.contains("202"), "{answer}");

    // A body that stops half-way: 408 in foreman's shape on its routes, Ollama's on proxied ones.
    for (path, shape) in [
        ("/jobs", r#""code":"request_timeout""#),
        (
            "/api/generate",
            r#"{"error":"foreman: the request body stopped arriving"}"#,
        ),
    ] {
        let mut s = raw(&app).await;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(br#"{"request": {"model": "m", "#)
            .await
            .unwrap();
        let answer = read_to_close(&mut s).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{path}: {answer}");
        assert!(answer.contains(shape), "{path}: {answer}");
    }
    assert_eq!(jobs_stored(&app).await, 0, "nothing half-written is stored");
    assert_eq!(
        app.get("/healthz").await.status(),
        200,
        "the server is unaffected"
    );
}

/// Cancels racing completions: each job ends exactly one way, and the cancel answer, the
/// events, the artifact and the stored state all agree on which.
#[tokio::test]
async fn concurrent_cancel_and_completion_agree_on_one_ending() {
    use rand::Rng;
    let sim = crate::helpers::spawn_sim(|c| c.time_scale = 0.002).await;
    let app = spawn_proxy(&sim.url(), |_| {}).await;
    let client = foreman_client::Client::new(app.base.clone()).unwrap();
    let mut ids = Vec::new();
    for i in 0..40 {
        let job = foreman_api::jobs::SubmitJob {
            request: serde_json::json!({"model": "llama3.2", "prompt": format!("race {i}"), "options": {"num_predict": 4}}),
            kind: None,
            webhook: None,
            metadata: None,
        };
        ids.push(client.submit(&job).await.unwrap().id);
    }
    let delays: Vec<u64> = {
        let mut rng = rand::rng();
        ids.iter().map(|_| rng.random_range(0..60)).collect()
    };
    let cancels = ids.iter().zip(delays).map(|(id, delay)| {
        let client = client.clone();
        let id = id.clone();
        async move {
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
            (id.clone(), client.cancel(&id).await)
        }
    });
    let answers = futures::future::join_all(cancels).await;
    let (mut canceled, mut done) = (0, 0);
    for (id, answer) in answers {
        let view = client
            .wait(&id, std::time::Duration::from_secs(30))
            .await
            .unwrap();
        let events = client.events(&id).await.unwrap();
        let terminal: Vec<_> = events.iter().filter(|e| e.state.is_terminal()).collect();
        assert_eq!(terminal.len(), 1, "{id}: one ending: {events:?}");
        assert_eq!(terminal[0].state, view.state, "{id}");
        let artifact = client.artifact(&id).await;
        match answer {
            Ok(v) => {
                assert_eq!(
                    v.state.as_str(),
                    "canceled",
                    "{id}: a successful cancel means canceled"
                );
                assert_eq!(view.state.as_str(), "canceled", "{id}");
                assert_eq!(
                    artifact.err().and_then(|e| e.status()),
                    Some(404),
                    "{id}: no result kept"
                );
                canceled += 1;
            }
            Err(e) => {
                assert_eq!(e.status(), Some(409), "{id}: {e}");
                assert_eq!(
                    view.state.as_str(),
                    "done",
                    "{id}: too late to cancel means done"
                );
                assert!(artifact.is_ok(), "{id}: the result is kept");
                done += 1;
            }
        }
    }
    eprintln!("race: {canceled} canceled, {done} done");
    assert_eq!(canceled + done, 40);
    sim.shutdown().await;
}

/// A 100 MB body sent chunked (no Content-Length, so it cannot be refused up front): read only
/// up to the limit, answered 413 in the route's shape, nothing stored, memory not spent on it.
#[tokio::test]
async fn a_100_mb_chunked_body_is_refused_at_the_limit() {
    let app = spawn_proxy("http://127.0.0.1:9", |c| c.worker.enabled = false).await;
    for (path, shape) in [
        ("/jobs", "body_too_large"),
        ("/api/generate", "foreman: request body exceeds"),
    ] {
        let chunks =
            (0..100).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 1 << 20])));
        let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
        let r = app.client.post(app.url(path)).body(body).send().await;
        let r = r.unwrap_or_else(|e| panic!("{path}: the refusal must reach the client: {e}"));
        assert_eq!(r.status(), 413, "{path}");
        let text = r.text().await.unwrap();
        assert!(text.contains(shape), "{path}: {text}");
    }
    assert_eq!(jobs_stored(&app).await, 0);
    assert_eq!(app.get("/healthz").await.status(), 200);
}
