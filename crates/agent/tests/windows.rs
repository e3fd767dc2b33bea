//! Maintenance-window maths with fixed instants: week wrap, time zones, DST.

use agent::config::resolve_time_zone;
use agent::strategy::Strategy;
use agent::weekly::{Calendar, Window};
use jiff::civil::Weekday;
use jiff::Timestamp;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn cal(tz: &str, windows: &[(Weekday, u32, u32)]) -> Calendar {
    let w = windows
        .iter()
        .map(|&(day, start_minute, length_minutes)| Window {
            day,
            start_minute,
            length_minutes,
        })
        .collect();
    Calendar::new(w, resolve_time_zone(tz).unwrap(), tz)
}

/// Minutes of a day during which `c` is open, probing each minute from `start`.
fn open_minutes(c: &Calendar, start: &str, minutes: i64) -> i64 {
    let t0 = ts(start).as_second();
    (0..minutes)
        .filter(|m| c.is_open(Timestamp::from_second(t0 + m * 60).unwrap()))
        .count() as i64
}

#[test]
fn window_crossing_midnight_and_week_end() {
    // Sunday 23:00 UTC for 2 hours: open until Monday 01:00.
    let c = cal("UTC", &[(Weekday::Sunday, 23 * 60, 120)]);
    assert!(!c.is_open(ts("2025-02-09T22:59:59Z"))); // Sun
    assert!(c.is_open(ts("2025-02-09T23:00:00Z")));
    assert!(c.is_open(ts("2025-02-10T00:30:00Z"))); // Mon
    assert!(c.is_open(ts("2025-02-10T00:59:59Z")));
    assert!(!c.is_open(ts("2025-02-10T01:00:00Z")));
    assert_eq!(c.length_minutes(), 120);
    assert_eq!(
        c.next_open(ts("2025-02-10T01:00:00Z")).unwrap().timestamp(),
        ts("2025-02-16T23:00:00Z")
    );
    // Friday 22:00 for 3 hours crosses midnight into Saturday.
    let c = cal("UTC", &[(Weekday::Friday, 22 * 60, 180)]);
    assert!(c.is_open(ts("2025-02-08T00:59:00Z")));
    assert!(!c.is_open(ts("2025-02-08T01:00:00Z")));
}

#[test]
fn time_zone_shifts_the_window() {
    // Tuesday 09:30 New York (EST, UTC-5) = 14:30 UTC.
    let c = cal("America/New_York", &[(Weekday::Tuesday, 9 * 60 + 30, 60)]);
    assert!(!c.is_open(ts("2025-02-04T14:29:00Z")));
    assert!(c.is_open(ts("2025-02-04T14:30:00Z")));
    assert!(!c.is_open(ts("2025-02-04T15:30:00Z")));
    let next = c.next_open(ts("2025-02-04T12:00:00Z")).unwrap();
    assert_eq!(
        next.to_string(),
        "2025-02-04T09:30:00-05:00[America/New_York]"
    );
    // Asia/Kolkata has a half-hour offset (UTC+5:30).
    let c = cal("Asia/Kolkata", &[(Weekday::Monday, 0, 30)]);
    assert!(c.is_open(ts("2025-02-09T18:30:00Z"))); // Mon 00:00 IST
    assert!(!c.is_open(ts("2025-02-09T19:00:00Z")));
}

#[test]
fn dst_spring_forward_shortens_and_skips() {
    // 2025-03-09: New York clocks jump from 02:00 to 03:00.
    let day = "2025-03-09T05:00:00Z"; // local midnight
                                      // 01:30 for 60 wall minutes: 01:30–02:00 happens, 02:00–02:30 does not exist.
    let c = cal("America/New_York", &[(Weekday::Sunday, 90, 60)]);
    assert_eq!(open_minutes(&c, day, 24 * 60), 30);
    // Entirely inside the gap: never opens that day.
    let c = cal("America/New_York", &[(Weekday::Sunday, 2 * 60 + 10, 20)]);
    assert_eq!(open_minutes(&c, day, 24 * 60), 0);
    // next_open skips the nonexistent start and finds the following Sunday.
    let next = c.next_open(ts("2025-03-09T05:00:00Z")).unwrap();
    assert_eq!(
        next.to_string(),
        "2025-03-16T02:10:00-04:00[America/New_York]"
    );
}

#[test]
fn dst_fall_back_lengthens() {
    // 2025-11-02: New York clocks go from 02:00 EDT back to 01:00 EST.
    let day = "2025-11-02T04:00:00Z"; // local midnight (EDT)
    let c = cal("America/New_York", &[(Weekday::Sunday, 60, 60)]);
    // 01:00–02:00 is lived twice.
    assert_eq!(open_minutes(&c, day, 25 * 60), 120);
    // The first occurrence is the next opening.
    let next = c.next_open(ts("2025-11-02T04:00:00Z")).unwrap();
    assert_eq!(next.timestamp(), ts("2025-11-02T05:00:00Z"));
}

#[tokio::test]
async fn periodic_strategy_answers_with_the_next_window() {
    let s = Strategy::Periodic(cal("UTC", &[(Weekday::Wednesday, 3 * 60, 30)]));
    assert!(s.can_finalize(ts("2025-02-05T03:10:00Z")).await.is_ok());
    match s.can_finalize(ts("2025-02-05T03:30:00Z")).await {
        Err(agent::status::Hold::WindowClosed { next_window }) => assert_eq!(
            next_window.as_deref(),
            Some("2025-02-12T03:00:00+00:00[UTC]")
        ),
        other => panic!("{other:?}"),
    }
    assert!(Strategy::Immediate
        .can_finalize(ts("2025-02-05T03:30:00Z"))
        .await
        .is_ok());
}

#[test]
fn unknown_zone_is_an_error() {
    assert!(resolve_time_zone("Mars/Olympus_Mons").is_err());
    assert!(resolve_time_zone("Europe/Paris").is_ok());
}
