//! Property tests: valid configs survive serialize → parse unchanged, and a valid
//! config of any version stays valid once translated up to the latest version.

use ignition_config::schema::{self, Ty};
use ignition_config::types::*;
use ignition_config::{parse, parse_exact, translate_up, validate, SpecVersion};
use proptest::prelude::*;
use serde_json::Value;

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9]{0,7}"
}

fn abs_path() -> impl Strategy<Value = String> {
    prop::collection::vec(name(), 1..4).prop_map(|c| format!("/{}", c.join("/")))
}

fn resource() -> impl Strategy<Value = Resource> {
    (
        prop::option::of("[ -~]{0,20}"),
        prop::option::of(Just("gzip".to_string())),
        any::<bool>(),
    )
        .prop_map(|(data, compression, headers)| {
            let source = data.map(|d| {
                let enc: String = d
                    .bytes()
                    .map(|b| {
                        if b.is_ascii_alphanumeric() {
                            (b as char).to_string()
                        } else {
                            format!("%{b:02X}")
                        }
                    })
                    .collect();
                if headers {
                    format!("https://example.com/{enc}")
                } else {
                    format!("data:,{enc}")
                }
            });
            let http = source.as_ref().is_some_and(|s| s.starts_with("https:"));
            Resource {
                compression: if source.is_some() { compression } else { None },
                http_headers: if http {
                    vec![HTTPHeader {
                        name: "X-A".into(),
                        value: Some("b".into()),
                    }]
                } else {
                    Vec::new()
                },
                verification: Verification {
                    hash: source
                        .as_ref()
                        .map(|_| format!("sha512-{}", "ab".repeat(64))),
                },
                source,
            }
        })
}

fn config() -> impl Strategy<Value = Config> {
    let files = prop::collection::btree_map(
        abs_path(),
        (
            resource(),
            prop::option::of(0i64..0o777),
            prop::option::of(0i64..2000),
        ),
        0..4,
    );
    let users = prop::collection::btree_map(
        name(),
        (
            prop::option::of(1000i64..2000),
            prop::collection::btree_set("ssh-ed25519 [A-Za-z0-9]{8}", 0..3),
        ),
        0..3,
    );
    let units = prop::collection::btree_map(
        name(),
        (any::<bool>(), prop::option::of(any::<bool>())),
        0..3,
    );
    let kargs = prop::collection::btree_set("[a-z]{1,6}(=[0-9])?", 0..4);
    let disks =
        prop::collection::btree_map(name(), prop::collection::btree_set(1i64..8, 0..3), 0..2);
    (files, users, units, kargs, disks, prop::option::of(1i64..60)).prop_map(
        |(files, users, units, kargs, disks, timeout)| {
            let mut c = Config::with_version(SpecVersion::LATEST);
            c.ignition.timeouts.http_total = timeout;
            for (i, (path, (contents, mode, uid))) in files.into_iter().enumerate() {
                if i % 3 == 2 {
                    c.storage.directories.push(Directory {
                        path: format!("/d{path}"),
                        mode,
                        ..Default::default()
                    });
                    c.storage.links.push(Link {
                        path: format!("/l{path}"),
                        target: Some(path.clone()),
                        ..Default::default()
                    });
                } else {
                    c.storage.files.push(File {
                        path: format!("/f{path}"),
                        overwrite: contents.source.as_ref().map(|_| true),
                        user: NodeUser { id: uid, name: None },
                        append: vec![contents.clone(), contents.clone()],
                        contents,
                        mode,
                        ..Default::default()
                    });
                }
            }
            for (n, (uid, keys)) in users {
                c.passwd.users.push(PasswdUser {
                    name: n.clone(),
                    uid,
                    ssh_authorized_keys: keys.into_iter().collect(),
                    groups: vec!["wheel".into()],
                    ..Default::default()
                });
                c.passwd.groups.push(PasswdGroup {
                    name: format!("g{n}"),
                    ..Default::default()
                });
            }
            for (n, (with_contents, enabled)) in units {
                c.systemd.units.push(Unit {
                    name: format!("{n}.service"),
                    enabled,
                    contents: with_contents
                        .then(|| "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n".into()),
                    dropins: vec![Dropin {
                        name: "10-x.conf".into(),
                        contents: Some("[Service]\nNice=5\n".into()),
                    }],
                    ..Default::default()
                });
            }
            let kargs: Vec<String> = kargs.into_iter().collect();
            let half = kargs.len() / 2;
            c.kernel_arguments.should_exist = kargs[..half].to_vec();
            c.kernel_arguments.should_not_exist = kargs[half..].to_vec();
            for (d, numbers) in disks {
                let device = format!("/dev/disk/by-id/{d}");
                c.storage.disks.push(Disk {
                    device: device.clone(),
                    wipe_table: Some(true),
                    partitions: numbers
                        .into_iter()
                        .map(|n| Partition {
                            number: n,
                            label: Some(format!("p{n}")),
                            size_mib: Some(100),
                            ..Default::default()
                        })
                        .collect(),
                });
                c.storage.filesystems.push(Filesystem {
                    device: format!("{device}-part1"),
                    format: Some("xfs".into()),
                    path: Some("/var".into()),
                    label: Some("var".into()),
                    ..Default::default()
                });
            }
            c
        },
    )
}

/// Removes every key the struct of `version` does not have (walking the schema).
fn strip(v: &mut Value, sname: &str, version: SpecVersion) {
    let fields = schema::fields_at(sname, version);
    let Value::Object(m) = v else { return };
    m.retain(|k, _| fields.iter().any(|f| f.json == k));
    for f in fields {
        let Some(child) = m.get_mut(f.json) else {
            continue;
        };
        match &f.ty {
            Ty::Struct(n) => strip(child, n, version),
            t => {
                if let (Some(Ty::Struct(n)), Value::Array(items)) = (t.elem(), child) {
                    for i in items {
                        strip(i, n, version);
                    }
                }
            }
        }
    }
}

/// JSON-ish noise built from config fragments, to reach deep into the decoder.
fn noise() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(vec![
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"ignition\"",
        "\"version\"",
        "\"3.3.0\"",
        "\"3.0.0\"",
        "\"storage\"",
        "\"files\"",
        "\"path\"",
        "\"/a\"",
        "\"mode\"",
        "420",
        "\"systemd\"",
        "\"units\"",
        "\"name\"",
        "\"contents\"",
        "\"[Unit\"",
        "null",
        "true",
        "1.5",
        "\"source\"",
        "\"data:x\"",
        "\"luks\"",
        "\"clevis\"",
        "\"%zz\"",
    ]);
    prop::collection::vec(atoms, 0..60).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_input_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200), text in noise()) {
        let _ = parse(&bytes);
        let _ = parse(text.as_bytes());
        let wrapped = format!(r#"{{"ignition":{{"version":"3.3.0"}},"storage":{text}}}"#);
        let _ = parse(wrapped.as_bytes());
    }

    #[test]
    fn serialize_parse_roundtrip(c in config()) {
        let report = validate(&c, SpecVersion::LATEST);
        prop_assert!(report.entries.is_empty(), "generator made an invalid config: {report}");
        let json = serde_json::to_vec(&c).unwrap();
        let (back, rep) = parse(&json).unwrap();
        prop_assert!(rep.entries.is_empty(), "{rep}");
        prop_assert_eq!(back, c);
    }

    #[test]
    fn translate_up_from_every_version_stays_valid(c in config()) {
        for v in SpecVersion::ALL {
            let mut json = serde_json::to_value(&c).unwrap();
            strip(&mut json, "Config", v);
            json["ignition"]["version"] = Value::String(v.to_string());
            let raw = serde_json::to_vec(&json).unwrap();
            let (pv, old, rep) = parse_exact(&raw).map_err(|e| {
                TestCaseError::fail(format!("{v}: {e}: {}", e.report().map(|r| r.to_string()).unwrap_or_default()))
            })?;
            prop_assert_eq!(pv, v);
            prop_assert!(rep.entries.is_empty(), "{}: {}", v, rep);
            let up = translate_up(old, v, SpecVersion::LATEST);
            let r = validate(&up, SpecVersion::LATEST);
            prop_assert!(!r.is_fatal(), "{}: {}", v, r);
            prop_assert_eq!(&up.ignition.version, SpecVersion::LATEST.as_str());
        }
    }
}
