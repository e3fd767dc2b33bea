//! Runs the whole Butane fixture corpus (real butane v0.23.0 outputs) and
//! checks the match rate. Outputs are compared as values first (data URLs
//! decoded, so a failure says what differs), then byte for byte.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use base64::Engine;
use serde_json::Value;

/// The match rate reached; the test fails if a change makes it drop.
const MIN_MATCHES: usize = 288;

fn fixtures() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/butane"
    ))
}

fn decode_data_url(url: &str, gzip: bool) -> Option<String> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let mut bytes = if meta.ends_with(";base64") {
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .ok()?
    } else {
        percent_decode(data)
    };
    if gzip {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .ok()?;
        bytes = out;
    }
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Replaces every data URL by its decoded text (gunzipped when compressed).
fn normalize(v: &mut Value) {
    match v {
        Value::Object(m) => {
            let gzip = m.get("compression").and_then(Value::as_str) == Some("gzip");
            if let Some(Value::String(src)) = m.get("source") {
                if let Some(d) = decode_data_url(src, gzip) {
                    m.insert("source".into(), Value::String(format!("decoded:{d}")));
                }
            }
            for (_, sub) in m.iter_mut() {
                normalize(sub);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(normalize),
        _ => {}
    }
}

/// Parses MachineConfig YAML into JSON with our own YAML reader.
fn yaml_to_json(text: &str) -> Value {
    fn conv(y: &yaml_rust2::Yaml) -> Value {
        use yaml_rust2::Yaml;
        match y {
            Yaml::Hash(h) => Value::Object(
                h.iter()
                    .map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), conv(v)))
                    .collect(),
            ),
            Yaml::Array(a) => Value::Array(a.iter().map(conv).collect()),
            Yaml::String(s) => Value::String(s.clone()),
            Yaml::Integer(i) => Value::from(*i),
            Yaml::Boolean(b) => Value::Bool(*b),
            Yaml::Real(r) => Value::String(r.clone()),
            _ => Value::Null,
        }
    }
    yaml_rust2::YamlLoader::load_from_str(text)
        .ok()
        .and_then(|d| d.first().map(conv))
        .unwrap_or(Value::Null)
}

/// Sorts runs of `Unused key` lines that share a parent path (Go map order is random).
fn canonical_lines(text: &str) -> Vec<String> {
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut out = Vec::new();
    let mut run: Vec<String> = Vec::new();
    let mut run_parent = String::new();
    let parent = |l: &str| -> Option<String> {
        if !l.contains(": Unused key ") {
            return None;
        }
        let p = l.split(',').next()?.trim_start_matches("warning at ");
        Some(
            p.rsplit_once('.')
                .map_or(String::new(), |(a, _)| a.to_string()),
        )
    };
    for l in lines {
        match parent(&l) {
            Some(p) if p == run_parent && !run.is_empty() => run.push(l),
            Some(p) => {
                run.sort();
                out.append(&mut run);
                run_parent = p;
                run.push(l);
            }
            None => {
                run.sort();
                out.append(&mut run);
                out.push(l);
            }
        }
    }
    run.sort();
    out.append(&mut run);
    out
}

fn check(row: &BTreeMap<&str, &str>, dir: &std::path::Path) -> Result<(), String> {
    let file = row["file"];
    let flags: Vec<&str> = row["butane_flags"].split_whitespace().collect();
    let input = std::fs::read(dir.join(file)).map_err(|e| e.to_string())?;
    let mut opts = butane::Options::default();
    let mut i = 0;
    while i < flags.len() {
        match flags[i] {
            "--pretty" => opts.pretty = true,
            "-r" => opts.raw = true,
            "-d" => {
                opts.files_dir = Some(flags[i + 1].to_string());
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    let expected_path = dir.join(row["expected"]);
    let expected = std::fs::read_to_string(&expected_path).map_err(|e| e.to_string())?;
    let result = butane::translate(&input, &opts);
    match row["outcome"] {
        "ok" | "warn" => {
            let out = result.map_err(|f| format!("failed: {}{}", f.report, f.message))?;
            let got_stderr = out.report.to_string();
            let want_stderr = if row["outcome"] == "warn" {
                let w = file.replace(".bu", ".warn");
                std::fs::read_to_string(dir.join(w)).map_err(|e| e.to_string())?
            } else {
                String::new()
            };
            if canonical_lines(&got_stderr) != canonical_lines(&want_stderr) {
                return Err(format!(
                    "stderr differs:\n--- got\n{got_stderr}--- want\n{want_stderr}"
                ));
            }
            if flags.contains(&"-c") {
                // --check prints nothing; the recorded stdout is empty.
                return if expected.is_empty() {
                    Ok(())
                } else {
                    Err("expected output recorded for --check".into())
                };
            }
            let got = String::from_utf8_lossy(&out.bytes).into_owned();
            let (mut g, mut w) = if expected_path.extension().is_some_and(|e| e == "ign") {
                (
                    serde_json::from_str::<Value>(&got).map_err(|e| format!("bad json: {e}"))?,
                    serde_json::from_str::<Value>(&expected).map_err(|e| e.to_string())?,
                )
            } else {
                (yaml_to_json(&got), yaml_to_json(&expected))
            };
            normalize(&mut g);
            normalize(&mut w);
            if g != w {
                return Err(format!(
                    "output differs:\n--- got\n{}\n--- want\n{}",
                    serde_json::to_string_pretty(&g).unwrap_or_default(),
                    serde_json::to_string_pretty(&w).unwrap_or_default()
                ));
            }
            // Key order, indentation, escaping and even the gzip streams are
            // reproduced, so the bytes must match too.
            if got != expected {
                return Err("semantically equal, but the bytes differ".into());
            }
            Ok(())
        }
        _ => {
            let f = match result {
                Ok(_) => return Err("translation succeeded, expected failure".into()),
                Err(f) => f,
            };
            let got = format!("{}Error translating config: {}\n", f.report, f.message);
            if got != expected {
                return Err(format!(
                    "stderr differs:\n--- got\n{got}--- want\n{expected}"
                ));
            }
            if row["exit_code"] != "1" {
                return Err(format!("unexpected exit code {}", row["exit_code"]));
            }
            Ok(())
        }
    }
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir").flatten() {
        let ft = std::fs::symlink_metadata(e.path())
            .expect("stat")
            .file_type();
        let dest = to.join(e.file_name());
        if ft.is_dir() {
            copy_tree(&e.path(), &dest);
        } else if ft.is_symlink() {
            let t = std::fs::read_link(e.path()).expect("readlink");
            std::os::unix::fs::symlink(t, &dest).expect("symlink");
        } else {
            // std::fs::copy keeps the permission bits, so the exec bit survives.
            std::fs::copy(e.path(), &dest).expect("copy");
        }
    }
}

/// The corpus README documents `tree/directory/symlink -> ../file` (and the
/// same in `tree-b/`); copies of shared/ that lost the link hold a regular file
/// with the target text instead. Put the link back so the tree fixtures test
/// symlink handling as recorded.
fn restore_symlinks(files_dir: &std::path::Path) {
    for tree in ["tree", "tree-b"] {
        let link = files_dir.join(tree).join("directory").join("symlink");
        let Ok(meta) = std::fs::symlink_metadata(&link) else {
            continue;
        };
        if meta.file_type().is_file() {
            let target = std::fs::read_to_string(&link).expect("read");
            std::fs::remove_file(&link).expect("rm");
            std::os::unix::fs::symlink(target.trim_end(), &link).expect("symlink");
        }
    }
}

#[test]
fn corpus_matches_real_butane() {
    let dir = fixtures();
    // `-d files-dir` is relative, and error texts carry it as given, so run
    // in a directory holding a `files-dir` copy (see restore_symlinks).
    let work = std::env::temp_dir().join(format!("butane-corpus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    copy_tree(&dir.join("files-dir"), &work.join("files-dir"));
    restore_symlinks(&work.join("files-dir"));
    std::env::set_current_dir(&work).expect("work dir");
    let index = std::fs::read_to_string(dir.join("index.tsv")).expect("index.tsv");
    let mut lines = index.lines();
    let header: Vec<&str> = lines.next().expect("header").split('\t').collect();
    let mut ok = 0;
    let mut misses = Vec::new();
    let only = std::env::var("BUTANE_FIXTURE").ok();
    for line in lines {
        let row: BTreeMap<&str, &str> = header.iter().copied().zip(line.split('\t')).collect();
        if only.as_deref().is_some_and(|o| !row["file"].starts_with(o)) {
            continue;
        }
        match check(&row, &dir) {
            Ok(()) => ok += 1,
            Err(e) => misses.push(format!("{}: {e}", row["file"])),
        }
    }
    let total = ok + misses.len();
    for m in &misses {
        eprintln!("MISS {m}\n");
    }
    eprintln!("butane corpus: {ok}/{total} match");
    let _ = std::fs::remove_dir_all(&work);
    if only.is_none() {
        assert!(
            ok >= MIN_MATCHES,
            "match count regressed: {ok} < {MIN_MATCHES}"
        );
    }
}
