//! Translation of a config up the version chain (upstream `config/v3_*/translate`).
//!
//! The typed model already holds every version's fields, so a step only has to
//! apply the semantic changes and bump `ignition.version`:
//! * 3.0→3.1, 3.2→3.3: fields that were plain strings become pointers; an unset
//!   plain string was `""`, so the pointer becomes `Some("")` (a 3.2 link without
//!   a target or a raid without a level are not re-validated by Ignition).
//! * 3.5→3.6: file and directory modes lose the setuid/setgid/sticky bits, which
//!   older specs documented as unsupported.
//!
//! Deliberate deviation: upstream's 3.4→3.5 step (`translateTang`) drops
//! `clevis.tang[].advertisement`. That field exists unchanged in 3.5+, so losing it
//! only makes Clevis fetch the advertisement over the network at first boot; we
//! keep it.

use crate::types::Config;
use crate::SpecVersion;

/// Translates `cfg` (of version `from`) up to version `to`, step by step, setting
/// `ignition.version` at each step. When `from >= to`, `cfg` is returned unchanged.
pub fn translate_up(mut cfg: Config, from: SpecVersion, to: SpecVersion) -> Config {
    let mut v = from;
    while v < to {
        let Some(next) = v.next() else { break };
        step(&mut cfg, v);
        cfg.ignition.version = next.to_string();
        v = next;
    }
    cfg
}

fn step(cfg: &mut Config, from: SpecVersion) {
    match from {
        SpecVersion::V3_0_0 => {
            for ca in &mut cfg.ignition.security.tls.certificate_authorities {
                ca.source.get_or_insert_with(String::new);
            }
        }
        SpecVersion::V3_2_0 => {
            for l in &mut cfg.storage.links {
                l.target.get_or_insert_with(String::new);
            }
            for r in &mut cfg.storage.raid {
                r.level.get_or_insert_with(String::new);
            }
        }
        SpecVersion::V3_5_0 => {
            for f in &mut cfg.storage.files {
                if let Some(m) = &mut f.mode {
                    *m &= !0o7000;
                }
            }
            for d in &mut cfg.storage.directories {
                if let Some(m) = &mut d.mode {
                    *m &= !0o7000;
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::*;

    #[test]
    fn masks_special_bits_from_3_5() {
        let mut c = Config::with_version(SpecVersion::V3_5_0);
        c.storage.files.push(File {
            path: "/a".into(),
            mode: Some(0o4755),
            ..Default::default()
        });
        c.storage.directories.push(Directory {
            path: "/d".into(),
            mode: Some(0o1777),
            ..Default::default()
        });
        let t = translate_up(c.clone(), SpecVersion::V3_5_0, SpecVersion::LATEST);
        assert_eq!(t.storage.files[0].mode, Some(0o755));
        assert_eq!(t.storage.directories[0].mode, Some(0o777));
        assert_eq!(t.ignition.version, "3.7.0-experimental");
        let t6 = translate_up(
            Config::with_version(SpecVersion::V3_6_0),
            SpecVersion::V3_6_0,
            SpecVersion::LATEST,
        );
        assert_eq!(t6.ignition.version, "3.7.0-experimental");
        let same = translate_up(c.clone(), SpecVersion::V3_6_0, SpecVersion::V3_6_0);
        assert_eq!(same, c);
    }

    #[test]
    fn plain_strings_become_pointers() {
        let mut c = Config::with_version(SpecVersion::V3_2_0);
        c.storage.links.push(Link {
            path: "/l".into(),
            ..Default::default()
        });
        c.storage.raid.push(Raid {
            name: "md".into(),
            ..Default::default()
        });
        let t = translate_up(c, SpecVersion::V3_2_0, SpecVersion::V3_3_0);
        assert_eq!(t.storage.links[0].target.as_deref(), Some(""));
        assert_eq!(t.storage.raid[0].level.as_deref(), Some(""));
        assert_eq!(t.ignition.version, "3.3.0");
    }
}
