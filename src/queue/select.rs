//! Drain-by-model: which key the worker serves next. A pure function over per-key summaries
//! (one row per key with queued jobs), so it is table-tested without a database and stays fast
//! whatever the queue depth.
//!
//! Order of rules:
//! 1. `fifo` scheduler: the key holding the oldest job, always.
//! 2. Aging bound: another key whose oldest job waited longer than `max_wait` wins (the oldest
//!    such job first), so nothing starves.
//! 3. After interactive (passthrough) traffic, the key it used: Ollama just loaded that model.
//! 4. Stay on the current key while it has queued jobs (its model is resident).
//! 5. A key whose model the target reports as loaded.
//! 6. The key holding the oldest job.

/// Summary of one drain key with queued jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub key: String,
    /// Canonical model name (`llama3.2:latest`).
    pub model: String,
    pub queued: i64,
    pub oldest_seq: i64,
    pub oldest_at_ms: i64,
}

/// Scheduler choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheduler {
    /// Drain by model with an aging bound (default).
    Drain,
    /// Strict arrival order.
    Fifo,
}

/// Everything the policy looks at besides the keys.
#[derive(Debug, Clone, Default)]
pub struct Context<'a> {
    pub current: Option<&'a str>,
    /// Model of passthrough traffic seen since the worker's last pick (canonical name).
    pub interactive_model: Option<&'a str>,
    pub loaded_models: &'a [String],
    pub now_ms: i64,
    pub max_wait_ms: i64,
}

/// Picks the key to serve next; `None` when nothing is queued.
pub fn choose<'k>(
    keys: &'k [KeyInfo],
    scheduler: Scheduler,
    cx: &Context<'_>,
) -> Option<&'k KeyInfo> {
    let oldest = |it: &mut dyn Iterator<Item = &'k KeyInfo>| it.min_by_key(|k| k.oldest_seq);
    if scheduler == Scheduler::Fifo {
        return oldest(&mut keys.iter());
    }
    let starving = keys
        .iter()
        .filter(|k| Some(k.key.as_str()) != cx.current)
        .filter(|k| cx.now_ms - k.oldest_at_ms > cx.max_wait_ms);
    if let Some(k) = oldest(&mut starving.into_iter()) {
        return Some(k);
    }
    if let Some(model) = cx.interactive_model
        && let Some(k) = oldest(&mut keys.iter().filter(|k| k.model == model))
    {
        return Some(k);
    }
    if let Some(k) = keys.iter().find(|k| Some(k.key.as_str()) == cx.current) {
        return Some(k);
    }
    let loaded = keys.iter().filter(|k| cx.loaded_models.contains(&k.model));
    if let Some(k) = oldest(&mut loaded.into_iter()) {
        return Some(k);
    }
    oldest(&mut keys.iter())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, oldest_seq: i64, oldest_at_ms: i64) -> KeyInfo {
        KeyInfo {
            key: name.into(),
            model: name.split('|').next().unwrap_or(name).into(),
            queued: 1,
            oldest_seq,
            oldest_at_ms,
        }
    }

    const MIN: i64 = 60_000;

    #[test]
    fn selection_table() {
        let keys = vec![
            key("a", 1, 0),
            key("b", 2, MIN),
            key("c|num_ctx=8192", 3, 2 * MIN),
        ];
        let loaded_c = vec!["c".to_string()];
        let loaded_b = vec!["b".to_string()];
        // (name, scheduler, current, interactive, loaded, now, expected)
        type Case<'a> = (
            &'a str,
            Scheduler,
            Option<&'a str>,
            Option<&'a str>,
            &'a [String],
            i64,
            &'a str,
        );
        let cases: Vec<Case<'_>> = vec![
            (
                "nothing current: oldest job",
                Scheduler::Drain,
                None,
                None,
                &[],
                3 * MIN,
                "a",
            ),
            (
                "stay on the current key",
                Scheduler::Drain,
                Some("b"),
                None,
                &[],
                3 * MIN,
                "b",
            ),
            (
                "prefer a resident model",
                Scheduler::Drain,
                None,
                None,
                &loaded_c,
                3 * MIN,
                "c|num_ctx=8192",
            ),
            (
                "current beats resident",
                Scheduler::Drain,
                Some("b"),
                None,
                &loaded_c,
                3 * MIN,
                "b",
            ),
            (
                "interactive beats resident",
                Scheduler::Drain,
                None,
                Some("b"),
                &loaded_c,
                3 * MIN,
                "b",
            ),
            (
                "interactive beats current",
                Scheduler::Drain,
                Some("a"),
                Some("b"),
                &[],
                3 * MIN,
                "b",
            ),
            (
                "unqueued interactive model is ignored",
                Scheduler::Drain,
                Some("b"),
                Some("x"),
                &[],
                3 * MIN,
                "b",
            ),
            (
                "aging bound beats current",
                Scheduler::Drain,
                Some("b"),
                None,
                &loaded_b,
                11 * MIN,
                "a",
            ),
            (
                "oldest starving first",
                Scheduler::Drain,
                Some("zz"),
                None,
                &[],
                13 * MIN,
                "a",
            ),
            (
                "current exempt from aging",
                Scheduler::Drain,
                Some("a"),
                None,
                &[],
                11 * MIN + 1,
                "b",
            ),
            (
                "fifo ignores residency",
                Scheduler::Fifo,
                Some("b"),
                Some("c"),
                &loaded_c,
                3 * MIN,
                "a",
            ),
        ];
        for (name, scheduler, current, interactive, loaded, now, expected) in cases {
            let cx = Context {
                current,
                interactive_model: interactive,
                loaded_models: loaded,
                now_ms: now,
                max_wait_ms: 10 * MIN,
            };
            let got = choose(&keys, scheduler, &cx).map(|k| k.key.as_str());
            assert_eq!(got, Some(expected), "{name}");
        }
    }

    #[test]
    fn an_empty_queue_chooses_nothing() {
        assert!(choose(&[], Scheduler::Drain, &Context::default()).is_none());
    }
}
