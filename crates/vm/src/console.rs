//! The serial console as the harness sees it: cleaned, time-stamped lines and
//! the patterns tests wait for.

use std::fmt;

/// One line printed on the guest's serial console (or by QEMU on stderr).
#[derive(Debug, Clone, PartialEq)]
pub struct ConsoleLine {
    /// Which QEMU launch printed it: 1 for the first boot, +1 per relaunch.
    pub boot: u32,
    /// Seconds since that QEMU process was started.
    pub secs: f64,
    /// The text, without the line ending, escape sequences or control characters.
    pub text: String,
}

impl fmt::Display for ConsoleLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{} {:8.2}] {}", self.boot, self.secs, self.text)
    }
}

/// What [`crate::Vm::wait_for`] looks for in a console line.
#[derive(Debug, Clone)]
pub enum Pattern {
    /// The line contains this text.
    Substring(String),
    /// The regular expression matches somewhere in the line.
    Regex(regex_lite::Regex),
}

impl Pattern {
    /// A pattern from a regular expression (`regex-lite` syntax).
    pub fn regex(re: &str) -> Result<Pattern, crate::Error> {
        regex_lite::Regex::new(re)
            .map(Pattern::Regex)
            .map_err(|e| crate::Error::Invalid {
                what: format!("console pattern {re:?}"),
                reason: e.to_string(),
            })
    }

    /// Whether `text` (one console line) matches.
    pub fn matches(&self, text: &str) -> bool {
        match self {
            Pattern::Substring(s) => text.contains(s.as_str()),
            Pattern::Regex(r) => r.is_match(text),
        }
    }
}

impl From<&str> for Pattern {
    fn from(s: &str) -> Pattern {
        Pattern::Substring(s.to_string())
    }
}

impl From<String> for Pattern {
    fn from(s: String) -> Pattern {
        Pattern::Substring(s)
    }
}

impl From<&Pattern> for Pattern {
    fn from(p: &Pattern) -> Pattern {
        p.clone()
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Substring(s) => write!(f, "{s:?}"),
            Pattern::Regex(r) => write!(f, "/{}/", r.as_str()),
        }
    }
}

/// Turns raw console bytes (one line) into plain text: the serial console
/// carries colour codes from systemd and `\r` from the tty layer, which would
/// otherwise end up in logs and break substring matches.
pub(crate) fn clean(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                // CSI: ESC [ params final-byte; other escapes: drop ESC + one char.
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_strips_colour_codes_and_carriage_returns() {
        let raw =
            b"[\x1b[0;32m  OK  \x1b[0m] Reached target \x1b[0;1;39mMulti-User System\x1b[0m.\r";
        assert_eq!(clean(raw), "[  OK  ] Reached target Multi-User System.");
    }

    #[test]
    fn clean_keeps_invalid_utf8_visible() {
        assert_eq!(clean(b"a\xffb"), "a\u{fffd}b");
    }

    #[test]
    fn patterns_match_substrings_and_regexes() {
        let p = Pattern::from("reboot: Power down");
        assert!(p.matches("[   20.1] reboot: Power down"));
        assert!(!p.matches("reboot: Restarting system"));
        let r = Pattern::regex(r"ignition: .*\$\.storage\.files\.0\.contents").unwrap();
        assert!(r.matches("ignition: $.storage.files.0.contents.verification: hash mismatch"));
        assert!(!r.matches("ignition: ok"));
        assert_eq!(
            r.to_string(),
            r"/ignition: .*\$\.storage\.files\.0\.contents/"
        );
    }

    #[test]
    fn bad_regex_is_an_error_naming_the_pattern() {
        let e = Pattern::regex("(unclosed").unwrap_err().to_string();
        assert!(e.contains("(unclosed"), "{e}");
    }
}
