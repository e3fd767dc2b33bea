//! Library-level behaviour not covered by the corpus.

use butane::{translate, Kind, Options};

fn ok(src: &str) -> String {
    let out = translate(src.as_bytes(), &Options::default()).expect("translates");
    String::from_utf8(out.bytes).expect("utf-8")
}

fn err(src: &[u8]) -> String {
    translate(src, &Options::default()).unwrap_err().message
}

#[test]
fn byte_order_mark_is_skipped() {
    assert_eq!(
        ok("\u{feff}variant: fcos\nversion: 1.6.0\n"),
        "{\"ignition\":{\"version\":\"3.5.0\"}}\n"
    );
}

#[test]
fn malformed_utf8_is_a_yaml_error() {
    assert_eq!(
        err(b"variant: fcos\nversion: 1.6.0\nx: \"\xff\"\n"),
        "Error unmarshaling yaml: yaml: invalid leading UTF-8 octet"
    );
    assert_eq!(
        err(b"variant: fcos\nversion: 1.6.0\nx: \"\xc3"),
        "Error unmarshaling yaml: yaml: incomplete UTF-8 octet sequence"
    );
}

#[test]
fn pretty_output_and_html_escapes() {
    let opts = Options {
        pretty: true,
        ..Options::default()
    };
    let src = "variant: fcos\nversion: 1.4.0\nstorage:\n  links:\n    - path: /a\n      target: \"<&>\"\n";
    let out = String::from_utf8(translate(src.as_bytes(), &opts).unwrap().bytes).unwrap();
    assert!(
        out.contains("\"target\": \"\\u003c\\u0026\\u003e\""),
        "{out}"
    );
    assert!(out.starts_with("{\n  \"ignition\": {\n    \"version\": \"3.3.0\"\n  },"));
    assert!(out.ends_with("}\n"));
}

#[test]
fn warnings_do_not_fail_without_strict() {
    let out = translate(
        b"variant: fcos\nversion: 1.6.0\nhostname: x\n",
        &Options::default(),
    )
    .unwrap();
    assert_eq!(out.report.entries.len(), 1);
    assert_eq!(out.report.entries[0].kind, Kind::Warning);
    assert_eq!(
        out.report.to_string(),
        "warning at $.hostname, line 3 col 1: Unused key hostname\n"
    );
}

#[test]
fn experimental_and_removed_versions() {
    assert!(ok("variant: fcos\nversion: 1.7.0-experimental\n").contains("3.6.0-experimental"));
    assert_eq!(
        err(b"variant: rhcos\nversion: 1.0.0\n"),
        "No translator exists for variant rhcos with version 1.0.0"
    );
    assert_eq!(
        err(b"variant: fcos\nversion: 1.6.0-rc.1\n"),
        "No translator exists for variant fcos with version 1.6.0-rc.1"
    );
}

#[test]
fn swap_and_remote_mount_units() {
    let src = "variant: fcos\nversion: 1.6.0\nstorage:\n  luks:\n    - name: data\n      device: /dev/vdb\n      clevis:\n        tang:\n          - url: https://tang.example\n            thumbprint: abc\n  filesystems:\n    - device: /dev/mapper/data\n      path: /var/data\n      format: xfs\n      with_mount_unit: true\n    - device: /dev/vdc\n      format: swap\n      with_mount_unit: true\n";
    let out = ok(src);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let units = v["systemd"]["units"].as_array().unwrap();
    assert_eq!(units[0]["name"], "var-data.mount");
    let mount = units[0]["contents"].as_str().unwrap();
    assert!(mount.contains("Options=_netdev\n"), "{mount}");
    assert!(mount.ends_with("RequiredBy=remote-fs.target"), "{mount}");
    assert_eq!(units[1]["name"], "dev-vdc.swap");
    assert!(units[1]["contents"]
        .as_str()
        .unwrap()
        .contains("[Swap]\nWhat=/dev/vdc\n"));
}
