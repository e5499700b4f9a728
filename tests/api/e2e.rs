//! The official Python clients (ollama, openai) against the real binaries. The script installs
//! its own packages into a venv under `target/`; set `FOREMAN_SKIP_E2E=1` to skip offline.

use std::process::Command;

#[test]
fn official_python_clients_pass_end_to_end() {
    if std::env::var_os("FOREMAN_SKIP_E2E").is_some() {
        eprintln!("FOREMAN_SKIP_E2E set: official client tests skipped");
        return;
    }
    let out = Command::new("bash")
        .arg("scripts/e2e-clients.sh")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "e2e failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(" passed"), "pytest ran tests: {stdout}");
    assert!(!stdout.contains(" failed"), "{stdout}");
}
