//! Translates the whole Butane fixture corpus repeatedly, with each config's own
//! flags from index.tsv, and prints the throughput. Run with `cargo bench -p butane`.
//! Under `cargo test --benches` (no `--bench` argument) it does a single round, so the
//! bench stays compiled and exercised without costing CI time.

use std::time::Instant;

struct Case {
    input: Vec<u8>,
    opts: butane::Options,
}

fn main() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/butane"
    );
    // Relative `-d files-dir`, as the corpus was recorded: run from the fixtures dir.
    std::env::set_current_dir(dir).expect("fixture dir");
    let index = std::fs::read_to_string("index.tsv").expect("index.tsv");
    let mut cases = Vec::new();
    for line in index.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (file, flags) = (cols[0], cols[2]);
        let mut opts = butane::Options::default();
        let mut words = flags.split_whitespace();
        while let Some(w) = words.next() {
            match w {
                "-p" | "--pretty" => opts.pretty = true,
                "-r" | "--raw" => opts.raw = true,
                "-d" | "--files-dir" => opts.files_dir = words.next().map(str::to_owned),
                _ => {}
            }
        }
        let input = std::fs::read(file).expect("fixture input");
        cases.push(Case { input, opts });
    }
    let bytes: usize = cases.iter().map(|c| c.input.len()).sum();
    let rounds = if std::env::args().any(|a| a == "--bench") {
        50
    } else {
        1
    };
    let start = Instant::now();
    let mut ok = 0usize;
    for _ in 0..rounds {
        for c in &cases {
            if butane::translate(std::hint::black_box(&c.input), &c.opts).is_ok() {
                ok += 1;
            }
        }
    }
    let el = start.elapsed();
    let n = rounds * cases.len();
    println!(
        "butane translate: {} configs x {rounds} rounds in {:.3}s: {:.1} us/config, {:.2} MB/s ({} translated per round)",
        cases.len(),
        el.as_secs_f64(),
        el.as_secs_f64() * 1e6 / n as f64,
        (bytes * rounds) as f64 / el.as_secs_f64() / 1e6,
        ok / rounds
    );
}
