//! Weekly maintenance windows for the `periodic` strategy.
//!
//! Like Zincati (coreos/zincati:src/weekly), a window is a weekday, a wall-clock
//! start time and a length in minutes, evaluated on the wall clock of one configured
//! time zone. Time is reduced to the minute of the week (Monday 00:00 = 0); a window
//! that runs past Sunday 23:59 wraps to Monday, so membership is a modular
//! comparison rather than Zincati's split intervals. Because windows are wall-clock
//! times, daylight saving changes lengthen, shorten or skip a window exactly as they
//! do upstream (coreos/zincati#301): a window inside the spring-forward gap does not
//! open that day.
//!
//! Zones are read from the system tzdb (`/usr/share/zoneinfo`, Debian `tzdata`)
//! through `jiff`: pure Rust with a single small dependency, DST-correct, and, like
//! Zincati, following the OS's tzdata updates rather than a copy compiled into the
//! binary (as `chrono-tz` would embed).

use jiff::civil::{DateTime, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

/// Minutes in a week: the longest allowed window and the modulus of window maths.
pub const WEEK_MINUTES: u32 = 7 * 24 * 60;

/// One maintenance window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Day the window starts on.
    pub day: Weekday,
    /// Start, minutes after local midnight (0..1440).
    pub start_minute: u32,
    /// Length in minutes (1..=10080).
    pub length_minutes: u32,
}

impl Window {
    /// Minute of the week the window opens at.
    pub fn start_of_week(&self) -> u32 {
        u32::from(self.day.to_monday_zero_offset().unsigned_abs()) * 1440 + self.start_minute
    }

    /// Whether minute-of-week `m` falls inside the window (wrapping past Sunday).
    pub fn contains_minute(&self, m: u32) -> bool {
        (m + WEEK_MINUTES - self.start_of_week()) % WEEK_MINUTES < self.length_minutes
    }
}

/// Parses an English day name, full or three-letter, any case. Zincati misspells
/// the full Tuesday (`tuesady`) and rejects "Tuesday"; both forms work here.
pub fn parse_day(s: &str) -> Option<Weekday> {
    let d = s.trim().to_ascii_lowercase();
    let day = match d.as_str() {
        "mon" | "monday" => Weekday::Monday,
        "tue" | "tuesday" => Weekday::Tuesday,
        "wed" | "wednesday" => Weekday::Wednesday,
        "thu" | "thursday" => Weekday::Thursday,
        "fri" | "friday" => Weekday::Friday,
        "sat" | "saturday" => Weekday::Saturday,
        "sun" | "sunday" => Weekday::Sunday,
        _ => return None,
    };
    Some(day)
}

/// Parses a 24-hour `H:MM` or `HH:MM` time into minutes after midnight.
pub fn parse_time(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    let digits = |x: &str, max: u32| {
        if x.is_empty() || x.len() > 2 || !x.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        x.parse::<u32>().ok().filter(|v| *v <= max)
    };
    // Minutes always take two digits, as upstream's "%H:%M"-like format.
    if m.len() != 2 {
        return None;
    }
    Some(digits(h, 23)? * 60 + digits(m, 59)?)
}

fn minute_of_week(dt: DateTime) -> u32 {
    u32::from(dt.weekday().to_monday_zero_offset().unsigned_abs()) * 1440
        + u32::from(dt.hour().unsigned_abs()) * 60
        + u32::from(dt.minute().unsigned_abs())
}

/// A set of windows in one time zone.
#[derive(Debug, Clone)]
pub struct Calendar {
    windows: Vec<Window>,
    tz: TimeZone,
    tz_name: String,
}

impl Calendar {
    /// A calendar of `windows` evaluated in `tz` (named `tz_name` in messages).
    pub fn new(windows: Vec<Window>, tz: TimeZone, tz_name: impl Into<String>) -> Self {
        Calendar {
            windows,
            tz,
            tz_name: tz_name.into(),
        }
    }

    /// The windows.
    pub fn windows(&self) -> &[Window] {
        &self.windows
    }

    /// Name of the time zone, as configured.
    pub fn tz_name(&self) -> &str {
        &self.tz_name
    }

    /// Minutes of the week covered by at least one window (overlaps count once).
    pub fn length_minutes(&self) -> u32 {
        let mut covered = vec![false; WEEK_MINUTES as usize];
        for w in &self.windows {
            for i in 0..w.length_minutes.min(WEEK_MINUTES) {
                covered[((w.start_of_week() + i) % WEEK_MINUTES) as usize] = true;
            }
        }
        covered.iter().filter(|c| **c).count() as u32
    }

    /// Whether instant `now` falls inside a window on this calendar's wall clock.
    pub fn is_open(&self, now: Timestamp) -> bool {
        let local = now.to_zoned(self.tz.clone()).datetime();
        let m = minute_of_week(local);
        self.windows.iter().any(|w| w.contains_minute(m))
    }

    /// The first instant strictly after `now` at which a window opens, or `None`
    /// without windows. A start that falls in a DST gap is skipped, as the wall
    /// clock never shows it.
    pub fn next_open(&self, now: Timestamp) -> Option<Zoned> {
        let today = now.to_zoned(self.tz.clone()).date();
        let mut best: Option<Zoned> = None;
        // Eight days cover every weekday after today's already-passed starts.
        for offset in 0..=8i64 {
            let Ok(date) = today.checked_add(jiff::Span::new().days(offset)) else {
                continue;
            };
            for w in self.windows.iter().filter(|w| w.day == date.weekday()) {
                let (h, m) = (w.start_minute / 60, w.start_minute % 60);
                let dt = date.at(h as i8, m as i8, 0, 0);
                let Ok(z) = self.tz.to_ambiguous_zoned(dt).earlier() else {
                    continue;
                };
                if z.datetime() != dt || z.timestamp() <= now {
                    continue;
                }
                if best.as_ref().is_none_or(|b| z.timestamp() < b.timestamp()) {
                    best = Some(z);
                }
            }
            if best.is_some() {
                break;
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_names() {
        assert_eq!(parse_day("Tuesday"), Some(Weekday::Tuesday));
        assert_eq!(parse_day("tue"), Some(Weekday::Tuesday));
        assert_eq!(parse_day("SUN"), Some(Weekday::Sunday));
        assert_eq!(parse_day("tuesady"), None);
        assert_eq!(parse_day("Tues"), None);
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("0:00"), Some(0));
        assert_eq!(parse_time("23:59"), Some(1439));
        assert_eq!(parse_time("07:05"), Some(425));
        for bad in [
            "24:00", "12:60", "1:5", "", ":30", "12", "-1:00", "123:00", "+1:00",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn wrap_and_length() {
        let w = Window {
            day: Weekday::Sunday,
            start_minute: 23 * 60,
            length_minutes: 120,
        };
        assert!(w.contains_minute(WEEK_MINUTES - 1));
        assert!(w.contains_minute(0));
        assert!(w.contains_minute(59));
        assert!(!w.contains_minute(60));
        let cal = Calendar::new(vec![w, w], TimeZone::UTC, "UTC");
        assert_eq!(cal.length_minutes(), 120);
    }
}
