//! Validation rules the fixture corpus does not cover, checked through `parse`.

use ignition_config::report::Kind;

/// `(kind, path, message)` of every report entry of `json`.
fn entries(json: &str) -> Vec<(Kind, String, String)> {
    let report = match ignition_config::parse(json.as_bytes()) {
        Ok((_, r)) => r,
        Err(e) => e.report().cloned().unwrap_or_else(|| panic!("{e}")),
    };
    report
        .entries
        .iter()
        .map(|e| (e.kind, e.path.to_string(), e.message.clone()))
        .collect()
}

fn errors(json: &str) -> Vec<String> {
    entries(json)
        .into_iter()
        .filter(|e| e.0 == Kind::Error)
        .map(|e| {
            if e.1 == "$" {
                e.2
            } else {
                format!("{}: {}", e.1, e.2)
            }
        })
        .collect()
}

#[test]
fn zero_partition_with_delete() {
    let j = r#"{"ignition":{"version":"3.3.0"},"storage":{"disks":[{"device":"/dev/vda","partitions":[{"label":"a"},{"number":2,"shouldExist":false}]}]}}"#;
    assert_eq!(
        errors(j),
        ["$.storage.disks.0.partitions: shouldExist is false for a partition and other partition(s) has start or size 0"]
    );
}

#[test]
fn headers_need_a_source() {
    let j = r#"{"ignition":{"version":"3.1.0"},"storage":{"files":[{"path":"/a","contents":{"httpHeaders":[{"name":"a","value":"b"}]}}]}}"#;
    assert_eq!(
        errors(j),
        ["$.storage.files.0.contents.httpHeaders: unable to parse url"]
    );
}

#[test]
fn null_header_value_is_valid() {
    let j = r#"{"ignition":{"version":"3.1.0"},"storage":{"files":[{"path":"/a","contents":{"source":"https://x/y","httpHeaders":[{"name":"a","value":null}]}}]}}"#;
    assert!(errors(j).is_empty());
}

#[test]
fn tang_advertisement_only_from_3_4() {
    let tang = r#""clevis":{"tang":[{"url":"http://t","thumbprint":"x","advertisement":"{}"}]}"#;
    let j = format!(
        r#"{{"ignition":{{"version":"3.3.0"}},"storage":{{"luks":[{{"name":"r","device":"/dev/vda",{tang}}}]}}}}"#
    );
    let e = entries(&j);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].2, "unused key advertisement");
    let j = j.replace("3.3.0", "3.4.0");
    assert!(entries(&j).is_empty());
    // kept through translation (documented deviation from upstream's 3.4->3.5 step)
    let (cfg, _) = ignition_config::parse(j.as_bytes()).unwrap();
    assert_eq!(
        cfg.storage.luks[0].clevis.tang[0].advertisement.as_deref(),
        Some("{}")
    );
}

#[test]
fn cex_from_3_5_only() {
    let j = r#"{"ignition":{"version":"3.4.0"},"storage":{"luks":[{"name":"r","device":"/dev/vda","cex":{"enabled":true}}]}}"#;
    assert_eq!(entries(j)[0].2, "unused key cex");
}

#[test]
fn sha256_from_3_1() {
    let h = format!("sha256-{}", "a".repeat(64));
    let j = format!(
        r#"{{"ignition":{{"version":"3.1.0","config":{{"replace":{{"source":"https://x","verification":{{"hash":"{h}"}}}}}}}}}}"#
    );
    assert!(errors(&j).is_empty());
    let bad = j.replace(&"a".repeat(64), "abc");
    assert_eq!(
        errors(&bad),
        ["$.ignition.config.replace.verification.hash: incorrect size for hash sum"]
    );
}

#[test]
fn proxy_and_insecure_proxy() {
    let j = r#"{"ignition":{"version":"3.1.0","proxy":{"httpProxy":"socks5://p","httpsProxy":"http://p"}}}"#;
    let e = entries(j);
    assert_eq!(
        e[0],
        (
            Kind::Error,
            "$.ignition.proxy.httpProxy".into(),
            "proxies must be http(s)".into()
        )
    );
    assert_eq!(
        e[1],
        (
            Kind::Warning,
            "$.ignition.proxy.httpsProxy".into(),
            "insecure plaintext HTTP proxy specified for HTTPS resources".into()
        )
    );
}

#[test]
fn virtiofs_rules() {
    let j = r#"{"ignition":{"version":"3.7.0-experimental"},"storage":{"filesystems":[{"device":"0123456789012345678901234567890123456789","format":"virtiofs","uuid":"x","wipeFilesystem":true}]}}"#;
    let e = errors(j);
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(e[0].starts_with("$.storage.filesystems.0.device: "));
}

#[test]
fn raid_level_string_before_3_3() {
    let j = r#"{"ignition":{"version":"3.2.0"},"storage":{"raid":[{"name":"md","devices":["/dev/vda"]}]}}"#;
    assert_eq!(
        errors(j),
        ["$.storage.raid.0.level: unrecognized raid level"]
    );
    let j = r#"{"ignition":{"version":"3.0.0"},"storage":{"raid":[{"name":"md","level":"raid1","devices":["dev/vda"]}]}}"#;
    assert_eq!(errors(j), ["$.storage.raid.0.devices.0: path not absolute"]);
}

#[test]
fn custom_clevis_pin_in_3_2_requires_pin() {
    let j = r#"{"ignition":{"version":"3.2.0"},"storage":{"luks":[{"name":"r","device":"/dev/vda","clevis":{"custom":{}}}]}}"#;
    assert_eq!(
        errors(j),
        [
            "$.storage.luks.0.clevis.custom.pin: missing required custom clevis pin",
            "$.storage.luks.0.clevis.custom.config: missing required custom clevis config"
        ]
    );
}

#[test]
fn null_struct_and_null_list_element() {
    let j = r#"{"ignition":{"version":"3.3.0"},"storage":null,"systemd":{"units":[null]}}"#;
    let e = entries(j);
    assert!(e
        .iter()
        .any(|e| e.1 == "$.systemd.units.0.name" && e.2 == "invalid systemd unit extension"));
    assert!(e.iter().any(|e| e.0 == Kind::Warning && e.1 == "$.storage"));
}

#[test]
fn number_types() {
    let j = r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a","mode":4.5}]}}"#;
    assert_eq!(
        errors(j),
        ["json: cannot unmarshal number 4.5 into Go struct field File.storage.files.mode of type int"]
    );
    let j = r#"{"ignition":{"version":"3.3.0"},"passwd":{"users":[{"name":"a","sshAuthorizedKeys":[1]}]}}"#;
    assert_eq!(
        errors(j),
        ["json: cannot unmarshal number into Go struct field PasswdUser.passwd.users.sshAuthorizedKeys of type types.SSHAuthorizedKey"]
    );
    let j = r#"{"ignition":{"version":"3.3.0"},"storage":{"files":{}}}"#;
    assert_eq!(
        errors(j),
        ["json: cannot unmarshal object into Go struct field Storage.storage.files of type []types.File"]
    );
}

#[test]
fn template_and_dropin_rules() {
    let j = r#"{"ignition":{"version":"3.3.0"},"systemd":{"units":[{"name":"a.service","dropins":[{"name":"x.txt","contents":"[Service"}]}]}}"#;
    assert_eq!(
        errors(j),
        [
            "$.systemd.units.0.dropins.0.contents: invalid unit content: unable to find end of section",
            "$.systemd.units.0.dropins.0.name: invalid systemd drop-in extension"
        ]
    );
}

#[test]
fn file_and_oem_urls_only_in_3_7_experimental() {
    let mk = |v: &str, src: &str| {
        format!(
            r#"{{"ignition":{{"version":"{v}"}},"storage":{{"files":[{{"path":"/a","contents":{{"source":"{src}"}}}}]}}}}"#
        )
    };
    assert!(errors(&mk("3.7.0-experimental", "file:///config.ign")).is_empty());
    assert!(errors(&mk("3.7.0-experimental", "oem:///config.ign")).is_empty());
    assert_eq!(
        errors(&mk("3.7.0-experimental", "oem://config.ign")),
        ["$.storage.files.0.contents.source: path not absolute"]
    );
    assert_eq!(
        errors(&mk("3.7.0-experimental", "file:///foo/./bar")),
        ["$.storage.files.0.contents.source: path is not fully simplified"]
    );
    assert_eq!(
        errors(&mk("3.6.0", "file:///config.ign")),
        ["$.storage.files.0.contents.source: invalid url scheme"]
    );
    assert_eq!(
        errors(&mk("3.6.0", "Arn:")),
        ["$.storage.files.0.contents.source: invalid S3 ARN format"]
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = format!(
        r#"{{"ignition":{{"version":"3.3.0"}},"x":{}{}}}"#,
        "[".repeat(20000),
        "]".repeat(20000)
    );
    let e = ignition_config::parse(deep.as_bytes()).unwrap_err();
    assert_eq!(
        e.report().unwrap().entries[0].message,
        "invalid character '[' exceeded max depth"
    );
    let ok = format!(
        r#"{{"ignition":{{"version":"3.3.0"}},"x":{}{}}}"#,
        "[".repeat(9000),
        "]".repeat(9000)
    );
    let (_, r) = ignition_config::parse(ok.as_bytes()).unwrap();
    assert_eq!(r.entries[0].message, "unused key x");
}

#[test]
fn version_stub_type_errors() {
    assert_eq!(
        errors(r#"{"ignition":{"version":3}}"#),
        ["json: cannot unmarshal number into Go struct field .Ignition.Version of type string"]
    );
    assert_eq!(
        errors(r#"{"ignition":"x"}"#),
        ["json: cannot unmarshal string into Go struct field versionStub.Ignition of type struct { Version string }"]
    );
    assert_eq!(
        errors("[]"),
        ["json: cannot unmarshal array into Go value of type util.versionStub"]
    );
}
