//! Typed Ollama bodies for the one-call facade. Only the common fields are named; every other
//! field (`options`, `format`, `tools`, `images`, `keep_alive`, timings, …) is kept verbatim in
//! `extra`, so nothing a newer Ollama adds is lost on the way through.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One chat message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    #[serde(default)]
    pub content: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
            extra: Map::new(),
        }
    }

    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }

    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// Body of `/api/chat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatRequest {
    pub fn new(model: impl Into<String>, messages: Vec<Message>) -> Self {
        Self {
            model: model.into(),
            messages,
            extra: Map::new(),
        }
    }

    /// Sets one runner option (`options.<key>`), e.g. `temperature` or `num_ctx`.
    pub fn option(mut self, key: &str, value: impl Into<Value>) -> Self {
        set_option(&mut self.extra, key, value.into());
        self
    }
}

/// The assembled answer of `/api/chat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    pub model: String,
    #[serde(default)]
    pub created_at: String,
    pub message: Message,
    #[serde(default)]
    pub done: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_eval_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_count: Option<u64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Body of `/api/generate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateRequest {
    pub model: String,
    pub prompt: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl GenerateRequest {
    pub fn new(model: impl Into<String>, prompt: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            prompt: prompt.into(),
            extra: Map::new(),
        }
    }

    /// Sets one runner option (`options.<key>`).
    pub fn option(mut self, key: &str, value: impl Into<Value>) -> Self {
        set_option(&mut self.extra, key, value.into());
        self
    }
}

/// The assembled answer of `/api/generate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateResponse {
    pub model: String,
    #[serde(default)]
    pub created_at: String,
    pub response: String,
    #[serde(default)]
    pub done: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_eval_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_count: Option<u64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Body of `/api/embed`: `input` is one string or a list of strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbedRequest {
    pub model: String,
    pub input: Value,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl EmbedRequest {
    pub fn new(
        model: impl Into<String>,
        inputs: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        let input = inputs
            .into_iter()
            .map(|s| Value::String(s.into()))
            .collect();
        Self {
            model: model.into(),
            input: Value::Array(input),
            extra: Map::new(),
        }
    }
}

/// The answer of `/api/embed`: one vector per input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbedResponse {
    pub model: String,
    pub embeddings: Vec<Vec<f32>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn set_option(extra: &mut Map<String, Value>, key: &str, value: Value) {
    let options = extra
        .entry("options")
        .or_insert_with(|| Value::Object(Map::new()));
    if !options.is_object() {
        *options = Value::Object(Map::new());
    }
    if let Value::Object(map) = options {
        map.insert(key.to_string(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let body = serde_json::json!({
            "model": "m", "messages": [{"role": "user", "content": "hi", "images": ["aGk="]}],
            "format": "json", "keep_alive": "5m"
        });
        let req: ChatRequest =
            serde_json::from_value(body.clone()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(req.messages[0].extra["images"][0], "aGk=");
        let back = serde_json::to_value(&req).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, body);
    }

    #[test]
    fn options_are_merged_into_one_object() {
        let req = GenerateRequest::new("m", "p")
            .option("temperature", 0)
            .option("num_ctx", 4096);
        let body = serde_json::to_value(&req).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            body["options"],
            serde_json::json!({"temperature": 0, "num_ctx": 4096})
        );
    }
}
