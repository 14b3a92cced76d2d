//! Replays the fuzzer's seeds and every input it ever crashed on (`fuzz/regressions/TARGET/`,
//! copied there by `fuzz/run.sh`) through the same invariant checks the AFL++ targets assert,
//! against the real parsers: a fixed crash stays fixed.

#[allow(dead_code)]
mod h1 {
    pub use edgelb::proxy::h1::*;
}

#[path = "../fuzz/src/checks.rs"]
mod checks;

fn replay(dir: &str, check: fn(&[u8])) -> usize {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for sub in ["seeds", "regressions"] {
        let Ok(rd) = std::fs::read_dir(root.join(sub).join(dir)) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.file_name()
                .is_some_and(|f| f.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            let data = std::fs::read(&p).unwrap();
            let r = std::panic::catch_unwind(|| check(&data));
            assert!(r.is_ok(), "{} fails its invariants: {data:?}", p.display());
            n += 1;
        }
    }
    n
}

#[test]
fn request_parser_inputs_keep_their_invariants() {
    assert!(replay("request", checks::check_request) > 10);
}

#[test]
fn response_parser_inputs_keep_their_invariants() {
    assert!(replay("response", checks::check_response) > 5);
}

#[test]
fn chunked_decoder_inputs_keep_their_invariants() {
    assert!(replay("chunked", checks::check_chunked) > 5);
}
