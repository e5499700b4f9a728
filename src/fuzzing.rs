//! Fuzz harnesses: the bodies of the `cargo fuzz` targets in `fuzz/` (run there with
//! libFuzzer on nightly), also run on stable by this module's tests over generated and mutated
//! inputs, so CI exercises them on every run. Each harness panics when an invariant breaks.

use axum::response::IntoResponse;
use foreman_api::jobs::{JobKind, SubmitJob};

use crate::worker::assemble::Assembler;

/// Inputs above this size skip the chunking invariant: a line longer than the assembler's
/// 8 MB limit is refused as soon as the limit is seen, which depends on where chunks end.
const CHUNKING_LIMIT: usize = 1 << 20;

/// The NDJSON assembler never panics, and how the bytes are split into chunks never changes
/// the outcome (the target's TCP segments are arbitrary). The first byte picks the job kind
/// and the chunk size.
pub fn assembler(data: &[u8]) {
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let kind = [JobKind::Chat, JobKind::Generate, JobKind::Embed][usize::from(selector) % 3];
    let whole = assemble(kind, [stream]);
    if stream.len() > CHUNKING_LIMIT {
        return;
    }
    let chunk = usize::from(selector / 3) % 13 + 1;
    let split = assemble(kind, stream.chunks(chunk));
    assert_eq!(whole, split, "chunks of {chunk} bytes changed the outcome");
    let bytewise = assemble(kind, stream.chunks(1));
    assert_eq!(whole, bytewise, "byte-by-byte chunks changed the outcome");
}

fn assemble<'a>(
    kind: JobKind,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Result<serde_json::Value, crate::worker::assemble::AssembleError> {
    let mut assembler = Assembler::new(kind);
    for chunk in chunks {
        assembler.push(chunk)?;
    }
    assembler.finish()
}

/// A `POST /jobs` body is either accepted with a non-empty model and a kind, or refused with
/// a 4xx; never a panic, never a 5xx. An accepted body survives a serialise/parse round trip.
pub fn job_request(data: &[u8]) {
    let outcome = crate::http::jobs::parse::<SubmitJob>(data)
        .and_then(|submit| crate::http::jobs::validate(&submit).map(|v| (submit, v)));
    match outcome {
        Ok((submit, (kind, model))) => {
            assert!(!model.trim().is_empty(), "accepted without a model");
            assert!(submit.kind.is_none_or(|k| k == kind), "kind changed");
            let again = serde_json::to_vec(&submit)
                .map(|bytes| crate::http::jobs::parse::<SubmitJob>(&bytes));
            match again {
                Ok(Ok(reparsed)) => assert_eq!(reparsed, submit, "round trip changed the job"),
                other => panic!("an accepted job does not round-trip: {other:?}"),
            }
        }
        Err(e) => {
            let status = e.into_response().status();
            assert!(status.is_client_error(), "refused with {status}");
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Valid streams of each kind, as the target sends them.
    fn seeds() -> Vec<Vec<u8>> {
        let chat = concat!(
            r#"{"model":"m","created_at":"t","message":{"role":"assistant","content":"Hel"},"done":false}"#,
            "\n",
            r#"{"model":"m","created_at":"t","message":{"role":"assistant","content":"lo","thinking":"hm"},"done":false}"#,
            "\n",
            r#"{"model":"m","created_at":"t","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"f","arguments":{}}}]},"done":false}"#,
            "\n",
            r#"{"model":"m","created_at":"t","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","eval_count":2}"#,
            "\n",
        );
        let generate = concat!(
            r#"{"model":"m","created_at":"t","response":"a","done":false}"#,
            "\n",
            r#"{"model":"m","created_at":"t","response":"b","done":true,"context":[1,2],"eval_count":2}"#,
            "\n",
        );
        let embed = r#"{"model":"m","embeddings":[[0.1,0.2]],"total_duration":1}"#;
        let error = concat!(
            r#"{"model":"m","response":"a","done":false}"#,
            "\n",
            r#"{"error":"boom"}"#,
            "\n"
        );
        [chat, generate, embed, error]
            .iter()
            .flat_map(|s| (0u8..3).map(move |k| [&[k][..], s.as_bytes()].concat()))
            .collect()
    }

    /// A random edit: flip, insert, delete, truncate, duplicate a slice, or splice another seed.
    fn mutate(rng: &mut StdRng, input: &[u8], other: &[u8]) -> Vec<u8> {
        let mut out = input.to_vec();
        for _ in 0..rng.random_range(1..4) {
            let at = if out.is_empty() {
                0
            } else {
                rng.random_range(0..out.len())
            };
            match rng.random_range(0..6) {
                0 if !out.is_empty() => out[at] ^= 1 << rng.random_range(0..8),
                1 => out.insert(
                    at,
                    *b"{}[]\":,\n\\0x"
                        .get(rng.random_range(0..12))
                        .unwrap_or(&b'x'),
                ),
                2 if !out.is_empty() => {
                    out.remove(at);
                }
                3 => out.truncate(at),
                4 if at < out.len() => {
                    let end = rng.random_range(at..out.len());
                    let piece = out[at..end].to_vec();
                    out.splice(at..at, piece);
                }
                _ => {
                    let cut = rng.random_range(0..=other.len());
                    out.extend_from_slice(&other[cut..]);
                }
            }
        }
        out
    }

    fn run(harness: fn(&[u8]), seeds: &[Vec<u8>], cases: usize) {
        let mut rng = StdRng::seed_from_u64(0xF0E);
        for seed in seeds {
            harness(seed);
        }
        for _ in 0..cases {
            let a = &seeds[rng.random_range(0..seeds.len())];
            let b = &seeds[rng.random_range(0..seeds.len())];
            let input = mutate(&mut rng, a, b);
            harness(&input);
        }
    }

    #[test]
    fn the_assembler_survives_mutated_streams_and_ignores_chunking() {
        run(super::assembler, &seeds(), 20_000);
        // The seeds themselves assemble (the mutations are not all that is checked).
        let chat = &seeds()[0];
        assert!(super::assemble(foreman_api::jobs::JobKind::Chat, [&chat[1..]]).is_ok());
    }

    #[test]
    fn job_requests_are_accepted_or_refused_with_4xx() {
        let bodies: Vec<Vec<u8>> = [
            r#"{"request":{"model":"llama3.2","messages":[{"role":"user","content":"hi"}]}}"#,
            r#"{"request":{"model":"m","prompt":"p","options":{"num_ctx":8192}},"kind":"generate"}"#,
            r#"{"request":{"model":"m","input":["a","b"]},"webhook":{"url":"https://h/x","events":["done"]},"metadata":{"k":1}}"#,
            r#"{"request":{"model":"","prompt":"p"}}"#,
            r#"{"request":[1,2],"kind":"chat"}"#,
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        run(super::job_request, &bodies, 20_000);
    }
}
