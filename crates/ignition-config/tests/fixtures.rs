//! Runs the Ignition fixture corpus (`shared/fixtures/ignition`, verdicts and
//! messages recorded from upstream Ignition) through `parse` and compares the
//! outcome and every error/warning text with `index.tsv`.

use std::collections::BTreeMap;

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/fixtures/ignition"
);

/// Turns our result into the `index.tsv` notation: errors as `$.path: msg`,
/// warnings as `warning $.path: msg`, parse failures as the bare message.
fn render(raw: &[u8]) -> (bool, Vec<String>, Vec<String>) {
    match ignition_config::parse(raw) {
        Ok((_, report)) => (true, Vec::new(), warnings(&report)),
        Err(e) => match e.report() {
            Some(r) => {
                let errors = r
                    .entries
                    .iter()
                    .filter(|e| e.kind == ignition_config::report::Kind::Error)
                    .map(|e| {
                        if e.path.is_empty() {
                            e.message.clone()
                        } else {
                            format!("{}: {}", e.path, e.message)
                        }
                    })
                    .collect();
                (false, errors, warnings(r))
            }
            None => (false, vec![e.to_string()], Vec::new()),
        },
    }
}

fn warnings(r: &ignition_config::report::Report) -> Vec<String> {
    r.entries
        .iter()
        .filter(|e| e.kind == ignition_config::report::Kind::Warning)
        .map(|e| format!("warning {}: {}", e.path, e.message))
        .collect()
}

#[test]
fn fixture_corpus_matches_upstream() {
    let index = std::fs::read_to_string(format!("{DIR}/index.tsv")).expect("index.tsv");
    let mut total = 0;
    let mut matched = 0;
    let mut misses = BTreeMap::new();
    for line in index.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (file, expected, expected_error) =
            (cols[0], cols[1], cols.get(2).copied().unwrap_or(""));
        let raw = std::fs::read(format!("{DIR}/{file}")).expect("fixture file");
        total += 1;
        let (valid, errors, warns) = render(&raw);
        let ok = if expected == "valid" {
            let mut want: Vec<String> = expected_error
                .split(" ; ")
                .filter(|s| s.starts_with("warning "))
                .map(str::to_string)
                .collect();
            // `runtime:` rows are valid configs that fail only when applied.
            let mut got = warns.clone();
            want.sort();
            got.sort();
            valid && want == got
        } else {
            let mut want: Vec<String> = expected_error.split(" ; ").map(str::to_string).collect();
            let mut got = errors.clone();
            // Upstream's report order within one walk is kept, but the corpus
            // joined some multi-error rows in another order: compare as multisets.
            want.sort();
            got.sort();
            !valid && want == got
        };
        if ok {
            matched += 1;
        } else {
            misses.insert(file.to_string(), format!("want {expected}: {expected_error}\n     got valid={valid} errors={errors:?} warnings={warns:?}"));
        }
    }
    for (f, m) in &misses {
        println!("MISS {f}\n     {m}");
    }
    println!("fixture agreement: {matched}/{total}");
    assert_eq!(
        matched, total,
        "fixture agreement regressed: {matched}/{total}"
    );
}

#[test]
fn merged_config_from_fixture_becomes_invalid() {
    // merge-child-empties-format.json: each config is valid, their merge is not.
    let raw = std::fs::read(format!("{DIR}/merge-child-empties-format.json")).unwrap();
    let (parent, _) = ignition_config::parse(&raw).unwrap();
    let src = parent.ignition.config.merge[0].source.clone().unwrap();
    let data = percent_decode(src.strip_prefix("data:,").unwrap());
    let (child, _) = ignition_config::parse(data.as_bytes()).unwrap();
    let merged = ignition_config::merge(&parent, &child);
    let r = ignition_config::validate(&merged, ignition_config::SpecVersion::LATEST);
    let msgs: Vec<String> = r
        .entries
        .iter()
        .map(|e| format!("{}: {}", e.path, e.message))
        .collect();
    assert_eq!(
        msgs,
        ["$.storage.filesystems.0.format: format cannot be empty when path, label, uuid, wipeFilesystem, options, or mountOptions is specified"]
    );
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}
