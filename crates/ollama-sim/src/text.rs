//! Deterministic output: the same model + prompt + seed always yields the same tokens, token
//! counts and embeddings, so tests can compare runs and benchmarks are repeatable.

/// Words the simulated models "say". A few carry `<`, `>` and `&` so Go-style escaping is
/// exercised by ordinary output.
const VOCAB: &[&str] = &[
    "The", "model", "answers", "with", "care", "and", "a", "few", "plain", "words", "about",
    "queues", "streams", "tokens", "latency", "<b>", "loads", "&", "memory", "->", "so", "every",
    "request", "is", "served", "in", "order", "while", "the", "GPU", "stays", "warm", "today",
    "because", "batches", "drain", "by", "key", "quickly", "and", "safely", "again", ".", ",",
];

/// FNV-1a, for seeding.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// SplitMix64 step: a tiny, good-enough PRNG.
pub fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A deterministic stream of token strings.
#[derive(Debug, Clone)]
pub struct Tokens {
    state: u64,
    first: bool,
}

impl Tokens {
    pub fn new(model: &str, prompt: &str, seed: i64) -> Self {
        let mut key = Vec::with_capacity(model.len() + prompt.len() + 8);
        key.extend_from_slice(model.as_bytes());
        key.push(0);
        key.extend_from_slice(prompt.as_bytes());
        key.extend_from_slice(&seed.to_le_bytes());
        Self {
            state: fnv1a(&key),
            first: true,
        }
    }
}

impl Iterator for Tokens {
    type Item = String;
    fn next(&mut self) -> Option<String> {
        self.state = splitmix(self.state);
        let word = VOCAB[(self.state % VOCAB.len() as u64) as usize];
        let token = if self.first {
            word.to_string()
        } else {
            format!(" {word}")
        };
        self.first = false;
        Some(token)
    }
}

/// Approximate prompt token count: words × 1.3 plus template overhead, never zero.
pub fn prompt_tokens(text: &str) -> u64 {
    let words = text.split_whitespace().count() as u64;
    words + words * 3 / 10 + 8
}

/// A deterministic, L2-normalised embedding.
pub fn embedding(model: &str, input: &str, dims: usize) -> Vec<f32> {
    let mut state = fnv1a(format!("{model}\0{input}").as_bytes());
    let raw: Vec<f64> = (0..dims.max(1))
        .map(|_| {
            state = splitmix(state);
            (state as f64 / u64::MAX as f64) * 2.0 - 1.0
        })
        .collect();
    let norm = raw
        .iter()
        .map(|v| v * v)
        .sum::<f64>()
        .sqrt()
        .max(f64::MIN_POSITIVE);
    raw.iter().map(|v| (v / norm) as f32).collect()
}

/// An id like Ollama's `toolCallId()`: `call_` + 8 chars of `[a-z0-9]`.
pub fn tool_call_id(seed: u64) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut s = seed;
    let tail: String = (0..8)
        .map(|_| {
            s = splitmix(s);
            ALPHABET[(s % ALPHABET.len() as u64) as usize] as char
        })
        .collect();
    format!("call_{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_deterministic_per_model_prompt_and_seed() {
        let a: Vec<_> = Tokens::new("m", "hi", 1).take(10).collect();
        let b: Vec<_> = Tokens::new("m", "hi", 1).take(10).collect();
        let c: Vec<_> = Tokens::new("m", "hi", 2).take(10).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn embeddings_are_unit_length_and_deterministic() {
        let v = embedding("m", "hello", 384);
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
        assert_eq!(v, embedding("m", "hello", 384));
        assert_ne!(v, embedding("m", "hello!", 384));
    }

    #[test]
    fn tool_call_ids_have_ollamas_shape() {
        let id = tool_call_id(7);
        assert_eq!(id.len(), 13);
        assert!(
            id[5..]
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
    }
}
