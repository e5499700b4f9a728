//! Resource exhaustion: a full disk while enqueuing (a small tmpfs) and running out of file
//! descriptors (the real binary under `ulimit -n`). foreman must refuse cleanly, keep its
//! database intact, and recover when the resource returns.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{foreman_bin, spawn_on};

/// A tmpfs of `size` mounted on a temp dir, unmounted on drop. `None` when this machine does not
/// allow mounting (an unprivileged container), unless `FOREMAN_REQUIRE_TMPFS` demands it.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            assert!(
                std::env::var_os("FOREMAN_REQUIRE_TMPFS").is_none(),
                "FOREMAN_REQUIRE_TMPFS is set but mounting a tmpfs failed (needs root / CAP_SYS_ADMIN)"
            );
            eprintln!("SKIPPED: cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN)");
            return None;
        }
        Some(Self { dir })
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_refuses_jobs_with_503_and_recovers_when_space_returns() {
    let Some(disk) = Tmpfs::mount("4m") else {
        return;
    };
    // Space the test can give back later.
    let filler = disk.path().join("filler");
    std::fs::write(&filler, vec![7u8; 1024 * 1024]).unwrap();
    let data = disk.path().join("data");
    let app = spawn_on(&data, |c| c.worker.enabled = false).await;

    let padding = "x".repeat(16 * 1024);
    let body = |i: usize| json!({"request": {"model": "m", "prompt": format!("{i} {padding}")}});
    let (mut accepted, mut refusal) = (0usize, None);
    for i in 0..2000 {
        let r = app
            .client
            .post(app.url("/jobs"))
            .json(&body(i))
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            202 => accepted += 1,
            503 => {
                refusal = Some(r.json::<Value>().await.unwrap());
                break;
            }
            other => panic!(
                "job {i}: expected 202 or 503, got {other}: {}",
                r.text().await.unwrap()
            ),
        }
    }
    let refusal = refusal.expect("the disk fills up within 2000 jobs of 16 KiB");
    assert_eq!(refusal["error"]["code"], "unavailable", "{refusal}");
    assert!(
        refusal["error"]["message"]
            .as_str()
            .unwrap()
            .contains("full"),
        "{refusal}"
    );
    assert!(
        accepted > 10,
        "some jobs fit before the disk filled: {accepted}"
    );

    // Still serving, nothing half-written, nothing lost.
    assert_eq!(app.get("/healthz").await.status(), 200);
    let listed: Value = app.get("/status").await.json().await.unwrap();
    assert_eq!(
        listed["queue"]["by_state"]["queued"].as_u64(),
        Some(accepted as u64),
        "{listed}"
    );

    std::fs::remove_file(&filler).unwrap();
    let r = app
        .client
        .post(app.url("/jobs"))
        .json(&body(9999))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        202,
        "space is back: {}",
        r.text().await.unwrap()
    );
    app.shutdown().await.unwrap();

    let db = rusqlite::Connection::open(data.join("foreman.db")).unwrap();
    let ok: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let stored: i64 = db
        .query_row("SELECT count(*) FROM jobs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        stored as usize,
        accepted + 1,
        "exactly the acknowledged jobs"
    );
}

#[tokio::test]
async fn running_out_of_file_descriptors_does_not_crash_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    // `ulimit -n` through the shell: the daemon gets 64 descriptors in all.
    let mut daemon = Command::new("sh")
        .args(["-c", "ulimit -n 64 && exec \"$0\" \"$@\""])
        .arg(foreman_bin())
        .args([
            "serve",
            "--listen",
            &listen,
            "--data-dir",
            "data",
            "--target",
            "http://127.0.0.1:9",
        ])
        .current_dir(dir.path())
        .env("FOREMAN_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://{listen}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut up = false;
    for _ in 0..500 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(up, "foreman started under ulimit -n 64");

    // Far more connections than descriptors, each sending a request.
    let mut hogs = Vec::new();
    for _ in 0..200 {
        // A full accept backlog makes connect() wait for SYN retries: do not wait for those.
        let connect = tokio::net::TcpStream::connect(&listen);
        if let Ok(Ok(mut s)) = tokio::time::timeout(Duration::from_millis(100), connect).await {
            use tokio::io::AsyncWriteExt;
            let _ = s
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .await;
            hogs.push(s);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        daemon.try_wait().unwrap().is_none(),
        "still running while out of descriptors"
    );
    drop(hogs);

    // Back to normal once the descriptors are released.
    let mut healthy = false;
    for _ in 0..250 {
        if client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(healthy, "serving again after the descriptors came back");
    let r = client
        .post(format!("{base}/jobs"))
        .json(&json!({"request": {"model": "m", "prompt": "after"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "the database still works");
    assert!(daemon.try_wait().unwrap().is_none());
    crate::helpers::signal(&daemon, "-TERM");
    assert_eq!(
        daemon.wait().unwrap().code(),
        Some(0),
        "and it stops cleanly"
    );
}
