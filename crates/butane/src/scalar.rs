//! yaml.v3's scalar rules: how a plain scalar resolves, and what may be decoded
//! into Go `int`, `bool` and `string` fields (gopkg.in/yaml.v3 `resolve.go` and
//! `decode.go`). Butane inherits all of these quirks, e.g. `mode: 0644` is octal
//! and `enabled: yes` is true.

/// A plain scalar after yaml.v3 resolution.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved {
    /// `~`, `null`, `Null`, `NULL` or empty.
    Null,
    /// `true`/`false` in the YAML 1.2 spellings.
    Bool(bool),
    /// An integer (decimal, `0x`, `0o`, `0b`, or Go's leading-zero octal).
    Int(i128),
    /// A float, including `.inf` and `.nan`.
    Float(f64),
    /// Anything else.
    Str,
}

impl Resolved {
    /// yaml.v3's short tag for the resolved value.
    pub fn short_tag(&self) -> &'static str {
        match self {
            Resolved::Null => "!!null",
            Resolved::Bool(_) => "!!bool",
            Resolved::Int(_) => "!!int",
            Resolved::Float(_) => "!!float",
            Resolved::Str => "!!str",
        }
    }
}

/// Resolves a plain (unquoted, untagged) scalar like yaml.v3.
pub fn resolve(s: &str) -> Resolved {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Resolved::Null,
        "true" | "True" | "TRUE" => return Resolved::Bool(true),
        "false" | "False" | "FALSE" => return Resolved::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Resolved::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Resolved::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Resolved::Float(f64::NAN),
        _ => {}
    }
    let first = s.as_bytes()[0];
    if !(first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.')) {
        return Resolved::Str;
    }
    // yaml.v3 drops underscores before handing the text to strconv.ParseInt(_, 0, 64).
    let plain: String = s.chars().filter(|&c| c != '_').collect();
    if let Some(v) = parse_go_int(&plain) {
        return Resolved::Int(v);
    }
    if is_yaml_float(&plain) {
        if let Ok(f) = plain.parse::<f64>() {
            return Resolved::Float(f);
        }
    }
    Resolved::Str
}

/// Go's `strconv.ParseInt(s, 0, 64)` / `ParseUint` as yaml.v3 uses them.
fn parse_go_int(s: &str) -> Option<i128> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if body.is_empty() {
        return None;
    }
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d.to_string())
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d.to_string())
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d.to_string())
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].to_string())
    } else {
        (10, lower.clone())
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let v = i128::from_str_radix(&digits, radix).ok()?;
    // Signed values must fit int64; unsigned ones uint64.
    if neg {
        (v <= i64::MAX as i128 + 1).then_some(-v)
    } else {
        (v <= u64::MAX as i128).then_some(v)
    }
}

/// yaml.v3's `yamlStyleFloat`: `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn is_yaml_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            digits(&mut i);
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Decodes a scalar into a Go `bool` field. `yes/no/on/off` (YAML 1.1) are
/// accepted because yaml.v3 allows them when the target type is bool.
pub fn to_bool(value: &str, tag: &str) -> Option<bool> {
    if tag == "!!bool" {
        if let Resolved::Bool(b) = resolve(value) {
            return Some(b);
        }
    }
    if tag == "!!str" {
        return match value {
            "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Some(true),
            "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => Some(false),
            _ => None,
        };
    }
    None
}

/// Decodes a scalar into a Go `int` field (64-bit).
pub fn to_int(value: &str, tag: &str) -> Option<i64> {
    match (tag, resolve(value)) {
        ("!!int", Resolved::Int(v)) => i64::try_from(v).ok(),
        // yaml.v3 accepts a float for an int field when it converts without overflow.
        ("!!float", Resolved::Float(f)) if f.is_finite() && f.abs() < 9.2e18 => Some(f as i64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_and_hex_modes() {
        for s in [
            "0644",
            "0o644",
            "0x1a4",
            "420",
            "+420",
            "0b110100100",
            "4_20",
        ] {
            assert_eq!(to_int(s, "!!int"), Some(420), "{s}");
            assert_eq!(resolve(s).short_tag(), "!!int", "{s}");
        }
        assert_eq!(resolve("0999"), Resolved::Float(999.0));
        assert_eq!(resolve("-0o10"), Resolved::Int(-8));
    }

    #[test]
    fn strings_that_look_like_numbers() {
        assert_eq!(resolve("rw-r--r--"), Resolved::Str);
        assert_eq!(resolve("1.6.0"), Resolved::Str);
        assert_eq!(resolve("1.6"), Resolved::Float(1.6));
        assert_eq!(resolve("0x"), Resolved::Str);
        assert_eq!(to_int("abc", "!!str"), None);
        assert_eq!(to_int("2.0", "!!float"), Some(2));
    }

    #[test]
    fn yaml_1_1_booleans_into_bool_fields() {
        assert_eq!(to_bool("yes", "!!str"), Some(true));
        assert_eq!(to_bool("Off", "!!str"), Some(false));
        assert_eq!(to_bool("TRUE", "!!bool"), Some(true));
        assert_eq!(to_bool("maybe", "!!str"), None);
        assert_eq!(to_bool("1", "!!int"), None);
        assert_eq!(resolve("yes"), Resolved::Str);
    }

    #[test]
    fn nulls() {
        for s in ["", "~", "null", "NULL"] {
            assert_eq!(resolve(s), Resolved::Null);
        }
    }
}
