//! Configuration: built-in defaults < TOML file < `FOREMAN_*` environment < command-line flags.
//!
//! The layers are merged with figment and extracted into [`Config`], which rejects unknown keys
//! (`deny_unknown_fields`). Every error is reported as a [`ConfigProblem`] naming the key, the
//! source (file path, environment variable or flag) and the problem, so an operator can fix it
//! from one line. See ADR 0002 for the precedence rules.
//!
//! Environment names follow one rule: `FOREMAN_` + the key upper-cased with dots replaced by
//! underscores (`target.url` → `FOREMAN_TARGET_URL`). [`SETTINGS`] lists every key; it is the
//! single source for the env mapping, the redaction of secrets and `.env.example`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Tag, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Deserialize, Deserializer, Serialize};
use url::Url;

/// Prefix of every environment variable foreman reads as configuration.
pub const ENV_PREFIX: &str = "FOREMAN_";

/// Environment variables with the prefix that are not configuration keys (CLI client settings).
const NON_CONFIG_ENV: &[&str] = &["FOREMAN_CONFIG", "FOREMAN_URL", "FOREMAN_TOKEN"];

/// One configuration key, with a one-line explanation (used by docs and `.env.example`).
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub key: &'static str,
    pub help: &'static str,
    pub secret: bool,
}

const fn setting(key: &'static str, help: &'static str) -> Setting {
    Setting {
        key,
        help,
        secret: false,
    }
}

/// Every configuration key foreman knows.
pub const SETTINGS: &[Setting] = &[
    setting("listen", "address foreman listens on"),
    setting(
        "data_dir",
        "directory for the database, lock file and artifacts",
    ),
    setting(
        "log",
        "log filter (tracing EnvFilter syntax, e.g. info or foreman=debug)",
    ),
    setting("log_format", "log format: pretty or json"),
    setting(
        "shutdown_timeout",
        "how long in-flight requests may run after SIGTERM before they are cut",
    ),
    setting("target.url", "base URL of the Ollama server foreman fronts"),
    Setting {
        key: "target.token",
        help: "bearer token sent to the target (Ollama behind an authenticating proxy)",
        secret: true,
    },
    setting(
        "target.connect_timeout",
        "how long to wait for a TCP/TLS connection to the target",
    ),
    setting(
        "target.header_timeout",
        "optional limit on the wait for response headers (none by default: loads take minutes)",
    ),
    setting(
        "target.idle_timeout",
        "longest silence allowed between two chunks of a streamed response",
    ),
    setting(
        "target.poll_interval",
        "how often the monitor polls the target while it is up",
    ),
    setting(
        "target.history_limit",
        "how many target snapshots (state and loaded-model changes) are kept",
    ),
    Setting {
        key: "api_tokens",
        help: "comma-separated bearer tokens; when set, every route but /healthz and /readyz requires one",
        secret: true,
    },
    setting(
        "request_read_timeout",
        "longest silence while reading a client's request headers or body (slowloris defence)",
    ),
    setting(
        "max_body_bytes",
        "largest request body accepted, in bytes (413 above)",
    ),
    setting(
        "max_queued_jobs",
        "queued jobs beyond which POST /jobs answers 429",
    ),
    setting(
        "worker.enabled",
        "run the job worker (false leaves jobs queued, e.g. for maintenance)",
    ),
    setting(
        "worker.scheduler",
        "drain (by model, with aging bound) or fifo (strict arrival order)",
    ),
    setting(
        "worker.max_wait",
        "aging bound: a job waiting longer makes the worker switch to its model",
    ),
    setting(
        "worker.keep_alive",
        "keep_alive sent when loading the model being drained",
    ),
    setting(
        "worker.max_attempts",
        "attempts per job before it fails (target errors; unreachable target does not count)",
    ),
    setting(
        "worker.retry_base",
        "first retry delay; doubles per attempt",
    ),
    setting(
        "worker.run_timeout",
        "longest a job may run on the target before it fails",
    ),
    setting(
        "worker.interactive_grace",
        "how long the worker defers to in-flight passthrough generations",
    ),
    setting(
        "metrics.public",
        "serve /metrics without a token even when api_tokens are set",
    ),
    setting(
        "host_metrics.enabled",
        "collect CPU, memory, temperature and GPU figures of this machine (run foreman on the target's host)",
    ),
    setting(
        "host_metrics.interval",
        "how often host figures are collected",
    ),
    setting(
        "host_metrics.history_limit",
        "how many host snapshots are kept for /status/history",
    ),
    setting(
        "host_metrics.nvidia_smi",
        "nvidia-smi command used when NVML is unavailable (empty: do not try)",
    ),
    setting(
        "host_metrics.gpu_timeout",
        "longest a GPU query may take before it is given up",
    ),
    setting(
        "host_metrics.max_memory_percent",
        "availability gate: the worker pauses above this memory use",
    ),
    setting(
        "host_metrics.max_temperature_c",
        "availability gate: the worker pauses above this CPU temperature",
    ),
    setting(
        "host_metrics.resume_margin",
        "hysteresis: the worker resumes once figures are this far below their limits",
    ),
    setting(
        "retention",
        "how long finished jobs, their events, deliveries and artifacts are kept",
    ),
    setting(
        "artifact_max_bytes",
        "largest result stored as an artifact; a larger result fails the job",
    ),
    Setting {
        key: "webhook.secret",
        help: "Standard Webhooks signing secret (whsec_...); generated into data_dir/webhook_secret when unset",
        secret: true,
    },
    setting(
        "webhook.timeout",
        "how long one webhook delivery attempt may take",
    ),
    setting(
        "webhook.schedule",
        "comma-separated delays between delivery attempts after a failure",
    ),
    setting(
        "webhook.allow_hosts",
        "comma-separated hosts webhooks may target (empty: any host the operator trusts)",
    ),
    setting(
        "worker.unload_on_switch",
        "explicitly unload the previous model (keep_alive 0) before loading the next",
    ),
    setting(
        "database.synchronous",
        "SQLite synchronous mode: full (fsync per commit) or normal",
    ),
    setting(
        "database.busy_timeout",
        "how long a SQLite connection waits for a lock",
    ),
];

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// SQLite `synchronous` setting for the write connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// fsync on every commit: an acknowledged job survives power loss.
    Full,
    /// fsync at checkpoints only: survives process crashes, may lose the last commits on power loss.
    Normal,
}

impl Synchronous {
    /// The value SQLite reports from `PRAGMA synchronous`.
    pub fn pragma_value(self) -> i64 {
        match self {
            Synchronous::Full => 2,
            Synchronous::Normal => 1,
        }
    }
}

/// A value that must never appear in logs or `config check` output.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The whole, validated configuration of the daemon.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub log: String,
    pub log_format: LogFormat,
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    pub target: TargetConfig,
    pub database: DatabaseConfig,
    /// Inbound bearer tokens; empty = no inbound auth.
    #[serde(deserialize_with = "token_list", skip_serializing_if = "Vec::is_empty")]
    pub api_tokens: Vec<Secret>,
    pub max_body_bytes: usize,
    #[serde(with = "humantime_serde")]
    pub request_read_timeout: Duration,
    pub max_queued_jobs: u64,
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    pub artifact_max_bytes: u64,
    pub worker: WorkerConfig,
    pub webhook: WebhookConfig,
    pub metrics: MetricsConfig,
    pub host_metrics: HostMetricsConfig,
}

/// Host figures and the availability gate (off by default: only meaningful when foreman runs
/// on the target's machine).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostMetricsConfig {
    pub enabled: bool,
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    pub history_limit: u32,
    pub nvidia_smi: String,
    #[serde(with = "humantime_serde")]
    pub gpu_timeout: Duration,
    pub max_memory_percent: f64,
    pub max_temperature_c: f64,
    pub resume_margin: f64,
}

impl Default for HostMetricsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            interval: Duration::from_secs(15),
            // A day at the default interval.
            history_limit: 5760,
            nvidia_smi: "nvidia-smi".into(),
            gpu_timeout: Duration::from_secs(5),
            max_memory_percent: 90.0,
            max_temperature_c: 75.0,
            resume_margin: 5.0,
        }
    }
}

/// Prometheus endpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub public: bool,
}

/// Webhook signing and delivery.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Delay before each retry; a delivery fails after `schedule.len() + 1` attempts.
    #[serde(
        deserialize_with = "duration_list",
        serialize_with = "serialize_durations"
    )]
    pub schedule: Vec<Duration>,
    #[serde(deserialize_with = "string_list")]
    pub allow_hosts: Vec<String>,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        let h = 3600;
        Self {
            secret: None,
            timeout: Duration::from_secs(15),
            schedule: [5, 300, 1800, 2 * h, 5 * h, 10 * h, 10 * h]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            allow_hosts: Vec::new(),
        }
    }
}

/// A list given as a TOML array or one comma-separated string (the environment's form).
#[derive(Deserialize)]
#[serde(untagged)]
enum ListOrString {
    One(String),
    Many(Vec<String>),
}

impl ListOrString {
    fn items(self) -> Vec<String> {
        let raw = match self {
            ListOrString::One(s) => s.split(',').map(str::to_string).collect(),
            ListOrString::Many(v) => v,
        };
        raw.into_iter()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect()
    }
}

fn string_list<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<String>, D::Error> {
    Ok(ListOrString::deserialize(de)?.items())
}

fn duration_list<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<Duration>, D::Error> {
    ListOrString::deserialize(de)?
        .items()
        .iter()
        .map(|s| {
            humantime::parse_duration(s)
                .map_err(|e| serde::de::Error::custom(format!("{s:?}: {e}")))
        })
        .collect()
}

fn serialize_durations<S: serde::Serializer>(list: &[Duration], s: S) -> Result<S::Ok, S::Error> {
    let text: Vec<String> = list
        .iter()
        .map(|d| humantime::format_duration(*d).to_string())
        .collect();
    s.collect_seq(text)
}

/// The job worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    pub enabled: bool,
    pub scheduler: crate::queue::select::Scheduler,
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    #[serde(with = "humantime_serde")]
    pub keep_alive: Duration,
    pub max_attempts: u32,
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    #[serde(with = "humantime_serde")]
    pub run_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub interactive_grace: Duration,
    pub unload_on_switch: bool,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            scheduler: crate::queue::select::Scheduler::Drain,
            max_wait: Duration::from_secs(600),
            keep_alive: Duration::from_secs(600),
            max_attempts: 3,
            retry_base: Duration::from_secs(2),
            run_timeout: Duration::from_secs(1800),
            interactive_grace: Duration::from_secs(30),
            unload_on_switch: false,
        }
    }
}

/// The one Ollama server foreman fronts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TargetConfig {
    #[serde(deserialize_with = "http_url")]
    pub url: Url,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub header_timeout: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    pub history_limit: u32,
}

/// SQLite durability and locking.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    pub synchronous: Synchronous,
    #[serde(with = "humantime_serde")]
    pub busy_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 11435)),
            data_dir: PathBuf::from("./data"),
            log: "info".into(),
            log_format: LogFormat::Pretty,
            shutdown_timeout: Duration::from_secs(25),
            target: TargetConfig::default(),
            database: DatabaseConfig::default(),
            api_tokens: Vec::new(),
            max_body_bytes: 16 * 1024 * 1024,
            request_read_timeout: Duration::from_secs(30),
            max_queued_jobs: 100_000,
            retention: Duration::from_secs(7 * 24 * 3600),
            artifact_max_bytes: 64 * 1024 * 1024,
            worker: WorkerConfig::default(),
            webhook: WebhookConfig::default(),
            metrics: MetricsConfig::default(),
            host_metrics: HostMetricsConfig::default(),
        }
    }
}

impl Default for TargetConfig {
    fn default() -> Self {
        Self {
            url: default_target_url(),
            token: None,
            connect_timeout: Duration::from_secs(5),
            header_timeout: None,
            idle_timeout: Duration::from_secs(300),
            poll_interval: Duration::from_secs(5),
            history_limit: 10_000,
        }
    }
}

fn default_target_url() -> Url {
    // A literal that always parses; the fallback keeps clippy's expect_used lint honest.
    Url::parse("http://127.0.0.1:11434").unwrap_or_else(|_| unreachable!("constant URL parses"))
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            synchronous: Synchronous::Full,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// Accepts a list of tokens or one comma-separated string (the environment's form).
fn token_list<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<Secret>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Tokens {
        One(String),
        Many(Vec<String>),
    }
    let raw = match Tokens::deserialize(de)? {
        Tokens::One(s) => s.split(',').map(str::to_string).collect(),
        Tokens::Many(v) => v,
    };
    Ok(raw
        .into_iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .map(Secret)
        .collect())
}

fn http_url<'de, D: Deserializer<'de>>(de: D) -> Result<Url, D::Error> {
    let raw = String::deserialize(de)?;
    let url = Url::parse(&raw).map_err(|e| serde::de::Error::custom(format!("{raw:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(serde::de::Error::custom(format!(
            "{raw:?}: must be an http:// or https:// URL with a host"
        )));
    }
    Ok(url)
}

impl Config {
    /// Directory of artifact files.
    pub fn artifacts_dir(&self) -> PathBuf {
        self.data_dir.join("artifacts")
    }

    /// Path of the SQLite database file.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("foreman.db")
    }

    /// The effective configuration as TOML with every secret replaced by `<redacted>`.
    pub fn redacted_toml(&self) -> String {
        let mut shown = self.clone();
        if shown.target.token.is_some() {
            shown.target.token = Some(Secret::new("<redacted>"));
        }
        if shown.webhook.secret.is_some() {
            shown.webhook.secret = Some(Secret::new("<redacted>"));
        }
        for token in &mut shown.api_tokens {
            *token = Secret::new("<redacted>");
        }
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// The environment variable that sets `key`.
pub fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replace('.', "_").to_ascii_uppercase())
}

/// Command-line flags that override configuration keys (highest precedence).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub listen: Option<String>,
    pub target: Option<String>,
    pub data_dir: Option<PathBuf>,
}

impl Overrides {
    fn flag_for(key: &str) -> &'static str {
        match key {
            "listen" => "--listen",
            "target.url" => "--target",
            "data_dir" => "--data-dir",
            _ => "a command-line flag",
        }
    }
}

/// Provider for command-line flags, named so errors can say where a bad value came from.
struct Flags(Dict);

impl Provider for Flags {
    fn metadata(&self) -> Metadata {
        Metadata::named("command-line flag")
    }
    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.0.clone()))
    }
}

impl Flags {
    fn from_overrides(o: &Overrides) -> Self {
        let mut root = Dict::new();
        if let Some(listen) = &o.listen {
            root.insert("listen".into(), Value::from(listen.clone()));
        }
        if let Some(dir) = &o.data_dir {
            root.insert(
                "data_dir".into(),
                Value::from(dir.to_string_lossy().into_owned()),
            );
        }
        if let Some(target) = &o.target {
            let mut t = Dict::new();
            t.insert("url".into(), Value::from(target.clone()));
            root.insert("target".into(), Value::Dict(Tag::Default, t));
        }
        Flags(root)
    }
}

/// One configuration error, with everything needed to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigProblem {
    /// Dotted key, e.g. `target.url`; empty when the whole source is broken (invalid TOML).
    pub key: String,
    /// Where the bad value came from: a file path, an environment variable or a flag.
    pub origin: String,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "config error in {}: {}", self.origin, self.message)
        } else {
            write!(
                f,
                "config error: key `{}` from {}: {}",
                self.key, self.origin, self.message
            )
        }
    }
}

/// All problems found while loading the configuration.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError(pub Vec<ConfigProblem>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("\n"))
    }
}

/// A loaded configuration plus what the loader noticed along the way.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    /// The TOML file that was read, if any.
    pub file: Option<PathBuf>,
    /// Non-fatal observations (unknown `FOREMAN_*` variables), logged once tracing is up.
    pub warnings: Vec<String>,
}

/// Loads the configuration from every layer, using the process environment.
pub fn load(overrides: &Overrides) -> Result<Loaded, ConfigError> {
    let env: BTreeMap<String, String> = std::env::vars().collect();
    load_with(overrides, &env, &default_search_path(&env))
}

/// The config files tried, in order, when `--config` is not given.
pub fn default_search_path(env: &BTreeMap<String, String>) -> Vec<PathBuf> {
    let mut paths = vec![PathBuf::from("./foreman.toml")];
    let xdg = env
        .get("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| env.get("HOME").map(|h| Path::new(h).join(".config")));
    if let Some(dir) = xdg {
        paths.push(dir.join("foreman/foreman.toml"));
    }
    paths.push(PathBuf::from("/etc/foreman/foreman.toml"));
    paths
}

/// Loads the configuration from explicit inputs (testable without touching the process).
pub fn load_with(
    overrides: &Overrides,
    env: &BTreeMap<String, String>,
    search_path: &[PathBuf],
) -> Result<Loaded, ConfigError> {
    let file = match &overrides.config_file {
        Some(path) if !path.is_file() => {
            return Err(ConfigError(vec![ConfigProblem {
                key: String::new(),
                origin: path.display().to_string(),
                message: "config file not found (given by --config or FOREMAN_CONFIG)".into(),
            }]));
        }
        Some(path) => Some(path.clone()),
        None => search_path.iter().find(|p| p.is_file()).cloned(),
    };

    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    if let Some(path) = &file {
        figment = figment.merge(Toml::file(path));
    }
    let (env_dict, warnings) = env_layer(env);
    figment = figment
        .merge(EnvLayer(env_dict))
        .merge(Flags::from_overrides(overrides));

    let config: Config = figment.extract().map_err(|e| ConfigError(problems(e)))?;
    Ok(Loaded {
        config,
        file,
        warnings,
    })
}

/// Environment variables mapped to configuration keys by the rule in [`env_name`].
struct EnvLayer(Dict);

impl Provider for EnvLayer {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable")
    }
    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.0.clone()))
    }
}

fn env_layer(env: &BTreeMap<String, String>) -> (Dict, Vec<String>) {
    let mut root = Dict::new();
    let mut warnings = Vec::new();
    for (name, raw) in env.iter().filter(|(n, _)| n.starts_with(ENV_PREFIX)) {
        if NON_CONFIG_ENV.contains(&name.as_str()) {
            continue;
        }
        match SETTINGS.iter().find(|s| env_name(s.key) == *name) {
            Some(s) => insert_dotted(&mut root, s.key, env_value(raw)),
            None => warnings.push(format!(
                "unknown environment variable {name} ignored (not a foreman setting)"
            )),
        }
    }
    (root, warnings)
}

/// Parses an env value like figment's `Env` does (numbers and booleans typed), so that
/// `FOREMAN_LISTEN=5` is reported as a wrong type rather than silently accepted.
fn env_value(raw: &str) -> Value {
    raw.parse::<Value>().unwrap_or_else(|_| Value::from(raw))
}

fn insert_dotted(root: &mut Dict, key: &str, value: Value) {
    match key.split_once('.') {
        None => {
            root.insert(key.to_string(), value);
        }
        Some((head, rest)) => {
            let entry = root
                .entry(head.to_string())
                .or_insert_with(|| Value::Dict(Tag::Default, Dict::new()));
            if let Value::Dict(_, child) = entry {
                insert_dotted(child, rest, value);
            }
        }
    }
}

fn problems(err: figment::Error) -> Vec<ConfigProblem> {
    err.into_iter()
        .map(|e| {
            let mut path = e.path.clone();
            // figment usually includes the unknown field in the path already; make sure.
            if let figment::error::Kind::UnknownField(field, _) = &e.kind
                && path.last() != Some(field)
            {
                path.push(field.clone());
            }
            let key = path.join(".");
            let origin = describe_source(e.metadata.as_ref(), &key);
            ConfigProblem {
                key,
                origin,
                message: one_line(&e.kind.to_string()),
            }
        })
        .collect()
}

/// Folds a multi-line message (TOML parse errors draw a caret diagram) into one line: the
/// first line says where, the last says what.
fn one_line(message: &str) -> String {
    let lines: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    match lines.as_slice() {
        [] => String::new(),
        [only] => (*only).to_string(),
        [first, .., last] => format!("{first}: {last}"),
    }
}

fn describe_source(meta: Option<&Metadata>, key: &str) -> String {
    let Some(meta) = meta else {
        return "configuration".into();
    };
    match meta.name.as_ref() {
        "environment variable" => format!("environment variable {}", env_name(key)),
        "command-line flag" => format!("command-line flag {}", Overrides::flag_for(key)),
        _ => match &meta.source {
            Some(figment::Source::File(path)) => format!("file {}", path.display()),
            _ => meta.name.to_string(),
        },
    }
}

/// Creates the data directory if needed and proves it is writable.
pub fn prepare_data_dir(config: &Config) -> Result<(), ConfigProblem> {
    let dir = &config.data_dir;
    let fail = |message: String| ConfigProblem {
        key: "data_dir".into(),
        origin: format!("value {}", dir.display()),
        message,
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create directory: {e}")))?;
    let probe = dir.join(".foreman-write-probe");
    std::fs::write(&probe, b"ok").map_err(|e| fail(format!("directory is not writable: {e}")))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn write_toml(dir: &Path, body: &str) -> PathBuf {
        let path = dir.join("foreman.toml");
        std::fs::write(&path, body).unwrap();
        path
    }

    #[test]
    fn defaults_apply_without_any_source() {
        let loaded = load_with(&Overrides::default(), &env(&[]), &[]).unwrap();
        assert_eq!(loaded.config.listen.to_string(), "127.0.0.1:11435");
        assert_eq!(loaded.config.target.url.as_str(), "http://127.0.0.1:11434/");
        assert_eq!(loaded.config.data_dir, PathBuf::from("./data"));
        assert_eq!(loaded.config.shutdown_timeout, Duration::from_secs(25));
        assert_eq!(loaded.config.database.synchronous, Synchronous::Full);
        assert!(loaded.file.is_none());
    }

    #[test]
    fn file_beats_defaults_env_beats_file_and_flags_beat_env() {
        let dir = tempfile::tempdir().unwrap();
        let file = write_toml(
            dir.path(),
            "listen = \"127.0.0.1:1000\"\ndata_dir = \"/tmp/from-file\"\nshutdown_timeout = \"10m\"\n[target]\nurl = \"http://file:1\"\n",
        );
        let e = env(&[
            ("FOREMAN_DATA_DIR", "/tmp/from-env"),
            ("FOREMAN_TARGET_URL", "http://env:2"),
        ]);
        let flags = Overrides {
            config_file: Some(file),
            target: Some("http://flag:3".into()),
            ..Overrides::default()
        };
        let c = load_with(&flags, &e, &[]).unwrap().config;
        assert_eq!(c.listen.to_string(), "127.0.0.1:1000", "file over default");
        assert_eq!(
            c.shutdown_timeout,
            Duration::from_secs(600),
            "humane duration"
        );
        assert_eq!(c.data_dir, PathBuf::from("/tmp/from-env"), "env over file");
        assert_eq!(c.target.url.as_str(), "http://flag:3/", "flag over env");
    }

    #[test]
    fn search_path_takes_the_first_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let second = dir.path().join("b.toml");
        std::fs::write(&second, "log = \"debug\"\n").unwrap();
        let third = dir.path().join("c.toml");
        std::fs::write(&third, "log = \"trace\"\n").unwrap();
        let search = vec![dir.path().join("missing.toml"), second.clone(), third];
        let loaded = load_with(&Overrides::default(), &env(&[]), &search).unwrap();
        assert_eq!(loaded.config.log, "debug");
        assert_eq!(loaded.file, Some(second));
    }

    #[test]
    fn xdg_config_home_wins_over_home() {
        let e = env(&[("XDG_CONFIG_HOME", "/x"), ("HOME", "/h")]);
        let paths = default_search_path(&e);
        assert_eq!(paths[1], PathBuf::from("/x/foreman/foreman.toml"));
        let paths = default_search_path(&env(&[("HOME", "/h")]));
        assert_eq!(paths[1], PathBuf::from("/h/.config/foreman/foreman.toml"));
    }

    #[test]
    fn unknown_key_in_file_names_key_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = write_toml(dir.path(), "[target]\nurll = \"http://x\"\n");
        let flags = Overrides {
            config_file: Some(file.clone()),
            ..Overrides::default()
        };
        let err = load_with(&flags, &env(&[]), &[]).unwrap_err();
        let p = &err.0[0];
        assert_eq!(p.key, "target.urll");
        assert_eq!(p.origin, format!("file {}", file.display()));
        assert!(p.message.contains("unknown field"), "{}", p.message);
    }

    #[test]
    fn wrong_type_from_env_names_the_variable() {
        let err =
            load_with(&Overrides::default(), &env(&[("FOREMAN_LISTEN", "5")]), &[]).unwrap_err();
        assert_eq!(err.0[0].key, "listen");
        assert_eq!(err.0[0].origin, "environment variable FOREMAN_LISTEN");
    }

    #[test]
    fn wrong_type_in_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let file = write_toml(dir.path(), "listen = 5\n");
        let flags = Overrides {
            config_file: Some(file),
            ..Overrides::default()
        };
        let err = load_with(&flags, &env(&[]), &[]).unwrap_err();
        assert_eq!(err.0[0].key, "listen");
        assert!(err.to_string().contains("listen"));
    }

    #[test]
    fn unparsable_duration_is_reported_with_its_key() {
        let err = load_with(
            &Overrides::default(),
            &env(&[("FOREMAN_SHUTDOWN_TIMEOUT", "ten minutes")]),
            &[],
        )
        .unwrap_err();
        assert_eq!(err.0[0].key, "shutdown_timeout");
    }

    #[test]
    fn invalid_toml_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = write_toml(dir.path(), "listen = \n[[[");
        let flags = Overrides {
            config_file: Some(file.clone()),
            ..Overrides::default()
        };
        let err = load_with(&flags, &env(&[]), &[]).unwrap_err();
        assert!(
            err.to_string().contains(&file.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn bad_flag_value_names_the_flag() {
        let flags = Overrides {
            target: Some("ftp://nope".into()),
            ..Overrides::default()
        };
        let err = load_with(&flags, &env(&[]), &[]).unwrap_err();
        assert_eq!(err.0[0].key, "target.url");
        assert_eq!(err.0[0].origin, "command-line flag --target");
    }

    #[test]
    fn unknown_foreman_env_var_is_a_warning_not_an_error() {
        let loaded = load_with(
            &Overrides::default(),
            &env(&[("FOREMAN_LISTNE", "x"), ("FOREMAN_URL", "http://client")]),
            &[],
        )
        .unwrap();
        assert_eq!(loaded.warnings.len(), 1);
        assert!(loaded.warnings[0].contains("FOREMAN_LISTNE"));
    }

    #[test]
    fn secrets_are_redacted_in_printed_config_and_debug() {
        let c = load_with(
            &Overrides::default(),
            &env(&[("FOREMAN_TARGET_TOKEN", "s3cret-value")]),
            &[],
        )
        .unwrap()
        .config;
        assert_eq!(c.target.token.as_ref().unwrap().expose(), "s3cret-value");
        assert!(!c.redacted_toml().contains("s3cret-value"));
        assert!(c.redacted_toml().contains("<redacted>"));
        assert!(!format!("{c:?}").contains("s3cret-value"));
    }

    #[test]
    fn every_setting_is_accepted_from_its_env_variable() {
        // A value of the right type per key proves the env mapping covers every setting.
        let sample = |key: &str| match key {
            "listen" => "127.0.0.1:1",
            "data_dir" => "/tmp/x",
            "log" => "debug",
            "log_format" => "json",
            "shutdown_timeout" | "database.busy_timeout" | "request_read_timeout" => "3s",
            "target.url" => "http://h:1",
            "target.token" => "t",
            "database.synchronous" => "normal",
            "target.connect_timeout"
            | "target.header_timeout"
            | "target.idle_timeout"
            | "target.poll_interval" => "2s",
            "target.history_limit" => "10",
            "api_tokens" => "a,b",
            "max_body_bytes" | "max_queued_jobs" | "worker.max_attempts" | "artifact_max_bytes" => {
                "7"
            }
            "retention" => "3d",
            "worker.enabled" | "worker.unload_on_switch" | "metrics.public" => "true",
            "worker.scheduler" => "fifo",
            "webhook.secret" => "whsec_c2VjcmV0c2VjcmV0c2VjcmV0",
            "webhook.timeout" => "3s",
            "webhook.schedule" => "1s, 5s,1m",
            "webhook.allow_hosts" => "a.example,b.example",
            "worker.max_wait"
            | "worker.keep_alive"
            | "worker.retry_base"
            | "worker.run_timeout"
            | "worker.interactive_grace" => "1m",
            "host_metrics.enabled" => "true",
            "host_metrics.interval" | "host_metrics.gpu_timeout" => "2s",
            "host_metrics.history_limit" => "100",
            "host_metrics.nvidia_smi" => "/usr/bin/nvidia-smi",
            "host_metrics.max_memory_percent"
            | "host_metrics.max_temperature_c"
            | "host_metrics.resume_margin" => "80.5",
            other => panic!("add a sample value for new setting {other}"),
        };
        for s in SETTINGS {
            let e = env(&[(env_name(s.key).as_str(), sample(s.key))]);
            let loaded = load_with(&Overrides::default(), &e, &[]);
            assert!(loaded.is_ok(), "{}: {:?}", s.key, loaded.err());
            assert!(loaded.unwrap().warnings.is_empty(), "{}", s.key);
        }
    }

    #[test]
    fn api_tokens_accept_a_comma_separated_env_value_or_a_list() {
        let c = load_with(
            &Overrides::default(),
            &env(&[("FOREMAN_API_TOKENS", "one, two,,")]),
            &[],
        )
        .unwrap()
        .config;
        let tokens: Vec<&str> = c.api_tokens.iter().map(Secret::expose).collect();
        assert_eq!(tokens, ["one", "two"]);
        assert!(!c.redacted_toml().contains("one"));
        let dir = tempfile::tempdir().unwrap();
        let file = write_toml(dir.path(), "api_tokens = [\"x\", \"y\"]\n");
        let flags = Overrides {
            config_file: Some(file),
            ..Overrides::default()
        };
        assert_eq!(
            load_with(&flags, &env(&[]), &[])
                .unwrap()
                .config
                .api_tokens
                .len(),
            2
        );
    }

    #[test]
    fn unwritable_data_dir_is_a_problem_naming_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"x").unwrap();
        let config = Config {
            data_dir: blocker.join("sub"),
            ..Config::default()
        };
        let p = prepare_data_dir(&config).unwrap_err();
        assert_eq!(p.key, "data_dir");
    }
}
