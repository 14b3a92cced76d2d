//! AFL++ entry point: `check_response` on each input (see fuzz/README.md).
#![forbid(unsafe_code)]

fn main() {
    afl::fuzz!(|data: &[u8]| {
        edgelb_fuzz::checks::check_response(data);
    });
}
