//! The `POST /jobs` body parser: accepted with a model, or refused with a 4xx; never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| foreman::fuzzing::job_request(data));
