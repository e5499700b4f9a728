//! Simulator configuration: the models it knows and the scheduler knobs (ollama-wire.md §6.1).
//!
//! Durations here are *simulated* time. The clock's `time_scale` maps them to real time, so a
//! 6 s model load with `time_scale = 0.01` takes 60 ms of wall time while every duration the
//! simulator reports (`load_duration`, …) still says 6 s.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One model the simulator can serve.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSpec {
    /// Full name with tag, e.g. `llama3.2:latest`.
    pub name: String,
    /// Bytes on disk (`/api/tags` `size`); the runner needs `size * 1.2` of memory.
    pub size: u64,
    /// Cold load time (simulated).
    #[serde(with = "humantime_serde")]
    pub load_time: Duration,
    /// Generation speed in tokens per second; 0 means unlimited.
    pub tokens_per_sec: f64,
    /// `completion`, `tools`, `thinking`, `vision`, `embedding`, `insert`.
    pub capabilities: Vec<String>,
    pub family: String,
    pub parameter_size: String,
    pub quantization_level: String,
    /// Maximum context the model supports (reported in `/api/show`).
    pub context_length: u64,
    /// Vector size for embedding models.
    pub embedding_length: usize,
}

impl Default for ModelSpec {
    fn default() -> Self {
        Self {
            name: "model:latest".into(),
            size: 2_000_000_000,
            load_time: Duration::from_secs(5),
            tokens_per_sec: 40.0,
            capabilities: vec!["completion".into()],
            family: "llama".into(),
            parameter_size: "3B".into(),
            quantization_level: "Q4_K_M".into(),
            context_length: 131_072,
            embedding_length: 0,
        }
    }
}

impl ModelSpec {
    /// A chat model with the given name, size and load time (handy in tests).
    pub fn chat(name: &str, size: u64, load_time: Duration) -> Self {
        Self {
            name: canonical_name(name),
            size,
            load_time,
            capabilities: vec!["completion".into(), "tools".into()],
            ..Self::default()
        }
    }

    /// An embedding model.
    pub fn embedding(name: &str, size: u64, load_time: Duration, dims: usize) -> Self {
        Self {
            name: canonical_name(name),
            size,
            load_time,
            capabilities: vec!["embedding".into()],
            family: "bert".into(),
            parameter_size: "23M".into(),
            quantization_level: "F16".into(),
            context_length: 512,
            embedding_length: dims,
            ..Self::default()
        }
    }

    pub fn has(&self, capability: &str) -> bool {
        self.capabilities.iter().any(|c| c == capability)
    }

    /// Memory a loaded runner occupies (weights plus KV cache).
    pub fn runner_size(&self) -> u64 {
        self.size + self.size / 5
    }

    /// Deterministic hex digest derived from the name (64 hex chars like Ollama's sha256).
    pub fn digest(&self) -> String {
        let mut out = String::with_capacity(64);
        let mut h = crate::text::fnv1a(self.name.as_bytes());
        for _ in 0..4 {
            h = crate::text::splitmix(h);
            out.push_str(&format!("{h:016x}"));
        }
        out
    }
}

/// Adds `:latest` to a name without a tag, as Ollama's name parser does.
pub fn canonical_name(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

/// Everything the simulator needs to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    pub listen: SocketAddr,
    /// Version reported by `/api/version`.
    pub version: String,
    /// Real seconds per simulated second (0.01 = 100× faster). 0 means no waiting at all.
    pub time_scale: f64,
    /// Zero-delay mode: instant loads, unlimited token rate, many slots (for proxy overhead).
    pub zero_delay: bool,
    pub models: Vec<ModelSpec>,
    /// Names `/api/pull` can fetch in addition to the installed models.
    pub registry: Vec<String>,
    /// Total (V)RAM for runners, in bytes.
    pub memory_capacity: u64,
    /// A model fits when its runner needs at most this share of free memory (Ollama: 0.8).
    pub fit_ratio: f64,
    /// `OLLAMA_NUM_PARALLEL`: concurrent requests per loaded model.
    pub num_parallel: usize,
    /// `OLLAMA_MAX_LOADED_MODELS`.
    pub max_loaded_models: usize,
    /// `OLLAMA_MAX_QUEUE`: requests waiting for a load before 503.
    pub max_queue: usize,
    /// `OLLAMA_KEEP_ALIVE`.
    #[serde(with = "humantime_serde")]
    pub default_keep_alive: Duration,
    /// VRAM-recovery wait after each unload forced by a swap (simulated).
    #[serde(with = "humantime_serde")]
    pub swap_penalty: Duration,
    /// Tokens generated when the request sets no `num_predict`.
    pub default_tokens: usize,
    /// Default `num_ctx` (reported as `context_length` in `/api/ps`).
    pub default_num_ctx: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 11434)),
            version: "0.33.0".into(),
            time_scale: 1.0,
            zero_delay: false,
            models: default_models(),
            registry: vec!["tinyllama:latest".into()],
            memory_capacity: 16 * 1024 * 1024 * 1024,
            fit_ratio: 0.8,
            num_parallel: 1,
            max_loaded_models: 3,
            max_queue: 512,
            default_keep_alive: Duration::from_secs(300),
            swap_penalty: Duration::ZERO,
            default_tokens: 24,
            default_num_ctx: 4096,
        }
    }
}

fn default_models() -> Vec<ModelSpec> {
    vec![
        ModelSpec {
            name: "llama3.2:latest".into(),
            size: 2_019_393_189,
            load_time: Duration::from_secs(6),
            tokens_per_sec: 40.0,
            capabilities: vec!["completion".into(), "tools".into()],
            parameter_size: "3.2B".into(),
            ..ModelSpec::default()
        },
        ModelSpec {
            name: "qwen3:8b".into(),
            size: 5_225_387_923,
            load_time: Duration::from_secs(10),
            tokens_per_sec: 25.0,
            capabilities: vec!["completion".into(), "tools".into(), "thinking".into()],
            family: "qwen3".into(),
            parameter_size: "8.2B".into(),
            context_length: 40_960,
            ..ModelSpec::default()
        },
        ModelSpec {
            name: "gemma3:4b".into(),
            size: 3_338_801_804,
            load_time: Duration::from_secs(5),
            tokens_per_sec: 35.0,
            capabilities: vec!["completion".into(), "vision".into()],
            family: "gemma3".into(),
            parameter_size: "4.3B".into(),
            ..ModelSpec::default()
        },
        ModelSpec::embedding("all-minilm", 45_960_996, Duration::from_millis(500), 384),
    ]
}

impl SimConfig {
    /// Applies zero-delay mode: instant loads, unlimited token rate, generous slots and queue.
    pub fn effective(mut self) -> Self {
        if self.zero_delay {
            self.time_scale = 0.0;
            self.num_parallel = self.num_parallel.max(4096);
            self.swap_penalty = Duration::ZERO;
            for m in &mut self.models {
                m.load_time = Duration::ZERO;
                m.tokens_per_sec = 0.0;
            }
        }
        self
    }

    /// Finds an installed model by request name (`llama3.2` matches `llama3.2:latest`).
    pub fn model(&self, name: &str) -> Option<&ModelSpec> {
        let wanted = canonical_name(name);
        self.models.iter().find(|m| m.name == wanted)
    }
}
