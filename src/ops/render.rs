//! Human-readable text for the operator commands. Pure functions of the wire types, so the
//! wording is tested without a daemon.

use comfy_table::{Table, presets::NOTHING};
use foreman_api::health::Status;
use foreman_api::jobs::{JobEvent, JobView};
use foreman_client::Update;
use indicatif::HumanBytes;
use serde_json::Value;

/// `foreman jobs get`: one `key: value` line per known field.
pub fn job(view: &JobView) -> String {
    let t = &view.timestamps;
    let mut lines = vec![
        ("id", view.id.clone()),
        ("state", view.state.as_str().to_string()),
        ("kind", view.kind.as_str().to_string()),
        ("model", view.model.clone()),
        ("drain key", view.drain_key.clone()),
        ("attempts", view.attempts.to_string()),
        ("created", t.created_at.clone()),
    ];
    let optional = [
        ("loading", t.loading_at.clone()),
        ("working", t.working_at.clone()),
        ("finished", t.finished_at.clone()),
        ("last error", view.last_error.clone()),
        ("usage", view.usage.as_ref().map(usage)),
        ("metadata", view.metadata.as_ref().map(Value::to_string)),
    ];
    lines.extend(optional.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
    let mut out: String = lines
        .iter()
        .map(|(k, v)| format!("{k:<11} {v}\n"))
        .collect();
    if let Some(result) = &view.result {
        out.push_str(&format!("{:<11} {}\n", "answer", answer(Some(result))));
    }
    out
}

fn usage(u: &foreman_api::jobs::Usage) -> String {
    let parts = [
        u.prompt_tokens.map(|n| format!("{n} prompt tokens")),
        u.completion_tokens
            .map(|n| format!("{n} completion tokens")),
        u.load_ms.map(|n| format!("load {n} ms")),
        u.total_ms.map(|n| format!("total {n} ms")),
    ];
    parts.into_iter().flatten().collect::<Vec<_>>().join(", ")
}

/// The answer of a finished job: the chat message, the generated text, or the JSON (embed).
pub fn answer(result: Option<&Value>) -> String {
    let Some(result) = result else {
        return String::new();
    };
    if let Some(text) = result.pointer("/message/content").and_then(Value::as_str) {
        return text.to_string();
    }
    if let Some(text) = result.get("response").and_then(Value::as_str) {
        return text.to_string();
    }
    result.to_string()
}

/// One line after a waited job: how long it took and what it produced.
pub fn summary(view: &JobView) -> String {
    let mut line = format!("job {} done", view.id);
    if let Some(u) = &view.usage {
        let detail = usage(u);
        if !detail.is_empty() {
            line.push_str(&format!(" ({detail})"));
        }
    }
    line
}

/// `foreman jobs list`.
pub fn jobs(views: &[JobView]) -> String {
    if views.is_empty() {
        return "no jobs\n".into();
    }
    let mut table = table(&["ID", "STATE", "MODEL", "ATTEMPTS", "CREATED"]);
    for v in views {
        table.add_row(vec![
            v.id.clone(),
            v.state.as_str().to_string(),
            v.model.clone(),
            v.attempts.to_string(),
            v.timestamps.created_at.clone(),
        ]);
    }
    format!("{table}\n")
}

/// One recorded state change.
pub fn event(e: &JobEvent) -> String {
    let mut line = format!("{}  {:<8}  attempt {}", e.at, e.state.as_str(), e.attempt);
    if let Some(detail) = &e.detail {
        line.push_str("  ");
        line.push_str(detail);
    }
    line
}

/// A live update, as the progress spinner shows it.
pub fn update(u: &Update) -> String {
    match u {
        Update::State(e) => e.state.as_str().to_string(),
        Update::Progress { tokens } => format!("working, {tokens} tokens"),
    }
}

/// A live update as one JSON line (`events --follow --json`).
pub fn update_json(u: &Update) -> String {
    match u {
        Update::State(e) => serde_json::json!({ "event": "state", "data": e }).to_string(),
        Update::Progress { tokens } => {
            serde_json::json!({ "event": "progress", "data": { "tokens": tokens } }).to_string()
        }
    }
}

/// `foreman status`: the target, its resident models and the queue per drain key.
pub fn status(s: &Status) -> String {
    let t = &s.target;
    let mut out = format!(
        "target   {} {} since {}",
        t.url,
        format!("{:?}", t.state).to_lowercase(),
        t.since
    );
    if let Some(version) = &t.version {
        out.push_str(&format!(" (Ollama {version})"));
    }
    if let Some(error) = &t.last_error {
        out.push_str(&format!("\n         last error: {error}"));
    }
    out.push_str(&format!(
        "\nvram     {} in use\n",
        HumanBytes(t.vram_used_bytes)
    ));
    if let Some(host) = &s.host {
        out.push_str(&host_lines(host));
    }
    if let Some(gate) = s.availability.as_ref().filter(|a| a.paused) {
        let why = gate.reason.as_deref().unwrap_or("over limits");
        out.push_str(&format!("paused   {why}\n"));
    }
    out.push('\n');
    let mut models = table(&["LOADED MODEL", "SIZE", "VRAM", "EXPIRES"]);
    for m in &t.loaded_models {
        models.add_row(vec![
            m.name.clone(),
            HumanBytes(m.size).to_string(),
            HumanBytes(m.size_vram).to_string(),
            m.expires_at.clone().unwrap_or_default(),
        ]);
    }
    if t.loaded_models.is_empty() {
        out.push_str("no model loaded\n\n");
    } else {
        out.push_str(&format!("{models}\n\n"));
    }
    out.push_str(&queue(&s.queue));
    out
}

fn host_lines(h: &foreman_api::health::HostStatus) -> String {
    let l = &h.load_average;
    let mut out = format!(
        "host     load {:.2} {:.2} {:.2}, {:.1} of {} cores free, memory {} of {} ({:.0}%)",
        l.one,
        l.five,
        l.fifteen,
        h.available_cores,
        h.physical_cores,
        HumanBytes(h.memory_used_bytes),
        HumanBytes(h.memory_total_bytes),
        h.memory_percent
    );
    if let Some(t) = h.cpu_temperature_c {
        out.push_str(&format!(", CPU {t:.0} °C"));
    }
    let gpu = match (&h.gpu.name, h.gpu.vram_free_bytes, h.gpu.vram_total_bytes) {
        (Some(name), Some(free), Some(total)) => {
            format!("{name}, {} free of {}", HumanBytes(free), HumanBytes(total))
        }
        _ => "none".into(),
    };
    out.push_str(&format!("\ngpu      {gpu}\n"));
    out
}

fn queue(q: &foreman_api::jobs::QueueStatus) -> String {
    let states: Vec<String> = q.by_state.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let mut out = format!(
        "jobs     {}\n",
        if states.is_empty() {
            "none".into()
        } else {
            states.join(", ")
        }
    );
    if let Some(key) = &q.current_key {
        out.push_str(&format!("serving  {key}\n"));
    }
    if let Some(why) = &q.waiting {
        out.push_str(&format!("waiting  {why}\n"));
    }
    if let Some(age) = q.oldest_queued_age_s {
        out.push_str(&format!("oldest   queued {age:.0} s ago\n"));
    }
    if !q.queued_by_key.is_empty() {
        let mut keys = table(&["DRAIN KEY", "QUEUED"]);
        for (key, n) in &q.queued_by_key {
            keys.add_row(vec![key.clone(), n.to_string()]);
        }
        out.push_str(&format!("\n{keys}\n"));
    }
    out
}

fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_preset(NOTHING).set_header(header.to_vec());
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use foreman_api::health::{LoadedModel, TargetState, TargetStatus};
    use foreman_api::jobs::{JobKind, JobState, QueueStatus, Timestamps};

    fn view() -> JobView {
        JobView {
            id: "0190".into(),
            kind: JobKind::Chat,
            model: "m:1".into(),
            drain_key: "m:1".into(),
            state: JobState::Done,
            timestamps: Timestamps {
                created_at: "2026-01-01T00:00:00Z".into(),
                ..Timestamps::default()
            },
            attempts: 1,
            last_error: None,
            usage: None,
            metadata: None,
            result: Some(serde_json::json!({"message": {"role": "assistant", "content": "hello"}})),
        }
    }

    #[test]
    fn the_answer_is_the_text_not_the_envelope() {
        assert_eq!(answer(view().result.as_ref()), "hello");
        assert_eq!(answer(Some(&serde_json::json!({"response": "hi"}))), "hi");
        assert_eq!(
            answer(Some(&serde_json::json!({"embeddings": [[1]]}))),
            r#"{"embeddings":[[1]]}"#
        );
        assert!(job(&view()).contains("answer      hello"));
    }

    #[test]
    fn status_lists_models_and_queue_per_key() {
        let s = Status {
            target: TargetStatus {
                url: "http://gpu:11434".into(),
                state: TargetState::Up,
                since: "2026-01-01T00:00:00Z".into(),
                last_seen: None,
                last_error: None,
                version: Some("0.12.0".into()),
                loaded_models: vec![LoadedModel {
                    name: "llama3.2:latest".into(),
                    size: 3 << 30,
                    size_vram: 3 << 30,
                    expires_at: None,
                    context_length: None,
                }],
                available_models: vec![],
                vram_used_bytes: 3 << 30,
            },
            queue: QueueStatus {
                by_state: [("queued".to_string(), 2)].into(),
                queued_by_key: [("qwen3:8b".to_string(), 2)].into(),
                ..QueueStatus::default()
            },
            host: None,
            availability: Some(foreman_api::health::Availability {
                paused: true,
                reason: Some("memory 95.0% > 90.0%".into()),
                since: None,
            }),
        };
        let text = status(&s);
        assert!(text.contains("http://gpu:11434 up since"), "{text}");
        assert!(text.contains("paused   memory 95.0% > 90.0%"), "{text}");
        assert!(
            text.contains("llama3.2:latest") && text.contains("3.00 GiB"),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.contains("qwen3:8b") && l.trim_end().ends_with('2')),
            "{text}"
        );
    }
}
