//! The little calendar arithmetic metadata needs (`last-modified` stamps).

use std::time::{SystemTime, UNIX_EPOCH};

/// Current unix time in seconds (0 if the clock is before 1970).
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Formats unix seconds as RFC 3339 UTC with second precision (`2026-07-21T14:07:12Z`),
/// the form upstream uses for every `last-modified` key.
pub fn rfc3339_utc(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| format!("@{unix}"))
}

#[cfg(test)]
mod tests {
    use super::rfc3339_utc;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        // start_epoch of the real stable rollout, documented as 2026-07-22 14:00 UTC.
        assert_eq!(rfc3339_utc(1_784_728_800), "2026-07-22T14:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(-1), "1969-12-31T23:59:59Z");
    }
}
