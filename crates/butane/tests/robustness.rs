//! Bad input must produce errors, never panics: every corpus config cut at
//! many points, and with bytes flipped, goes through the whole pipeline.

use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/butane"
    ))
}

#[test]
fn truncated_and_mangled_inputs_do_not_panic() {
    let opts = butane::Options {
        files_dir: Some(fixtures().join("files-dir").to_string_lossy().into_owned()),
        pretty: true,
        raw: false,
    };
    let mut runs = 0;
    let mut entries = std::fs::read_dir(fixtures())
        .expect("fixtures")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "bu"))
        .collect::<Vec<_>>();
    entries.sort();
    for path in entries {
        let input = std::fs::read(&path).expect("read");
        let step = (input.len() / 7).max(1);
        for cut in (0..input.len()).step_by(step) {
            let _ = butane::translate(&input[..cut], &opts);
            let mut flipped = input.clone();
            flipped[cut] = match flipped[cut] {
                b' ' => b'\t',
                b':' => b'-',
                b'-' => b'{',
                c => c ^ 0x20,
            };
            let _ = butane::translate(&flipped, &opts);
            runs += 2;
        }
    }
    assert!(runs > 1000, "too few inputs exercised: {runs}");
}

#[test]
fn alias_bombs_are_refused() {
    let mut doc =
        String::from("variant: fcos\nversion: 1.6.0\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..9 {
        let prev = format!("*a{}", i - 1);
        doc.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
    }
    let err = butane::translate(doc.as_bytes(), &butane::Options::default()).unwrap_err();
    assert_eq!(
        err.message,
        "Error unmarshaling yaml: yaml: document contains excessive aliasing"
    );
}
