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

/// Every seed of a target, read once.
fn seeds(dir: &str) -> &'static [Vec<u8>] {
    static SEEDS: std::sync::OnceLock<[Vec<Vec<u8>>; 2]> = std::sync::OnceLock::new();
    let all = SEEDS.get_or_init(|| {
        ["request", "response"].map(|d| {
            let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
            let mut v: Vec<Vec<u8>> = std::fs::read_dir(root.join(d))
                .unwrap()
                .flatten()
                .map(|e| std::fs::read(e.path()).unwrap())
                .collect();
            v.sort();
            v
        })
    });
    &all[usize::from(dir == "response")]
}

/// Bytes the head grammar turns on, drawn more often than others.
const SYNTAX_BYTES: &[u8] = b"\r\n\t :/.01HTP\x00\x7f\x80\xff";

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

    /// The lexer agrees with httparse (and the parsers keep their invariants) on seeds edited
    /// where the grammar is sensitive, and on every prefix of them.
    #[test]
    fn the_lexer_agrees_with_httparse_on_edited_heads(
        response in proptest::prelude::any::<bool>(),
        seed in proptest::prelude::any::<proptest::sample::Index>(),
        edits in proptest::collection::vec(
            (0usize..3, proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>(), 0usize..16),
            0..6,
        ),
        cut in proptest::prelude::any::<proptest::sample::Index>(),
    ) {
        let pool = seeds(if response { "response" } else { "request" });
        let mut buf = pool[seed.index(pool.len())].clone();
        for (op, at, any, pick) in edits {
            let b = SYNTAX_BYTES.get(pick).copied().unwrap_or(any);
            let i = at % (buf.len() + 1);
            match op {
                0 if i < buf.len() => buf[i] = b,
                1 => buf.insert(i, b),
                _ if i < buf.len() => {
                    buf.remove(i);
                }
                _ => {}
            }
        }
        let cut = cut.index(buf.len() + 1);
        for data in [&buf[..], &buf[..cut]] {
            checks::check_request(data);
            checks::check_response(data);
        }
    }
}
