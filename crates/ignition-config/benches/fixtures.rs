//! Parses and validates the whole Ignition fixture corpus repeatedly and prints
//! the throughput. Run with `cargo bench -p ignition-config`.

use std::time::Instant;

fn main() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/ignition"
    );
    let mut docs = Vec::new();
    for entry in std::fs::read_dir(dir).expect("fixture dir") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            docs.push(std::fs::read(&path).expect("fixture"));
        }
    }
    let bytes: usize = docs.iter().map(Vec::len).sum();
    let rounds = 200;
    let start = Instant::now();
    let mut ok = 0usize;
    for _ in 0..rounds {
        for d in &docs {
            if ignition_config::parse(std::hint::black_box(d)).is_ok() {
                ok += 1;
            }
        }
    }
    let el = start.elapsed();
    let n = rounds * docs.len();
    println!(
        "parse+validate: {} configs x {rounds} rounds in {:.3}s: {:.1} us/config, {:.1} MB/s ({} valid per round)",
        docs.len(),
        el.as_secs_f64(),
        el.as_secs_f64() * 1e6 / n as f64,
        (bytes * rounds) as f64 / el.as_secs_f64() / 1e6,
        ok / rounds
    );
}
