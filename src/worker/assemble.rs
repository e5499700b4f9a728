//! Assembles a streamed Ollama answer (NDJSON) into the single object `stream:false` would
//! have returned, line by line as bytes arrive (lines may span chunks).

use foreman_api::jobs::{JobKind, Usage};
use serde_json::{Map, Value};

/// Why a stream could not be assembled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssembleError {
    /// The target sent an in-band `{"error": ...}` line.
    #[error("target error: {0}")]
    Upstream(String),
    #[error("invalid line from target: {0}")]
    Invalid(String),
    #[error("stream ended without a final (done) object")]
    Incomplete,
}

/// Incremental NDJSON assembler.
#[derive(Debug)]
pub struct Assembler {
    kind: JobKind,
    pending: Vec<u8>,
    content: String,
    thinking: String,
    tool_calls: Vec<Value>,
    done: Option<Value>,
    /// Generated tokens seen so far (one per content/thinking line): live progress.
    pub tokens: u64,
}

/// Longest line accepted (the Go client's limit is 8,000,000 bytes).
const MAX_LINE: usize = 8_000_000;

impl Assembler {
    pub fn new(kind: JobKind) -> Self {
        Self {
            kind,
            pending: Vec::new(),
            content: String::new(),
            thinking: String::new(),
            tool_calls: Vec::new(),
            done: None,
            tokens: 0,
        }
    }

    /// Feeds a chunk of bytes; complete lines are processed at once.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), AssembleError> {
        self.pending.extend_from_slice(chunk);
        while let Some(pos) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=pos).collect();
            self.line(&line[..line.len() - 1])?;
        }
        if self.pending.len() > MAX_LINE {
            return Err(AssembleError::Invalid("line longer than 8 MB".into()));
        }
        Ok(())
    }

    fn line(&mut self, line: &[u8]) -> Result<(), AssembleError> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let v: Value =
            serde_json::from_slice(line).map_err(|e| AssembleError::Invalid(e.to_string()))?;
        if let Some(e) = v.get("error") {
            return Err(AssembleError::Upstream(
                e.as_str().map_or_else(|| e.to_string(), str::to_string),
            ));
        }
        let text_field = if self.kind == JobKind::Chat {
            v.get("message")
        } else {
            Some(&v)
        };
        if let Some(m) = text_field {
            let text_key = if self.kind == JobKind::Chat {
                "content"
            } else {
                "response"
            };
            if let Some(t) = m
                .get(text_key)
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
            {
                self.content.push_str(t);
                self.tokens += 1;
            }
            if let Some(t) = m
                .get("thinking")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
            {
                self.thinking.push_str(t);
                self.tokens += 1;
            }
            if let Some(Value::Array(calls)) = m.get("tool_calls") {
                self.tool_calls.extend(calls.iter().cloned());
            }
        }
        if v.get("done").and_then(Value::as_bool) == Some(true) {
            self.done = Some(v);
        }
        Ok(())
    }

    /// The assembled answer, shaped like Ollama's `stream:false` response.
    pub fn finish(mut self) -> Result<Value, AssembleError> {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.line(&rest)?;
        }
        let Some(Value::Object(mut done)) = self.done.take() else {
            return Err(AssembleError::Incomplete);
        };
        match self.kind {
            JobKind::Chat => {
                let mut message = match done.remove("message") {
                    Some(Value::Object(m)) => m,
                    _ => Map::new(),
                };
                message.insert("content".into(), Value::String(self.content));
                if !self.thinking.is_empty() {
                    message.insert("thinking".into(), Value::String(self.thinking));
                }
                if !self.tool_calls.is_empty() {
                    message.insert("tool_calls".into(), Value::Array(self.tool_calls));
                }
                message
                    .entry("role")
                    .or_insert_with(|| Value::String("assistant".into()));
                done.insert("message".into(), Value::Object(message));
            }
            _ => {
                done.insert("response".into(), Value::String(self.content));
                if !self.thinking.is_empty() {
                    done.insert("thinking".into(), Value::String(self.thinking));
                }
            }
        }
        Ok(Value::Object(done))
    }
}

/// Usage figures from a final Ollama object (durations converted from ns to ms).
pub fn usage(result: &Value) -> Usage {
    let n = |k: &str| result.get(k).and_then(Value::as_u64);
    Usage {
        prompt_tokens: n("prompt_eval_count"),
        completion_tokens: n("eval_count"),
        load_ms: n("load_duration").map(|d| d / 1_000_000),
        total_ms: n("total_duration").map(|d| d / 1_000_000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_lines_split_across_chunks_assemble_into_one_message() {
        let mut a = Assembler::new(JobKind::Chat);
        let body = concat!(
            r#"{"model":"m","message":{"role":"assistant","content":"","thinking":"hm"},"done":false}"#,
            "\n",
            r#"{"model":"m","message":{"role":"assistant","content":"Hel"},"done":false}"#,
            "\n",
            r#"{"model":"m","message":{"role":"assistant","content":"lo"},"done":false}"#,
            "\n",
            r#"{"model":"m","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","eval_count":3,"prompt_eval_count":9,"load_duration":2000000,"total_duration":9000000}"#,
            "\n",
        );
        for piece in body.as_bytes().chunks(7) {
            a.push(piece).unwrap();
        }
        assert_eq!(a.tokens, 3);
        let r = a.finish().unwrap();
        assert_eq!(r["message"]["content"], "Hello");
        assert_eq!(r["message"]["thinking"], "hm");
        assert_eq!(r["done_reason"], "stop");
        let u = usage(&r);
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.load_ms, u.total_ms),
            (Some(9), Some(3), Some(2), Some(9))
        );
    }

    #[test]
    fn an_error_line_and_a_missing_done_are_errors() {
        let mut a = Assembler::new(JobKind::Generate);
        a.push(b"{\"response\":\"a\",\"done\":false}\n").unwrap();
        assert_eq!(
            a.push(b"{\"error\":\"runner died\"}\n"),
            Err(AssembleError::Upstream("runner died".into()))
        );
        let mut a = Assembler::new(JobKind::Generate);
        a.push(b"{\"response\":\"a\",\"done\":false}\n").unwrap();
        assert_eq!(a.finish(), Err(AssembleError::Incomplete));
        let mut a = Assembler::new(JobKind::Generate);
        assert!(matches!(
            a.push(b"not json\n"),
            Err(AssembleError::Invalid(_))
        ));
    }

    #[test]
    fn a_single_object_without_newline_is_accepted() {
        let mut a = Assembler::new(JobKind::Generate);
        a.push(br#"{"response":"whole","done":true,"eval_count":1}"#)
            .unwrap();
        assert_eq!(a.finish().unwrap()["response"], "whole");
    }
}
