//! Deployment artefacts: `.env.example` lists exactly the settings the configuration knows (with
//! their defaults), and backup/restore round-trips. Regenerate `.env.example` with
//! `UPDATE_ENV_EXAMPLE=1 cargo test --test api deploy`.

use std::process::Command;

use foreman::config::{Config, SETTINGS, env_name};
use serde_json::Value;

use crate::helpers::{foreman_bin, spawn_on, spawn_proxy, spawn_sim};

/// The default of `key` as an environment value (empty for secrets and unset options).
fn default_value(defaults: &Value, key: &str, secret: bool) -> String {
    if secret {
        return String::new();
    }
    let pointer = format!("/{}", key.replace('.', "/"));
    match defaults.pointer(&pointer) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    }
}

fn generate() -> String {
    let defaults = serde_json::to_value(Config::default()).unwrap();
    let mut out = String::from(
        "# foreman settings. Every variable is optional; the value shown is the default.\n\
         # Uncomment to change one. Generated from the configuration code (tests/api/deploy.rs).\n\
         \n\
         # -- docker compose / Traefik (read by docker-compose.yml, not by foreman) --\n\
         FOREMAN_HOST=foreman.example.com\n\
         TRAEFIK_NETWORK=traefik\n\
         TRAEFIK_ENTRYPOINT=websecure\n\
         TRAEFIK_CERTRESOLVER=letsencrypt\n\
         FOREMAN_IMAGE=foreman:latest\n\
         \n\
         # -- foreman --\n\
         # TOML config file to read (flags and these variables override it)\n\
         # FOREMAN_CONFIG=\n",
    );
    for s in SETTINGS {
        out.push_str(&format!(
            "# {}{}\n",
            s.help,
            if s.secret { " (secret)" } else { "" }
        ));
        out.push_str(&format!(
            "# {}={}\n",
            env_name(s.key),
            default_value(&defaults, s.key, s.secret)
        ));
    }
    out
}

#[test]
fn env_example_lists_exactly_the_known_settings() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".env.example");
    let generated = generate();
    if std::env::var_os("UPDATE_ENV_EXAMPLE").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap();
    assert!(
        committed == generated,
        ".env.example drifted from the settings; run UPDATE_ENV_EXAMPLE=1 cargo test --test api deploy"
    );
    // Every FOREMAN_* name in the file is a setting or FOREMAN_CONFIG, and every setting is there.
    let re = regex::Regex::new(r"(?m)^#? ?(FOREMAN_[A-Z0-9_]+)=").unwrap();
    let mut named: Vec<String> = re
        .captures_iter(&committed)
        .map(|c| c[1].to_string())
        .collect();
    named.retain(|n| !["FOREMAN_HOST", "FOREMAN_IMAGE", "FOREMAN_CONFIG"].contains(&n.as_str()));
    let mut known: Vec<String> = SETTINGS.iter().map(|s| env_name(s.key)).collect();
    named.sort();
    known.sort();
    assert_eq!(named, known);
    assert!(!committed.contains("=whsec_"), "no secret filled in");
}

#[tokio::test]
async fn backup_while_serving_then_restore_keeps_jobs_and_artifacts() {
    let sim = spawn_sim(|_| {}).await;
    let app = spawn_proxy(&sim.url(), |_| {}).await;
    let body = serde_json::json!({"request": {"model": "llama3.2", "prompt": "x", "options": {"num_predict": 2}}});
    let r = app
        .client
        .post(app.url("/jobs"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The artifact file is written just before `done` commits: wait for the job itself.
    app.wait_for_state(&id, &["done"]).await;
    let data = app.dir.path().join("data");
    let backups = tempfile::tempdir().unwrap();
    let dest = backups.path().join("backup");
    // While the daemon serves.
    let out = Command::new(foreman_bin())
        .args(["backup", "--data-dir"])
        .arg(&data)
        .arg(&dest)
        .current_dir(app.dir.path())
        .env("HOME", app.dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 artifact files"));
    let again = Command::new(foreman_bin())
        .args(["backup", "--data-dir"])
        .arg(&data)
        .arg(&dest)
        .output()
        .unwrap();
    assert!(!again.status.success(), "refuses a non-empty destination");
    app.shutdown().await.unwrap();
    // Restore = start on the copy.
    let restored = spawn_on(&dest, |c| c.worker.enabled = false).await;
    let v: Value = restored
        .get(&format!("/jobs/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["state"], "done");
    assert_eq!(
        restored.get(&format!("/jobs/{id}/artifact")).await.status(),
        200
    );
    restored.shutdown().await.unwrap();
    sim.shutdown().await;
}
