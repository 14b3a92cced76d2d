//! Fuzz targets for edgelb's HTTP/1 head parsers and chunked decoder: each `check_*` function
//! runs the real code on arbitrary bytes and asserts its invariants (a panic is a finding).
//! `src/proxy/h1.rs` and its lexer `src/proxy/h1_lex.rs` are compiled in directly (they depend
//! on std only; httparse is here as the lexer's reference), so the instrumented build does not
//! pull in the rest of edgelb. `tests/fuzz_regressions.rs` in the
//! main crate runs the same checks on every file under `fuzz/regressions/` and the seeds.
#![forbid(unsafe_code)]

#[path = "../../src/proxy/h1.rs"]
#[allow(dead_code)]
pub mod h1;

#[path = "../../src/proxy/h1_lex.rs"]
#[allow(dead_code)]
pub mod h1_lex;

#[path = "checks.rs"]
pub mod checks;
