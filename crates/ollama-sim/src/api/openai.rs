//! The OpenAI-compatible shim (ollama-wire.md §7): `stream` defaults to false; SSE framing is
//! `data: <json>\n\n` per event and `data: [DONE]\n\n` at the end; errors use OpenAI's shape.

use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::{Value, json};

use super::native::{embed_with, pre_stream_fault};
use super::{JSON_UTF8, stream, with_type};
use crate::Sim;
use crate::engine::{Event, GenSpec, Generation};
use crate::gojson;
use crate::sched::{RunnerOpts, SchedError};

const SSE: &str = "text/event-stream";

pub fn routes() -> Router<Sim> {
    Router::new()
        .route("/v1/models", get(models))
        .route("/v1/models/{*model}", get(model))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/v1/embeddings", post(embeddings))
}

/// `{"error":{"message","type","param":null,"code":null}}` + newline.
fn oai_error(status: StatusCode, message: &str) -> Response {
    let kind = match status.as_u16() {
        400 => "invalid_request_error",
        404 => "not_found_error",
        _ => "api_error",
    };
    let mut body = gojson::to_vec(
        &json!({"error": {"message": message, "type": kind, "param": null, "code": null}}),
    );
    body.push(b'\n');
    with_type(status, JSON_UTF8, body)
}

/// `json.NewEncoder(w).Encode(v)`: Go-encoded with a trailing newline.
fn encoded(value: &Value) -> Response {
    with_type(StatusCode::OK, JSON_UTF8, gojson::line(value))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

async fn models(State(sim): State<Sim>) -> Response {
    let data: Vec<Value> = sim.installed().iter().map(model_object).collect();
    let data = if data.is_empty() {
        Value::Null
    } else {
        Value::Array(data)
    };
    super::json(StatusCode::OK, &json!({"object": "list", "data": data}))
}

fn model_object(m: &crate::config::ModelSpec) -> Value {
    json!({"id": m.name, "object": "model", "created": 1_760_000_000u64, "owned_by": "library"})
}

async fn model(State(sim): State<Sim>, Path(name): Path<String>) -> Response {
    match sim.find(&name) {
        Some(m) => super::json(StatusCode::OK, &model_object(&m)),
        None => oai_error(
            StatusCode::NOT_FOUND,
            &format!("model \"{name}\" not found"),
        ),
    }
}

/// Parsed OpenAI request: the native pieces plus framing flags.
struct OaiRequest {
    req: Value,
    name: String,
    stream: bool,
    include_usage: bool,
}

fn parse(body: &[u8]) -> Result<OaiRequest, Response> {
    let req = gojson::decode_body(body).map_err(|e| oai_error(StatusCode::BAD_REQUEST, &e))?;
    let name = req
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Ok(OaiRequest {
        stream: req.get("stream").and_then(Value::as_bool).unwrap_or(false),
        include_usage: req
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        req,
        name,
    })
}

/// Native generation spec for an OpenAI request; `chat` selects messages vs prompt.
fn gen_spec(sim: &Sim, o: &OaiRequest, chat: bool) -> Result<GenSpec, Response> {
    let Some(spec) = sim.find(&o.name) else {
        return Err(oai_error(
            StatusCode::NOT_FOUND,
            &format!("model \"{}\" not found, try pulling it first", o.name),
        ));
    };
    let prompt = if chat {
        let messages = o.req.get("messages").and_then(Value::as_array);
        match messages {
            Some(ms) if !ms.is_empty() => ms
                .iter()
                .filter_map(|m| m.get("content").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
            _ => {
                return Err(oai_error(
                    StatusCode::BAD_REQUEST,
                    "[] is too short - 'messages'",
                ));
            }
        }
    } else {
        o.req
            .get("prompt")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Ok(GenSpec {
        prompt,
        seed: o.req.get("seed").and_then(Value::as_i64).unwrap_or(0),
        num_predict: o
            .req
            .get("max_tokens")
            .or_else(|| o.req.get("max_completion_tokens"))
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok()),
        think: false,
        tools: o
            .req
            .get("tools")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        spec,
    })
}

async fn start(
    sim: &Sim,
    path: &str,
    o: &OaiRequest,
    spec: &GenSpec,
) -> Result<Generation, Response> {
    let started = Instant::now();
    let fault = sim.control.take_fault(path, &o.name);
    pre_stream_fault(fault.as_ref()).await?;
    let opts = RunnerOpts::from_options(None, sim.config.default_num_ctx);
    let lease = sim
        .sched
        .acquire(&spec.spec, opts, None)
        .await
        .map_err(|e| oai_sched_error(&e))?;
    Ok(Generation::start(sim, lease, started, spec, fault).await)
}

fn oai_sched_error(e: &SchedError) -> Response {
    let status = match e {
        SchedError::QueueFull => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    oai_error(status, &e.to_string())
}

/// Shared identity of one completion (`id`, `created`, `model`).
#[derive(Clone)]
struct Ident {
    id: String,
    created: u64,
    model: String,
    chat: bool,
}

impl Ident {
    fn new(sim: &Sim, model: &str, chat: bool) -> Self {
        let n = sim.counter.fetch_add(1, Ordering::Relaxed) % 999;
        let prefix = if chat { "chatcmpl" } else { "cmpl" };
        Self {
            id: format!("{prefix}-{n}"),
            created: unix_now(),
            model: model.to_string(),
            chat,
        }
    }

    fn chunk(&self, choices: Value, usage: Option<Value>) -> Value {
        let object = if self.chat {
            "chat.completion.chunk"
        } else {
            "text_completion"
        };
        let mut v = json!({
            "id": self.id, "object": object, "created": self.created, "model": self.model,
            "system_fingerprint": "fp_ollama", "choices": choices
        });
        if let Some(u) = usage {
            v["usage"] = u;
        }
        v
    }
}

fn usage(prompt: u64, completion: u64) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

/// OpenAI tool calls (`arguments` as a JSON string) from Ollama's.
fn oai_tool_calls(calls: &Value) -> Value {
    let list = calls.as_array().cloned().unwrap_or_default();
    Value::Array(
        list.iter()
            .enumerate()
            .map(|(i, c)| {
                let f = c.get("function").cloned().unwrap_or(Value::Null);
                json!({
                    "id": c.get("id").cloned().unwrap_or(Value::Null),
                    "index": i, "type": "function",
                    "function": {
                        "name": f.get("name").cloned().unwrap_or(Value::Null),
                        "arguments": f.get("arguments").map(Value::to_string).unwrap_or_default()
                    }
                })
            })
            .collect(),
    )
}

async fn chat_completions(State(sim): State<Sim>, body: Bytes) -> Response {
    completion(sim, body, true).await
}

async fn completions(State(sim): State<Sim>, body: Bytes) -> Response {
    completion(sim, body, false).await
}

async fn completion(sim: Sim, body: Bytes, chat: bool) -> Response {
    let path = if chat {
        "/v1/chat/completions"
    } else {
        "/v1/completions"
    };
    let o = match parse(&body) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let spec = match gen_spec(&sim, &o, chat) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let g = match start(&sim, path, &o, &spec).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    let ident = Ident::new(&sim, &o.name, chat);
    if o.stream {
        sse(g, ident, o.include_usage).await
    } else {
        whole(g, &ident).await
    }
}

async fn whole(mut g: Generation, ident: &Ident) -> Response {
    let (mut content, mut reasoning, mut calls) = (String::new(), String::new(), Value::Null);
    let mut finish = ("stop", 0, 0);
    while let Some(event) = g.next().await {
        match event {
            Event::Content(t) => content.push_str(&t),
            Event::Thinking(t) => reasoning.push_str(&t),
            Event::ToolCalls(c) => calls = oai_tool_calls(&c),
            Event::Done {
                reason,
                metrics,
                prompt_tokens,
            } => finish = (reason, prompt_tokens, metrics.eval_count),
            Event::Error(e) => return oai_error(StatusCode::INTERNAL_SERVER_ERROR, &e),
            Event::Cut => {
                return oai_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    crate::engine::RUNNER_CRASH,
                );
            }
        }
    }
    let (reason, prompt, completion) = finish;
    let reason = if calls.is_null() {
        reason
    } else {
        "tool_calls"
    };
    let body = if ident.chat {
        let mut message = json!({"role": "assistant", "content": content});
        if !reasoning.is_empty() {
            message["reasoning"] = Value::String(reasoning);
        }
        if !calls.is_null() {
            message["tool_calls"] = calls;
        }
        json!({
            "id": ident.id, "object": "chat.completion", "created": ident.created, "model": ident.model,
            "system_fingerprint": "fp_ollama",
            "choices": [{"index": 0, "message": message, "finish_reason": reason}],
            "usage": usage(prompt, completion)
        })
    } else {
        json!({
            "id": ident.id, "object": "text_completion", "created": ident.created, "model": ident.model,
            "system_fingerprint": "fp_ollama",
            "choices": [{"text": content, "index": 0, "finish_reason": reason}],
            "usage": usage(prompt, completion)
        })
    };
    encoded(&body)
}

/// Per-stream framing state.
struct SseState {
    g: Generation,
    ident: Ident,
    include_usage: bool,
    first: bool,
    tools_used: bool,
    /// Events still to flush after the generation ended (finish, usage, [DONE]).
    tail: Vec<Bytes>,
    ended: bool,
}

fn event(v: &Value) -> Bytes {
    let mut out = b"data: ".to_vec();
    out.extend(gojson::to_vec(v));
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

impl SseState {
    fn delta_chunk(&mut self, delta: Value) -> Bytes {
        let mut delta = delta;
        if self.first
            && self.ident.chat
            && let Value::Object(m) = &mut delta
        {
            let mut with_role = serde_json::Map::new();
            with_role.insert("role".into(), json!("assistant"));
            with_role.extend(m.clone());
            *m = with_role;
        }
        self.first = false;
        let choices = if self.ident.chat {
            json!([{"index": 0, "delta": delta, "finish_reason": null}])
        } else {
            json!([{"text": delta.get("content").cloned().unwrap_or(json!("")), "index": 0, "finish_reason": null}])
        };
        let usage = (!self.ident.chat && self.include_usage).then(|| usage(0, 0));
        event(&self.ident.chunk(choices, usage))
    }

    fn finish(&mut self, reason: &str, prompt: u64, completion: u64) {
        let reason = if self.tools_used {
            "tool_calls"
        } else {
            reason
        };
        let choices = if self.ident.chat {
            json!([{"index": 0, "delta": {}, "finish_reason": reason}])
        } else {
            json!([{"text": "", "index": 0, "finish_reason": reason}])
        };
        self.tail.push(event(&self.ident.chunk(choices, None)));
        if self.include_usage {
            self.tail.push(event(
                &self.ident.chunk(json!([]), Some(usage(prompt, completion))),
            ));
        }
        self.tail.push(Bytes::from_static(b"data: [DONE]\n\n"));
        self.tail.reverse();
    }

    async fn next(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        if let Some(b) = self.tail.pop() {
            return Some(Ok(b));
        }
        if self.ended {
            return None;
        }
        let e = self.g.next().await;
        Some(Ok(match e {
            Some(Event::Content(t)) => self.delta_chunk(json!({"content": t})),
            Some(Event::Thinking(t)) => self.delta_chunk(json!({"content": "", "reasoning": t})),
            Some(Event::ToolCalls(c)) => {
                self.tools_used = true;
                self.delta_chunk(json!({"content": "", "tool_calls": oai_tool_calls(&c)}))
            }
            Some(Event::Done {
                reason,
                metrics,
                prompt_tokens,
            }) => {
                self.ended = true;
                self.finish(reason, prompt_tokens, metrics.eval_count);
                return self.tail.pop().map(Ok);
            }
            // Derived (§7): one empty-content chunk, then EOF without finish or [DONE].
            Some(Event::Error(_)) => {
                self.ended = true;
                self.delta_chunk(json!({"content": ""}))
            }
            Some(Event::Cut) => return Some(Err(std::io::Error::other("simulated drop"))),
            None => return None,
        }))
    }
}

async fn sse(g: Generation, ident: Ident, include_usage: bool) -> Response {
    let mut state = SseState {
        g,
        ident,
        include_usage,
        first: true,
        tools_used: false,
        tail: Vec::new(),
        ended: false,
    };
    let Some(Ok(first)) = state.next().await else {
        return oai_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            crate::engine::RUNNER_CRASH,
        );
    };
    let rest = futures::stream::unfold(state, |mut s| async move {
        let item = s.next().await?;
        Some((item, s))
    });
    stream(SSE, first, rest)
}

async fn embeddings(State(sim): State<Sim>, body: Bytes) -> Response {
    let started = Instant::now();
    let o = match parse(&body) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let Some(spec) = sim.find(&o.name) else {
        return oai_error(
            StatusCode::NOT_FOUND,
            &format!("model \"{}\" not found, try pulling it first", o.name),
        );
    };
    let inputs: Vec<String> = match o.req.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if a.iter().all(Value::is_string) && !a.is_empty() => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => return oai_error(StatusCode::BAD_REQUEST, "invalid input"),
    };
    let opts = RunnerOpts::from_options(None, sim.config.default_num_ctx);
    let lease = match sim.sched.acquire(&spec, opts, None).await {
        Ok(l) => l,
        Err(e) => return oai_sched_error(&e),
    };
    let (vectors, metrics) = embed_with(&sim, lease, started, &spec, &inputs).await;
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(i, v)| json!({"object": "embedding", "embedding": v, "index": i}))
        .collect();
    let n = metrics.prompt_eval_count;
    encoded(&json!({
        "object": "list", "data": data, "model": o.name,
        "usage": {"prompt_tokens": n, "total_tokens": n}
    }))
}
