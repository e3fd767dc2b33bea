//! Ignition spec versions.

use std::fmt;
use std::str::FromStr;

/// One Ignition config spec version. Ordered oldest first.
///
/// Only the exact version strings are accepted by [`FromStr`]; Ignition compares
/// versions exactly (including the pre-release), so `3.6.0-experimental` is not a
/// version of this list once 3.6.0 is stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SpecVersion {
    /// 3.0.0 (Ignition 2.0.0).
    V3_0_0,
    /// 3.1.0 (Ignition 2.3.0).
    V3_1_0,
    /// 3.2.0 (Ignition 2.7.0).
    V3_2_0,
    /// 3.3.0 (Ignition 2.11.0).
    V3_3_0,
    /// 3.4.0 (Ignition 2.15.0).
    V3_4_0,
    /// 3.5.0 (Ignition 2.20.0).
    V3_5_0,
    /// 3.6.0 (Ignition 2.26.0).
    V3_6_0,
    /// 3.7.0-experimental (Ignition 2.26.0).
    V3_7_0Experimental,
}

impl SpecVersion {
    /// The version of the typed model, i.e. what every config is translated up to.
    pub const LATEST: SpecVersion = SpecVersion::V3_7_0Experimental;
    /// The newest stable version (what Ignition advertises in its Accept header).
    pub const LATEST_STABLE: SpecVersion = SpecVersion::V3_6_0;
    /// Every version, oldest first.
    pub const ALL: [SpecVersion; 8] = [
        SpecVersion::V3_0_0,
        SpecVersion::V3_1_0,
        SpecVersion::V3_2_0,
        SpecVersion::V3_3_0,
        SpecVersion::V3_4_0,
        SpecVersion::V3_5_0,
        SpecVersion::V3_6_0,
        SpecVersion::V3_7_0Experimental,
    ];

    /// The version string as written in `ignition.version`.
    pub fn as_str(self) -> &'static str {
        match self {
            SpecVersion::V3_0_0 => "3.0.0",
            SpecVersion::V3_1_0 => "3.1.0",
            SpecVersion::V3_2_0 => "3.2.0",
            SpecVersion::V3_3_0 => "3.3.0",
            SpecVersion::V3_4_0 => "3.4.0",
            SpecVersion::V3_5_0 => "3.5.0",
            SpecVersion::V3_6_0 => "3.6.0",
            SpecVersion::V3_7_0Experimental => "3.7.0-experimental",
        }
    }

    /// Whether this is an experimental (unstable) spec.
    pub fn is_experimental(self) -> bool {
        self == SpecVersion::V3_7_0Experimental
    }

    /// The next version up, if any.
    pub fn next(self) -> Option<SpecVersion> {
        let i = SpecVersion::ALL.iter().position(|v| *v == self)?;
        SpecVersion::ALL.get(i + 1).copied()
    }

    /// Matches a parsed semantic version exactly (major, minor, patch, pre-release,
    /// build metadata), the way go-semver's `Version ==` does.
    pub(crate) fn from_semver(v: &Semver) -> Option<SpecVersion> {
        if !v.metadata.is_empty() {
            return None;
        }
        SpecVersion::ALL.into_iter().find(|sv| {
            let want = Semver::parse(sv.as_str()).expect("own version strings are semver");
            want == *v
        })
    }
}

impl fmt::Display for SpecVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error of [`SpecVersion::from_str`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownVersion(pub String);

impl fmt::Display for UnknownVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unsupported config version {:?}", self.0)
    }
}

impl std::error::Error for UnknownVersion {}

impl FromStr for SpecVersion {
    type Err = UnknownVersion;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SpecVersion::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownVersion(s.to_string()))
    }
}

/// A semantic version as go-semver parses it (`MAJOR.MINOR.PATCH[-PRE][+META]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Semver {
    major: i64,
    minor: i64,
    patch: i64,
    pre: String,
    metadata: String,
}

impl Semver {
    /// Parses like go-semver's `NewVersion`; `None` where it returns an error.
    pub(crate) fn parse(s: &str) -> Option<Semver> {
        let (rest, metadata) = match s.split_once('+') {
            Some((a, b)) => (a, b.to_string()),
            None => (s, String::new()),
        };
        let (core, pre) = match rest.split_once('-') {
            Some((a, b)) => (a, b.to_string()),
            None => (rest, String::new()),
        };
        let parts: Vec<&str> = core.split('.').collect();
        if parts.len() != 3 {
            return None;
        }
        let num = |p: &str| -> Option<i64> {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            p.parse().ok()
        };
        for part in [&pre, &metadata] {
            for id in part.split('.').filter(|_| !part.is_empty()) {
                if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                    return None;
                }
            }
        }
        Some(Semver {
            major: num(parts[0])?,
            minor: num(parts[1])?,
            patch: num(parts[2])?,
            pre,
            metadata,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_strings() {
        for v in SpecVersion::ALL {
            assert_eq!(v.as_str().parse::<SpecVersion>().unwrap(), v);
            assert_eq!(
                SpecVersion::from_semver(&Semver::parse(v.as_str()).unwrap()),
                Some(v)
            );
        }
        assert!("3.6.0-experimental".parse::<SpecVersion>().is_err());
        assert_eq!(
            SpecVersion::from_semver(&Semver::parse("3.7.0").unwrap()),
            None
        );
        assert!(Semver::parse("3.0").is_none());
        assert!(Semver::parse("3.0.0+a..b").is_none());
        assert_eq!(
            SpecVersion::from_semver(&Semver::parse("03.0.0").unwrap()),
            Some(SpecVersion::V3_0_0)
        );
        assert_eq!(
            SpecVersion::from_semver(&Semver::parse("3.0.0+build").unwrap()),
            None
        );
        assert!(SpecVersion::V3_0_0 < SpecVersion::LATEST);
    }
}
