//! The NDJSON stream assembler: no panic, and chunking never changes the outcome.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| foreman::fuzzing::assembler(data));
