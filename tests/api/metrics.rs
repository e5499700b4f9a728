//! `/metrics` after a scripted workload: values asserted through a Prometheus text parser, and
//! the Grafana dashboard references only metrics that exist.

use std::time::Duration;

use foreman::worker::{Outcome, Worker};
use ollama_sim::ModelSpec;
use serde_json::json;

use crate::helpers::{spawn_proxy, spawn_sim};

fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

#[tokio::test]
async fn metrics_reflect_a_scripted_workload() {
    let sim = spawn_sim(|c| {
        c.models.push(ModelSpec::chat(
            "metrics-probe",
            1_000_000_000,
            Duration::from_secs(5),
        ))
    })
    .await;
    let app = spawn_proxy(&sim.url(), |c| c.worker.enabled = false).await;
    app.state.monitor.poll_once().await;
    for i in 0..3 {
        let body = json!({"request": {"model": "metrics-probe", "prompt": format!("p{i}"), "options": {"num_predict": 4}}});
        assert_eq!(
            app.client
                .post(app.url("/jobs"))
                .json(&body)
                .send()
                .await
                .unwrap()
                .status(),
            202
        );
    }
    let mut worker = Worker::new(app.state.clone());
    while worker.try_run_once().await.unwrap() != Outcome::Idle {}
    app.state.monitor.poll_once().await;
    assert_eq!(app.get("/api/tags").await.status(), 200);

    let r = app.get("/metrics").await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = r.text().await.unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let model = [("model", "metrics-probe")];
    assert_eq!(
        value(
            &scrape,
            "foreman_jobs_finished_total",
            &[("state", "done"), model[0]]
        ),
        Some(3.0)
    );
    assert_eq!(
        value(&scrape, "foreman_tokens_generated_total", &model),
        Some(12.0)
    );
    assert!(value(&scrape, "foreman_prompt_tokens_total", &model).unwrap() > 0.0);
    assert_eq!(
        value(
            &scrape,
            "foreman_model_loads_total",
            &[("model", "metrics-probe:latest")]
        ),
        Some(1.0)
    );
    let resident = app.state.monitor.status().loaded_models;
    let probe = resident
        .iter()
        .find(|m| m.name == "metrics-probe:latest")
        .unwrap();
    assert_eq!(
        value(
            &scrape,
            "foreman_target_model_vram_bytes",
            &[("model", "metrics-probe:latest")]
        ),
        Some(probe.size_vram as f64),
        "VRAM per resident model"
    );
    // Gauges are process-wide; another test's scrape may set them concurrently: presence only.
    assert!(value(&scrape, "foreman_jobs", &[("state", "done")]).is_some());
    assert!(
        value(
            &scrape,
            "foreman_passthrough_requests_total",
            &[("route", "/api/tags"), ("status", "200")]
        )
        .unwrap()
            >= 1.0
    );
    let phases = scrape
        .samples
        .iter()
        .filter(|s| {
            s.metric == "foreman_job_phase_seconds"
                && s.labels.get("model") == Some("metrics-probe")
        })
        .filter_map(|s| match &s.value {
            prometheus_parse::Value::Histogram(buckets) => buckets.last().map(|b| b.count),
            _ => None,
        })
        .collect::<Vec<_>>();
    assert_eq!(
        phases,
        [3.0, 3.0, 3.0],
        "queue, load and work observed per job"
    );
    assert!(text.contains("foreman_sqlite_write_seconds_bucket"));
    assert!(!text.contains(&app.state.config.data_dir.display().to_string()));
    app.shutdown().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn metrics_need_a_token_unless_public() {
    let token = || vec![foreman::config::Secret::new("t")];
    let app = spawn_proxy("http://127.0.0.1:9", |c| c.api_tokens = token()).await;
    assert_eq!(app.get("/metrics").await.status(), 401);
    app.shutdown().await.unwrap();
    let app = spawn_proxy("http://127.0.0.1:9", |c| {
        c.api_tokens = token();
        c.metrics.public = true;
    })
    .await;
    assert_eq!(app.get("/metrics").await.status(), 200);
    assert_eq!(app.get("/status").await.status(), 401);
    app.shutdown().await.unwrap();
}

#[test]
fn the_dashboard_uses_only_metrics_that_exist() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/foreman.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let re = regex::Regex::new(r"foreman_[a-z_]+").unwrap();
    let mut used = std::collections::BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            for m in re.find_iter(target["expr"].as_str().unwrap()) {
                let name = m.as_str();
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(name);
                assert!(
                    foreman::metrics::ALL.contains(&base),
                    "dashboard uses unknown metric {name}"
                );
                used.insert(base.to_string());
            }
        }
    }
    for wanted in [
        "foreman_jobs_queued",
        "foreman_jobs_finished_total",
        "foreman_model_loads_total",
        "foreman_model_load_seconds",
        "foreman_job_phase_seconds",
        "foreman_target_up",
        "foreman_webhook_pending",
    ] {
        assert!(used.contains(wanted), "dashboard lacks {wanted}");
    }
}

/// With `log_format = json`, a log line about a job carries the job's id and model from its
/// span, and request spans carry the request id.
#[tokio::test]
async fn json_logs_carry_job_and_request_spans() {
    let sim = crate::helpers::spawn_sim(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let target = sim.url();
    let env = [
        ("FOREMAN_LOG_FORMAT", "json"),
        ("FOREMAN_LOG", "info,tower_http=debug"),
    ];
    let (child, base) = crate::health::start_daemon_env(
        dir.path(),
        &["--target", target.as_str(), "--data-dir", "data"],
        &env,
    );
    let client = reqwest::Client::new();
    let job: serde_json::Value = client
        .post(format!("{base}/jobs"))
        .header("x-request-id", "req-42")
        .json(&serde_json::json!({"request": {"model": "llama3.2", "prompt": "x", "options": {"num_predict": 2}}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = job["id"].as_str().unwrap().to_string();
    let done: serde_json::Value = client
        .get(format!("{base}/jobs/{id}?wait=30"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(done["state"], "done");
    // A graceful stop, so every line the daemon logged is flushed (SIGKILL could cut the
    // worker's "job settled" line, written just after the commit the long-poll saw).
    crate::helpers::signal(&child, "-TERM");
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let settled = lines
        .iter()
        .find(|l| l["message"] == "job settled")
        .unwrap_or_else(|| panic!("no job log line in {lines:?}"));
    assert_eq!(settled["span"]["name"], "job");
    assert_eq!(settled["span"]["id"], id.as_str());
    assert_eq!(settled["span"]["model"], "llama3.2");
    assert_eq!(settled["state"], "done");
    let request = lines
        .iter()
        .find(|l| l["span"]["request_id"] == "req-42")
        .unwrap_or_else(|| panic!("no request line in {lines:?}"));
    assert_eq!(request["span"]["path"], "/jobs");
    sim.shutdown().await;
}
