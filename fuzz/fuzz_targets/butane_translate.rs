//! Any byte string given to Butane yields an output or a failure report, never a panic,
//! in every output mode.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut opts = butane::Options::default();
    let _ = butane::translate(data, &opts);
    opts.pretty = true;
    opts.raw = true;
    let _ = butane::translate(data, &opts);
});
