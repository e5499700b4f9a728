//! Ollama's native routes (ollama-wire.md §1–§3): framing, field order, error catalogue,
//! load/unload idioms.

use std::time::{Instant, SystemTime};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get, post};
use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use super::{error, json, stream, text, with_type};
use crate::Sim;
use crate::config::{ModelSpec, canonical_name};
use crate::control::FaultKind;
use crate::engine::{Event, GenSpec, Generation, Metrics};
use crate::gojson::{self, KeepAlive};
use crate::sched::{RunnerOpts, SchedError};

const NDJSON: &str = "application/x-ndjson";

pub fn routes() -> Router<Sim> {
    Router::new()
        .route("/", get(root))
        .route("/api/version", get(version))
        .route("/api/tags", get(tags))
        .route("/api/ps", get(ps))
        .route("/api/show", post(show))
        .route("/api/generate", post(generate))
        .route("/api/chat", post(chat))
        .route("/api/embed", post(embed))
        .route("/api/embeddings", post(embeddings_legacy))
        .route("/api/pull", post(pull))
        .route("/api/delete", delete(delete_model))
        .route("/api/copy", post(copy_model))
}

async fn root() -> Response {
    text(StatusCode::OK, "Ollama is running")
}

async fn version(State(sim): State<Sim>) -> Response {
    json(
        StatusCode::OK,
        &serde_json::json!({ "version": sim.config.version }),
    )
}

#[derive(Serialize)]
struct Details<'a> {
    parent_model: &'a str,
    format: &'a str,
    family: &'a str,
    families: [&'a str; 1],
    parameter_size: &'a str,
    quantization_level: &'a str,
}

fn details(spec: &ModelSpec) -> Details<'_> {
    Details {
        parent_model: "",
        format: "gguf",
        family: &spec.family,
        families: [&spec.family],
        parameter_size: &spec.parameter_size,
        quantization_level: &spec.quantization_level,
    }
}

/// A fixed, per-model modification time (deterministic listings).
fn modified_at(index: usize) -> String {
    let base = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_760_000_000);
    gojson::timestamp(base - std::time::Duration::from_secs(3600 * index as u64))
}

async fn tags(State(sim): State<Sim>) -> Response {
    #[derive(Serialize)]
    struct Entry<'a> {
        name: &'a str,
        model: &'a str,
        modified_at: String,
        size: u64,
        digest: String,
        details: Details<'a>,
        capabilities: &'a [String],
    }
    let models = sim.installed();
    let entries: Vec<Entry<'_>> = models
        .iter()
        .enumerate()
        .map(|(i, m)| Entry {
            name: &m.name,
            model: &m.name,
            modified_at: modified_at(i),
            size: m.size,
            digest: m.digest(),
            details: details(m),
            capabilities: &m.capabilities,
        })
        .collect();
    json(StatusCode::OK, &serde_json::json!({ "models": entries }))
}

async fn ps(State(sim): State<Sim>) -> Response {
    #[derive(Serialize)]
    struct Entry<'a> {
        name: &'a str,
        model: &'a str,
        size: u64,
        digest: String,
        details: Details<'a>,
        expires_at: String,
        size_vram: u64,
        context_length: u64,
    }
    let loaded = sim.sched.loaded();
    let entries: Vec<Entry<'_>> = loaded
        .iter()
        .map(|l| Entry {
            name: &l.spec.name,
            model: &l.spec.name,
            size: l.size,
            digest: l.spec.digest(),
            details: details(&l.spec),
            expires_at: gojson::timestamp(l.expires_at),
            size_vram: l.size,
            context_length: l.context_length,
        })
        .collect();
    json(StatusCode::OK, &serde_json::json!({ "models": entries }))
}

/// Parsed common fields of a model request, or the error response to send.
pub(crate) struct Common {
    pub name: String,
    pub req: Value,
    pub keep_alive: Option<KeepAlive>,
}

/// Decodes the body and reads `model`/`keep_alive` with Ollama's error wording.
pub(crate) fn common(body: &[u8]) -> Result<Common, Response> {
    let req = gojson::decode_body(body).map_err(|e| error(StatusCode::BAD_REQUEST, &e))?;
    if !req.is_object() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "json: cannot unmarshal non-object into Go value of type api.Request",
        ));
    }
    let name = match req.get("model").or_else(|| req.get("name")) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "json: cannot unmarshal value into Go struct field .model of type string",
            ));
        }
    };
    let keep_alive = gojson::parse_keep_alive(req.get("keep_alive"))
        .map_err(|e| error(StatusCode::BAD_REQUEST, &e))?;
    Ok(Common {
        name,
        req,
        keep_alive,
    })
}

fn stream_flag(req: &Value, default: bool) -> bool {
    req.get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(default)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Generate,
    Chat,
}

async fn generate(State(sim): State<Sim>, body: Bytes) -> Response {
    generation(sim, Kind::Generate, "/api/generate", &body).await
}

async fn chat(State(sim): State<Sim>, body: Bytes) -> Response {
    generation(sim, Kind::Chat, "/api/chat", &body).await
}

/// Validates a generate/chat request; returns the model and what to generate.
fn validate(sim: &Sim, kind: Kind, c: &Common) -> Result<GenSpec, Response> {
    if c.name.is_empty() {
        return Err(match kind {
            Kind::Chat => error(StatusCode::BAD_REQUEST, "model is required"),
            Kind::Generate => error(StatusCode::NOT_FOUND, "model '' not found"),
        });
    }
    let Some(spec) = sim.find(&c.name) else {
        return Err(error(
            StatusCode::NOT_FOUND,
            &format!("model '{}' not found", c.name),
        ));
    };
    if !spec.has("completion") {
        let what = if kind == Kind::Chat {
            "chat"
        } else {
            "generate"
        };
        return Err(error(
            StatusCode::BAD_REQUEST,
            &format!("\"{}\" does not support {what}", c.name),
        ));
    }
    let think = parse_think(c.req.get("think"))?.unwrap_or(spec.has("thinking"));
    if think && !spec.has("thinking") {
        return Err(error(
            StatusCode::BAD_REQUEST,
            &format!("\"{}\" does not support thinking", c.name),
        ));
    }
    if kind == Kind::Chat
        && c.req
            .get("messages")
            .is_some_and(|m| !m.is_array() && !m.is_null())
    {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "json: cannot unmarshal value into Go struct field ChatRequest.messages of type []api.Message",
        ));
    }
    let options = c.req.get("options");
    Ok(GenSpec {
        prompt: prompt_text(kind, &c.req),
        seed: options
            .and_then(|o| o.get("seed"))
            .and_then(Value::as_i64)
            .unwrap_or(0),
        num_predict: options
            .and_then(|o| o.get("num_predict"))
            .and_then(Value::as_i64)
            .and_then(|n| usize::try_from(n).ok()),
        think,
        tools: c
            .req
            .get("tools")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        spec,
    })
}

fn parse_think(v: Option<&Value>) -> Result<Option<bool>, Response> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if ["low", "medium", "high", "max"].contains(&s.as_str()) => {
            Ok(Some(true))
        }
        Some(other) => Err(error(
            StatusCode::BAD_REQUEST,
            &format!(
                "invalid think value: {} (must be \"high\", \"medium\", \"low\", \"max\", true, or false)",
                other
            ),
        )),
    }
}

/// The text that seeds the output: the prompt, or the messages' contents.
fn prompt_text(kind: Kind, req: &Value) -> String {
    match kind {
        Kind::Generate => req
            .get("prompt")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        Kind::Chat => req
            .get("messages")
            .and_then(Value::as_array)
            .map(|ms| {
                ms.iter()
                    .filter_map(|m| m.get("content").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default(),
    }
}

fn is_load_idiom(kind: Kind, req: &Value) -> bool {
    match kind {
        Kind::Generate => req
            .get("prompt")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty),
        Kind::Chat => req
            .get("messages")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty),
    }
}

/// Maps a scheduler error to Ollama's response.
pub(crate) fn sched_error(e: &SchedError) -> Response {
    let status = match e {
        SchedError::QueueFull => StatusCode::SERVICE_UNAVAILABLE,
        SchedError::LoadFailed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        SchedError::Canceled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
    };
    error(status, &e.to_string())
}

/// Applies a pre-stream fault; `Err` is the response to send instead of generating.
pub(crate) async fn pre_stream_fault(fault: Option<&FaultKind>) -> Result<(), Response> {
    match fault {
        Some(FaultKind::Status { status, message }) => Err(error(
            StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message,
        )),
        Some(FaultKind::Busy) => Err(sched_error(&SchedError::QueueFull)),
        Some(FaultKind::HangBeforeHeaders) => {
            // Until the client gives up (its disconnect drops this future).
            std::future::pending::<()>().await;
            Ok(())
        }
        _ => Ok(()),
    }
}

async fn generation(sim: Sim, kind: Kind, path: &str, body: &[u8]) -> Response {
    let started = Instant::now();
    let c = match common(body) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let gen_spec = match validate(&sim, kind, &c) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let opts = RunnerOpts::from_options(c.req.get("options"), sim.config.default_num_ctx);
    if is_load_idiom(kind, &c.req) {
        return load_or_unload(&sim, kind, &c, &gen_spec.spec, opts).await;
    }
    let fault = sim.control.take_fault(path, &c.name);
    if let Err(r) = pre_stream_fault(fault.as_ref()).await {
        return r;
    }
    let lease = match sim.sched.acquire(&gen_spec.spec, opts, c.keep_alive).await {
        Ok(l) => l,
        Err(e) => return sched_error(&e),
    };
    let mut g = Generation::start(&sim, lease, started, &gen_spec, fault).await;
    let framer = Framer {
        kind,
        model: c.name.clone(),
        raw: c.req.get("raw").and_then(Value::as_bool).unwrap_or(false),
    };
    if stream_flag(&c.req, true) {
        stream_generation(g, framer).await
    } else {
        let mut acc = Accumulated::default();
        while let Some(event) = g.next().await {
            if let Some(r) = acc.add(event) {
                return r;
            }
        }
        let context = (kind == Kind::Generate && !framer.raw).then(|| g.context());
        json(StatusCode::OK, &framer.full(&acc, context))
    }
}

async fn load_or_unload(
    sim: &Sim,
    kind: Kind,
    c: &Common,
    spec: &ModelSpec,
    opts: RunnerOpts,
) -> Response {
    let reason = if c.keep_alive.is_some_and(KeepAlive::is_zero) {
        sim.sched.unload(&spec.name);
        "unload"
    } else {
        match sim.sched.acquire(spec, opts, c.keep_alive).await {
            Ok(lease) => drop(lease),
            Err(e) => return sched_error(&e),
        }
        "load"
    };
    let created_at = gojson::timestamp(SystemTime::now());
    let body = match kind {
        Kind::Generate => serde_json::json!({
            "model": c.name, "created_at": created_at, "response": "", "done": true, "done_reason": reason
        }),
        Kind::Chat => serde_json::json!({
            "model": c.name, "created_at": created_at,
            "message": {"role": "assistant", "content": ""}, "done": true, "done_reason": reason
        }),
    };
    json(StatusCode::OK, &body)
}

/// Turns engine events into Ollama's chunk objects.
struct Framer {
    kind: Kind,
    model: String,
    raw: bool,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'a str,
    content: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<&'a Value>,
}

#[derive(Serialize)]
struct GenerateChunk<'a> {
    model: &'a str,
    created_at: String,
    response: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<&'a str>,
    done: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    done_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<Vec<u32>>,
    #[serde(flatten)]
    metrics: Metrics,
}

#[derive(Serialize)]
struct ChatChunk<'a> {
    model: &'a str,
    created_at: String,
    message: Message<'a>,
    done: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    done_reason: Option<&'a str>,
    #[serde(flatten)]
    metrics: Metrics,
}

/// Everything a non-streamed answer concatenates.
#[derive(Default)]
struct Accumulated {
    content: String,
    thinking: String,
    tool_calls: Vec<Value>,
    done: Option<(&'static str, Metrics)>,
}

impl Accumulated {
    /// Adds an event; an in-band error becomes a 500 for `stream:false` (`waitForStream`).
    fn add(&mut self, event: Event) -> Option<Response> {
        match event {
            Event::Thinking(t) => self.thinking.push_str(&t),
            Event::Content(t) => self.content.push_str(&t),
            Event::ToolCalls(Value::Array(calls)) => self.tool_calls.extend(calls),
            Event::ToolCalls(_) => {}
            Event::Done {
                reason, metrics, ..
            } => self.done = Some((reason, metrics)),
            Event::Error(e) => return Some(error(StatusCode::INTERNAL_SERVER_ERROR, &e)),
            Event::Cut => {
                return Some(error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    crate::engine::RUNNER_CRASH,
                ));
            }
        }
        None
    }
}

impl Framer {
    fn chunk(&self, event: &Event, context: Option<Vec<u32>>) -> Option<Vec<u8>> {
        let created_at = gojson::timestamp(SystemTime::now());
        let (text, thinking, calls, done) = match event {
            Event::Thinking(t) => ("", Some(t.as_str()), None, None),
            Event::Content(t) => (t.as_str(), None, None, None),
            Event::ToolCalls(c) => ("", None, Some(c), None),
            Event::Done {
                reason, metrics, ..
            } => ("", None, None, Some((*reason, *metrics))),
            Event::Error(e) => return Some(gojson::line(&serde_json::json!({ "error": e }))),
            Event::Cut => return None,
        };
        Some(self.object(created_at, text, thinking, calls, done, context))
    }

    fn object(
        &self,
        created_at: String,
        text: &str,
        thinking: Option<&str>,
        calls: Option<&Value>,
        done: Option<(&str, Metrics)>,
        context: Option<Vec<u32>>,
    ) -> Vec<u8> {
        let (done_reason, metrics) = done.map_or((None, Metrics::default()), |(r, m)| (Some(r), m));
        match self.kind {
            Kind::Generate => gojson::line(&GenerateChunk {
                model: &self.model,
                created_at,
                response: text,
                thinking,
                done: done_reason.is_some(),
                done_reason,
                context: if self.raw { None } else { context },
                metrics,
            }),
            Kind::Chat => gojson::line(&ChatChunk {
                model: &self.model,
                created_at,
                message: Message {
                    role: "assistant",
                    content: text,
                    thinking,
                    tool_calls: calls,
                },
                done: done_reason.is_some(),
                done_reason,
                metrics,
            }),
        }
    }

    /// The single object of a `stream:false` answer.
    fn full(&self, acc: &Accumulated, context: Option<Vec<u32>>) -> Value {
        let calls = (!acc.tool_calls.is_empty()).then(|| Value::Array(acc.tool_calls.clone()));
        let thinking = (!acc.thinking.is_empty()).then_some(acc.thinking.as_str());
        let done = acc.done.unwrap_or(("stop", Metrics::default()));
        let mut bytes = self.object(
            gojson::timestamp(SystemTime::now()),
            &acc.content,
            thinking,
            calls.as_ref(),
            Some(done),
            context,
        );
        bytes.pop(); // the newline
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    }
}

/// Streams a generation as NDJSON; headers leave with the first object.
async fn stream_generation(mut g: Generation, framer: Framer) -> Response {
    let first = next_line(&mut g, &framer).await;
    let Some(Ok(first)) = first else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            crate::engine::RUNNER_CRASH,
        );
    };
    let rest = futures::stream::unfold((g, framer), |(mut g, framer)| async move {
        let line = next_line(&mut g, &framer).await?;
        Some((line, (g, framer)))
    });
    stream(NDJSON, first, rest)
}

async fn next_line(g: &mut Generation, framer: &Framer) -> Option<Result<Bytes, std::io::Error>> {
    let event = g.next().await?;
    let context = match (&event, framer.kind) {
        (Event::Done { .. }, Kind::Generate) => Some(g.context()),
        _ => None,
    };
    Some(match framer.chunk(&event, context) {
        Some(bytes) => Ok(Bytes::from(bytes)),
        None => Err(std::io::Error::other("simulated connection drop")),
    })
}

async fn show(State(sim): State<Sim>, body: Bytes) -> Response {
    let c = match common(&body) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(spec) = sim.find(&c.name) else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("model '{}' not found", canonical_name(&c.name)),
        );
    };
    #[derive(Serialize)]
    struct Show<'a> {
        license: &'a str,
        modelfile: String,
        parameters: &'a str,
        template: &'a str,
        details: Details<'a>,
        model_info: Value,
        capabilities: &'a [String],
        modified_at: String,
    }
    let arch = spec.family.clone();
    let mut info = serde_json::Map::new();
    info.insert("general.architecture".into(), Value::String(arch.clone()));
    info.insert(
        format!("{arch}.context_length"),
        Value::from(spec.context_length),
    );
    if spec.embedding_length > 0 {
        info.insert(
            format!("{arch}.embedding_length"),
            Value::from(spec.embedding_length),
        );
    }
    let show = Show {
        license: "Simulated model license text.",
        modelfile: format!(
            "# Modelfile generated by \"ollama show\"\nFROM {}\n",
            spec.name
        ),
        parameters: "stop                           \"<|eot_id|>\"",
        template: "{{ .System }}\n{{ .Prompt }}",
        details: details(&spec),
        model_info: Value::Object(info),
        capabilities: &spec.capabilities,
        modified_at: modified_at(0),
    };
    json(StatusCode::OK, &show)
}

/// Decodes an embedding request and finds its model, with the embed routes' 404 wording.
fn embedding_model(sim: &Sim, body: &[u8]) -> Result<(Common, ModelSpec), Response> {
    let c = common(body)?;
    match sim.find(&c.name) {
        Some(spec) => Ok((c, spec)),
        None => Err(error(
            StatusCode::NOT_FOUND,
            &format!("model \"{}\" not found, try pulling it first", c.name),
        )),
    }
}

async fn embed(State(sim): State<Sim>, body: Bytes) -> Response {
    let started = Instant::now();
    let (c, spec) = match embedding_model(&sim, &body) {
        Ok(found) => found,
        Err(r) => return r,
    };
    let inputs = match c.req.get("input") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) if s.is_empty() => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => {
            let strings: Option<Vec<String>> = items
                .iter()
                .map(|i| i.as_str().map(str::to_string))
                .collect();
            match strings {
                Some(s) => s,
                None => return error(StatusCode::BAD_REQUEST, "invalid input type"),
            }
        }
        Some(_) => return error(StatusCode::BAD_REQUEST, "invalid input type"),
    };
    let opts = RunnerOpts::from_options(c.req.get("options"), sim.config.default_num_ctx);
    let fault = sim.control.take_fault("/api/embed", &c.name);
    if let Err(r) = pre_stream_fault(fault.as_ref()).await {
        return r;
    }
    let lease = match sim.sched.acquire(&spec, opts, c.keep_alive).await {
        Ok(l) => l,
        Err(e) => return sched_error(&e),
    };
    if inputs.is_empty() {
        drop(lease);
        return json(
            StatusCode::OK,
            &serde_json::json!({"model": c.name, "embeddings": []}),
        );
    }
    let (vectors, metrics) = embed_with(&sim, lease, started, &spec, &inputs).await;
    #[derive(Serialize)]
    struct Embed<'a> {
        model: &'a str,
        embeddings: Vec<Vec<f32>>,
        total_duration: u64,
        load_duration: u64,
        prompt_eval_count: u64,
    }
    json(
        StatusCode::OK,
        &Embed {
            model: &c.name,
            embeddings: vectors,
            total_duration: metrics.total_duration,
            load_duration: metrics.load_duration,
            prompt_eval_count: metrics.prompt_eval_count,
        },
    )
}

/// Computes embeddings on a leased runner, with Ollama-like timing.
pub(crate) async fn embed_with(
    sim: &Sim,
    lease: crate::sched::Lease,
    started: Instant,
    spec: &ModelSpec,
    inputs: &[String],
) -> (Vec<Vec<f32>>, Metrics) {
    let load = sim.clock.since(started) + std::time::Duration::from_millis(1);
    let _slot = lease.slot().await;
    sim.control.request_started(&spec.name);
    let tokens: u64 = inputs.iter().map(|i| crate::text::prompt_tokens(i)).sum();
    if spec.tokens_per_sec > 0.0 {
        let secs = tokens as f64 / (spec.tokens_per_sec * 50.0);
        sim.clock
            .sleep(std::time::Duration::from_secs_f64(secs))
            .await;
    }
    let dims = spec.embedding_length.max(8);
    let vectors = inputs
        .iter()
        .map(|i| crate::text::embedding(&spec.name, i, dims))
        .collect();
    sim.control.request_finished(true);
    drop(lease);
    let ns = |d: std::time::Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    let total = sim.clock.since(started) + std::time::Duration::from_millis(1);
    let metrics = Metrics {
        total_duration: ns(total.max(load)),
        load_duration: ns(load),
        prompt_eval_count: tokens,
        ..Metrics::default()
    };
    (vectors, metrics)
}

async fn embeddings_legacy(State(sim): State<Sim>, body: Bytes) -> Response {
    let started = Instant::now();
    let (c, spec) = match embedding_model(&sim, &body) {
        Ok(found) => found,
        Err(r) => return r,
    };
    let prompt = c
        .req
        .get("prompt")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let opts = RunnerOpts::from_options(c.req.get("options"), sim.config.default_num_ctx);
    let lease = match sim.sched.acquire(&spec, opts, c.keep_alive).await {
        Ok(l) => l,
        Err(e) => return sched_error(&e),
    };
    if prompt.is_empty() {
        return json(StatusCode::OK, &serde_json::json!({"embedding": []}));
    }
    let (vectors, _) = embed_with(&sim, lease, started, &spec, &[prompt]).await;
    let as_f64: Vec<f64> = vectors
        .first()
        .map(|v| v.iter().map(|x| f64::from(*x)).collect())
        .unwrap_or_default();
    json(StatusCode::OK, &serde_json::json!({ "embedding": as_f64 }))
}

async fn pull(State(sim): State<Sim>, body: Bytes) -> Response {
    let c = match common(&body) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let name = canonical_name(&c.name);
    let known = sim.find(&name);
    let pullable = known.is_some()
        || sim
            .config
            .registry
            .iter()
            .any(|r| canonical_name(r) == name);
    let spec = known.clone().unwrap_or_else(|| ModelSpec {
        name: name.clone(),
        size: 637_700_000,
        ..ModelSpec::default()
    });
    let lines = pull_lines(&spec, known.is_some(), pullable);
    if pullable && known.is_none() {
        sim.install(spec);
    }
    if !stream_flag(&c.req, true) {
        return match lines.last() {
            Some(Value::Object(o)) if o.contains_key("error") => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                o.get("error").and_then(Value::as_str).unwrap_or_default(),
            ),
            _ => json(StatusCode::OK, &serde_json::json!({"status": "success"})),
        };
    }
    let clock = sim.clock;
    let mut iter = lines.into_iter();
    let first = iter.next().map(|l| gojson::line(&l)).unwrap_or_default();
    let rest = futures::stream::unfold(iter, move |mut iter| async move {
        let line = iter.next()?;
        clock.sleep(std::time::Duration::from_millis(60)).await;
        Some((Ok(Bytes::from(gojson::line(&line))), iter))
    });
    stream(NDJSON, Bytes::from(first), rest)
}

/// The progress objects of a pull (ollama-wire.md §3.6).
fn pull_lines(spec: &ModelSpec, present: bool, pullable: bool) -> Vec<Value> {
    use serde_json::json;
    let mut lines = vec![json!({"status": "pulling manifest"})];
    if !pullable {
        lines.push(json!({"error": "pull model manifest: file does not exist"}));
        return lines;
    }
    let digest = spec.digest();
    let status = format!("pulling {}", &digest[..12]);
    let total = spec.size;
    if present {
        lines.push(json!({"status": status, "digest": format!("sha256:{digest}"), "total": total, "completed": total}));
    } else {
        lines.push(json!({"status": status, "digest": format!("sha256:{digest}"), "total": total}));
        for step in 1..=4u64 {
            lines.push(json!({"status": status, "digest": format!("sha256:{digest}"), "total": total, "completed": total * step / 4}));
        }
    }
    lines.push(json!({"status": "verifying sha256 digest"}));
    lines.push(json!({"status": "writing manifest"}));
    lines.push(json!({"status": "success"}));
    lines
}

async fn delete_model(State(sim): State<Sim>, body: Bytes) -> Response {
    let c = match common(&body) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if sim.uninstall(&c.name) {
        sim.sched.unload(&canonical_name(&c.name));
        with_type(StatusCode::OK, "text/plain; charset=utf-8", Vec::new())
    } else {
        error(
            StatusCode::NOT_FOUND,
            &format!("model '{}' not found", c.name),
        )
    }
}

async fn copy_model(State(sim): State<Sim>, body: Bytes) -> Response {
    let c = match common(&body) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let source = c
        .req
        .get("source")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let dest = c
        .req
        .get("destination")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(mut spec) = sim.find(source) else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("model \"{source}\" not found"),
        );
    };
    spec.name = canonical_name(dest);
    sim.install(spec);
    with_type(StatusCode::OK, "text/plain; charset=utf-8", Vec::new())
}
