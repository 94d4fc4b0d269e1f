//! Sync windows (SPEC §11): when automatic syncs may run. A [`SyncWindow`] is a cron schedule,
//! read in UTC, and a duration: each time the schedule fires, the window opens for that long.
//! [`gate`] folds a list of windows into a [`Gate`] (open, or closed until a given time), and
//! [`parse_windows`] reads the `SYNC_WINDOWS` syntax.
//!
//! Pure: every function takes `now`, nothing reads a clock, and UTC has no daylight saving time,
//! so no fire time is skipped or repeated. Whole seconds are the precision: fire times are whole
//! minutes, and `now` is compared with them exactly. Uses no other module of the crate; the cron
//! grammar and the search for fire times are croner's (standard 5-field cron, where 0 and 7 are
//! both Sunday and a restricted day-of-month and day-of-week match either, as in Vixie cron;
//! croner's extensions `L`, `W`, `#` and a `+` for day-of-month AND day-of-week are accepted too).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// What a schedule is, for error messages.
const FIELDS: &str = "5 fields: minute hour day-of-month month day-of-week, UTC";

/// One window: a cron schedule (5 fields, UTC) and how long each opening lasts.
#[derive(Debug, Clone)]
pub struct SyncWindow {
    /// The schedule as given, with its whitespace collapsed to single spaces.
    schedule: String,
    duration: Duration,
    cron: Cron,
}

impl PartialEq for SyncWindow {
    /// The text and the duration decide; the parsed form follows from the text.
    fn eq(&self, other: &Self) -> bool {
        self.schedule == other.schedule && self.duration == other.duration
    }
}

impl Eq for SyncWindow {}

impl serde::Serialize for SyncWindow {
    /// `{"schedule": "0 2 * * 6", "duration": "2h"}`.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut state = serializer.serialize_struct("SyncWindow", 2)?;
        state.serialize_field("schedule", &self.schedule)?;
        let duration = humantime::format_duration(self.duration).to_string();
        state.serialize_field("duration", &duration)?;
        state.end()
    }
}

/// Why a window was refused: what was wrong and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// Not five fields: too few, or a seconds or year field (or a nickname like `@daily`).
    #[error(
        "schedule {schedule:?}: not a cron schedule ({FIELDS}): it has {fields} field{plural}",
        plural = if *fields == 1 { "" } else { "s" }
    )]
    FieldCount { schedule: String, fields: usize },
    /// Five fields that croner refuses: a value out of range, an unknown name, bad syntax.
    #[error("schedule {schedule:?}: not a cron schedule ({FIELDS}): {reason}")]
    Cron { schedule: String, reason: String },
    /// A valid schedule that matches no date, such as `0 0 30 2 *` (February 30th).
    #[error("schedule {schedule:?} never fires (no date matches it)")]
    NeverFires { schedule: String },
    #[error("duration must be more than 0")]
    ZeroDuration,
}

impl SyncWindow {
    /// Parses `schedule` as a 5-field cron expression in UTC. Refuses other field counts, values
    /// out of range, schedules that never fire, and a zero `duration`.
    pub fn new(schedule: &str, duration: Duration) -> Result<Self, WindowError> {
        let fields: Vec<&str> = schedule.split_whitespace().collect();
        let schedule = fields.join(" ");
        if fields.len() != 5 {
            return Err(WindowError::FieldCount {
                schedule,
                fields: fields.len(),
            });
        }
        // Five fields only (croner would take a seconds and a year field too); POSIX weekdays
        // (0-7, Sunday is 0 and 7), day-of-month OR day-of-week, strict step syntax.
        let parser = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build();
        let cron = parser.parse(&schedule).map_err(|e| WindowError::Cron {
            reason: culprit(&parser, &fields).unwrap_or_else(|| croner_reason(&e)),
            schedule: schedule.clone(),
        })?;
        if duration.is_zero() {
            return Err(WindowError::ZeroDuration);
        }
        // Without a year field every schedule repeats with the 400-year Gregorian calendar, so
        // one that fires after any instant fires forever; one that does not never fires.
        if cron.find_next_occurrence(&EPOCH_UTC, true).is_err() {
            return Err(WindowError::NeverFires { schedule });
        }
        Ok(Self {
            schedule,
            duration,
            cron,
        })
    }

    /// The schedule, with its whitespace collapsed to single spaces.
    pub fn schedule(&self) -> &str {
        &self.schedule
    }

    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// Whether `now` falls inside one opening: some fire time s with s <= now < s + duration.
    pub fn is_open(&self, now: SystemTime) -> bool {
        // s <= now < s + duration is now - duration < s <= now: the first fire time strictly
        // after now - duration must not be later than now. Fire times are whole seconds, so
        // rounding both bounds down to their second changes neither comparison.
        let (Some(now), Some(after)) =
            (to_utc(now), now.checked_sub(self.duration).and_then(to_utc))
        else {
            return false;
        };
        self.cron
            .find_next_occurrence(&after, false)
            .is_ok_and(|fire| fire <= now)
    }

    /// The first fire time strictly after `now` (None if it never fires again).
    pub fn next_opening(&self, now: SystemTime) -> Option<SystemTime> {
        // Rounding `now` down to its second keeps "strictly after": fire times are whole seconds.
        let fire = self.cron.find_next_occurrence(&to_utc(now)?, false).ok()?;
        from_utc(fire)
    }
}

/// Whether automatic syncs may run now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Inside a window, or no windows at all.
    Open,
    /// Outside every window; `opens` is when the first of them opens next.
    Closed { opens: Option<SystemTime> },
}

/// `windows` empty → Open (no restriction). Open if any window is open; else Closed with the
/// earliest next opening of any window.
pub fn gate(windows: &[SyncWindow], now: SystemTime) -> Gate {
    if windows.is_empty() || windows.iter().any(|w| w.is_open(now)) {
        return Gate::Open;
    }
    Gate::Closed {
        opens: windows.iter().filter_map(|w| w.next_opening(now)).min(),
    }
}

/// The `SYNC_WINDOWS` syntax: windows separated by `;`, each a 5-field cron expression (UTC)
/// followed by a duration, e.g. `0 2 * * 6 2h; 30 1 * * * 45m`.
///
/// The duration is the last whitespace-separated token, in humantime's syntax without spaces
/// (`2h`, `45m`, `1h30m`; `1h 30m` is refused). Empty parts (`a;;b`, a trailing `;`) are
/// skipped, and empty or whitespace-only text is no window at all. An error names the window
/// by its position (1-based, counting the non-empty parts) and its text, and says why.
pub fn parse_windows(text: &str) -> Result<Vec<SyncWindow>, String> {
    let parts = text.split(';').map(str::trim).filter(|p| !p.is_empty());
    parts
        .enumerate()
        .map(|(index, part)| {
            parse_window(part).map_err(|e| format!("window {} ({part:?}): {e}", index + 1))
        })
        .collect()
}

/// One part of [`parse_windows`]: `<5 cron fields> <duration>`.
fn parse_window(part: &str) -> Result<SyncWindow, String> {
    let tokens: Vec<&str> = part.split_whitespace().collect();
    let Some((duration, fields)) = tokens.split_last().filter(|(_, f)| !f.is_empty()) else {
        return Err(format!(
            "give a cron schedule ({FIELDS}) and then a duration, e.g. `0 2 * * 6 2h`"
        ));
    };
    let duration = humantime::parse_duration(duration).map_err(|e| {
        format!(
            "{duration:?} is not a duration ({e}); end the window with one, e.g. 2h, 45m, 1h30m"
        )
    })?;
    SyncWindow::new(&fields.join(" "), duration).map_err(|e| match e {
        // `0 2 * * 6 1h 30m`: the duration was split in two, and its first half read as a field.
        WindowError::FieldCount { fields: 6, .. }
            if fields
                .last()
                .is_some_and(|f| humantime::parse_duration(f).is_ok()) =>
        {
            format!("{e} (a duration is one token: write 1h30m, not 1h 30m)")
        }
        e => e.to_string(),
    })
}

/// The five fields' names and allowed values, in order.
const FIELD_RANGES: [(&str, &str); 5] = [
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31"),
    ("month", "1-12 or JAN-DEC"),
    ("day-of-week", "0-7 or SUN-SAT, 0 and 7 are Sunday"),
];

/// croner names neither the field nor its range ("Number out of bounds"): try each field alone,
/// the others `*`, and describe the first that fails by itself.
fn culprit(parser: &CronParser, fields: &[&str]) -> Option<String> {
    fields
        .iter()
        .zip(FIELD_RANGES)
        .enumerate()
        .find_map(|(index, (field, (name, range)))| {
            let mut alone = ["*"; 5];
            alone[index] = field;
            let e = parser.parse(&alone.join(" ")).err()?;
            Some(format!("{name} {field:?} ({range}): {}", croner_reason(&e)))
        })
}

/// croner's message, without its trailing period.
fn croner_reason(e: &croner::errors::CronError) -> String {
    e.to_string().trim_end_matches('.').to_owned()
}

/// 1970-01-01T00:00:00Z.
const EPOCH_UTC: DateTime<Utc> = DateTime::UNIX_EPOCH;

/// `time` in UTC, rounded down to its second; None outside chrono's range (±262,000 years).
fn to_utc(time: SystemTime) -> Option<DateTime<Utc>> {
    let seconds = match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).ok()?,
        Err(before) => {
            let before = before.duration();
            let whole = i64::try_from(before.as_secs()).ok()?;
            // Down, not toward the epoch: 0.5 s before it is in the second -1.
            -whole - i64::from(before.subsec_nanos() > 0)
        }
    };
    DateTime::from_timestamp(seconds, 0)
}

/// The inverse of [`to_utc`] (for whole seconds).
fn from_utc(time: DateTime<Utc>) -> Option<SystemTime> {
    let seconds = time.timestamp();
    let offset = Duration::from_secs(seconds.unsigned_abs());
    if seconds >= 0 {
        UNIX_EPOCH.checked_add(offset)
    } else {
        UNIX_EPOCH.checked_sub(offset)
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;

    /// A UTC instant. 2024-01-06 is a Saturday.
    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> SystemTime {
        let naive = NaiveDate::from_ymd_opt(y, mo, d)
            .and_then(|date| date.and_hms_opt(h, mi, s))
            .expect("a valid date");
        from_utc(naive.and_utc()).expect("in range")
    }

    fn window(schedule: &str, duration: &str) -> SyncWindow {
        SyncWindow::new(schedule, humantime::parse_duration(duration).unwrap()).unwrap()
    }

    fn hours(n: u64) -> Duration {
        Duration::from_secs(n * 3600)
    }

    #[test]
    fn a_saturday_night_window_is_open_from_its_fire_time_for_its_duration() {
        let w = window("0 2 * * 6", "2h");
        assert!(w.is_open(utc(2024, 1, 6, 2, 0, 0)));
        assert!(w.is_open(utc(2024, 1, 6, 3, 59, 59)));
        assert!(w.is_open(utc(2024, 1, 6, 3, 59, 59) + Duration::from_millis(999)));
        assert!(!w.is_open(utc(2024, 1, 6, 4, 0, 0)));
        assert!(!w.is_open(utc(2024, 1, 6, 1, 59, 59)));
        assert!(!w.is_open(utc(2024, 1, 6, 1, 59, 59) + Duration::from_millis(999)));
        assert!(!w.is_open(utc(2024, 1, 5, 2, 30, 0)), "a Friday");
        assert!(!w.is_open(utc(2024, 1, 7, 2, 30, 0)), "a Sunday");
    }

    #[test]
    fn the_next_opening_is_strictly_after_now() {
        let w = window("0 2 * * 6", "2h");
        assert_eq!(
            w.next_opening(utc(2024, 1, 5, 12, 0, 0)),
            Some(utc(2024, 1, 6, 2, 0, 0))
        );
        assert_eq!(
            w.next_opening(utc(2024, 1, 6, 2, 0, 0)),
            Some(utc(2024, 1, 13, 2, 0, 0)),
            "an opening that starts now is not the next"
        );
        assert_eq!(
            w.next_opening(utc(2024, 1, 6, 1, 59, 59) + Duration::from_millis(500)),
            Some(utc(2024, 1, 6, 2, 0, 0))
        );
    }

    #[test]
    fn the_next_opening_crosses_month_and_year_boundaries() {
        let saturdays = window("0 2 * * 6", "2h");
        assert_eq!(
            saturdays.next_opening(utc(2024, 12, 28, 4, 0, 0)),
            Some(utc(2025, 1, 4, 2, 0, 0))
        );
        let first_of_month = window("30 1 1 * *", "1h");
        assert_eq!(
            first_of_month.next_opening(utc(2024, 1, 31, 23, 0, 0)),
            Some(utc(2024, 2, 1, 1, 30, 0))
        );
        let leap_day = window("0 0 29 2 *", "1d");
        assert_eq!(
            leap_day.next_opening(utc(2024, 3, 1, 0, 0, 0)),
            Some(utc(2028, 2, 29, 0, 0, 0))
        );
        assert!(leap_day.is_open(utc(2024, 2, 29, 23, 59, 59)));
    }

    #[test]
    fn sunday_is_both_0_and_7() {
        let sunday = utc(2024, 1, 7, 2, 30, 0);
        for schedule in ["0 2 * * 0", "0 2 * * 7", "0 2 * * SUN", "0 2 * * 5-7"] {
            let w = window(schedule, "1h");
            assert!(w.is_open(sunday), "{schedule}");
            assert_eq!(
                w.next_opening(utc(2024, 1, 6, 12, 0, 0)),
                Some(utc(2024, 1, 7, 2, 0, 0)),
                "{schedule}"
            );
        }
        assert_eq!(window("0 2 * * 0", "1h"), window("0 2 * * 0", "1h"));
        assert!(!window("0 2 * * 1-6", "1h").is_open(sunday));
    }

    #[test]
    fn a_restricted_day_of_month_and_day_of_week_match_either_as_in_cron() {
        // The 13th, and every Friday: 2024-09-13 is a Friday, 2024-09-06 a Friday, 2024-10-13
        // a Sunday.
        let w = window("0 0 13 * 5", "1h");
        assert!(w.is_open(utc(2024, 9, 6, 0, 30, 0)));
        assert!(w.is_open(utc(2024, 10, 13, 0, 30, 0)));
        assert!(!w.is_open(utc(2024, 10, 14, 0, 30, 0)));
    }

    #[test]
    fn a_window_longer_than_the_period_between_fires_is_always_open() {
        let w = window("0 * * * *", "90m");
        for now in [
            utc(2024, 1, 6, 10, 0, 0),
            utc(2024, 1, 6, 10, 59, 59),
            utc(2024, 1, 6, 11, 45, 0),
            utc(2024, 12, 31, 23, 59, 59),
        ] {
            assert!(w.is_open(now));
        }
        assert_eq!(
            w.next_opening(utc(2024, 1, 6, 11, 45, 0)),
            Some(utc(2024, 1, 6, 12, 0, 0))
        );
        // Every 6 hours for 7 hours: the openings overlap and never leave a gap.
        let w = window("0 */6 * * *", "7h");
        assert!(w.is_open(utc(2024, 1, 6, 5, 59, 59)));
        // Every 6 hours for 5 hours: closed in the sixth hour.
        let w = window("0 */6 * * *", "5h");
        assert!(!w.is_open(utc(2024, 1, 6, 5, 0, 0)));
        assert!(w.is_open(utc(2024, 1, 6, 6, 0, 0)));
    }

    #[test]
    fn no_window_means_no_restriction() {
        assert_eq!(gate(&[], utc(2024, 1, 5, 12, 0, 0)), Gate::Open);
    }

    #[test]
    fn any_open_window_opens_the_gate_and_the_earliest_opening_is_named() {
        let windows = [window("0 2 * * 6", "2h"), window("30 1 * * *", "45m")];
        assert_eq!(
            gate(&windows, utc(2024, 1, 5, 12, 0, 0)),
            Gate::Closed {
                opens: Some(utc(2024, 1, 6, 1, 30, 0))
            }
        );
        assert_eq!(gate(&windows, utc(2024, 1, 6, 1, 45, 0)), Gate::Open);
        assert_eq!(gate(&windows, utc(2024, 1, 6, 3, 0, 0)), Gate::Open);
        assert_eq!(
            gate(&windows, utc(2024, 1, 6, 4, 0, 0)),
            Gate::Closed {
                opens: Some(utc(2024, 1, 7, 1, 30, 0))
            }
        );
        // The order of the list does not matter.
        let reversed = [windows[1].clone(), windows[0].clone()];
        assert_eq!(
            gate(&reversed, utc(2024, 1, 5, 12, 0, 0)),
            gate(&windows, utc(2024, 1, 5, 12, 0, 0))
        );
    }

    #[test]
    fn schedules_other_than_five_valid_fields_are_refused() {
        let refused = |schedule: &str| SyncWindow::new(schedule, hours(1)).unwrap_err();
        assert_eq!(
            refused("0 2 * *"),
            WindowError::FieldCount {
                schedule: "0 2 * *".into(),
                fields: 4
            }
        );
        assert_eq!(
            refused("0 2 * *").to_string(),
            "schedule \"0 2 * *\": not a cron schedule (5 fields: minute hour day-of-month \
             month day-of-week, UTC): it has 4 fields"
        );
        assert!(matches!(
            refused("0 0 2 * * 6"),
            WindowError::FieldCount { fields: 6, .. }
        ));
        assert!(matches!(
            refused("0 0 2 * * 6 2024"),
            WindowError::FieldCount { fields: 7, .. }
        ));
        assert!(matches!(
            refused("@daily"),
            WindowError::FieldCount { fields: 1, .. }
        ));
        assert!(matches!(
            refused("  "),
            WindowError::FieldCount { fields: 0, .. }
        ));
        for (out_of_range, culprit) in [
            ("60 2 * * 6", "minute \"60\" (0-59)"),
            ("0 24 * * 6", "hour \"24\" (0-23)"),
            ("0 2 0 * *", "day-of-month \"0\" (1-31)"),
            ("0 2 * 13 *", "month \"13\" (1-12 or JAN-DEC)"),
            (
                "0 2 * * 8",
                "day-of-week \"8\" (0-7 or SUN-SAT, 0 and 7 are Sunday)",
            ),
            ("0 2 * * MON-XYZ", "day-of-week \"MON-XYZ\""),
        ] {
            let e = refused(out_of_range);
            assert!(
                matches!(e, WindowError::Cron { .. }),
                "{out_of_range}: {e:?}"
            );
            let text = e.to_string();
            let start = format!("schedule {out_of_range:?}: not a cron schedule ({FIELDS}): ");
            assert!(text.starts_with(&(start + culprit)), "{text}");
        }
        assert!(matches!(refused("a b c d e"), WindowError::Cron { .. }));
        assert_eq!(
            refused("0 0 30 2 *"),
            WindowError::NeverFires {
                schedule: "0 0 30 2 *".into()
            }
        );
    }

    #[test]
    fn a_zero_duration_is_refused() {
        let e = SyncWindow::new("0 2 * * 6", Duration::ZERO).unwrap_err();
        assert_eq!(e, WindowError::ZeroDuration);
        assert_eq!(e.to_string(), "duration must be more than 0");
    }

    #[test]
    fn the_schedule_text_is_kept_with_single_spaces() {
        let w = SyncWindow::new("  0   2 * *\t6 ", hours(2)).unwrap();
        assert_eq!(w.schedule(), "0 2 * * 6");
        assert_eq!(w.duration(), hours(2));
        assert_eq!(w, window("0 2 * * 6", "2h"));
        assert_ne!(w, window("0 2 * * 6", "3h"));
        assert_ne!(
            w,
            window("0 2 * * SAT", "2h"),
            "the text decides, not the meaning"
        );
    }

    #[test]
    fn a_window_serializes_as_its_schedule_and_a_humantime_duration() {
        let json =
            serde_json::to_value([window("0 2 * * 6", "2h"), window("0 * * * *", "90m")]).unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                {"schedule": "0 2 * * 6", "duration": "2h"},
                {"schedule": "0 * * * *", "duration": "1h 30m"},
            ])
        );
    }

    #[test]
    fn windows_are_read_from_the_sync_windows_syntax() {
        assert_eq!(
            parse_windows("0 2 * * 6 2h; 30 1 * * * 45m").unwrap(),
            [window("0 2 * * 6", "2h"), window("30 1 * * *", "45m")]
        );
        assert_eq!(
            parse_windows(" ;0 2 * * 6   2h ;; 30 1 * * *  1h30m ; ").unwrap(),
            [window("0 2 * * 6", "2h"), window("30 1 * * *", "90m")]
        );
        assert_eq!(parse_windows("").unwrap(), []);
        assert_eq!(parse_windows(" \t\n").unwrap(), []);
        assert_eq!(parse_windows(" ; ;").unwrap(), []);
    }

    #[test]
    fn a_bad_window_is_named_by_its_position_and_text() {
        let e = parse_windows("0 2 * * 6 2h; 30 1 * * * soon").unwrap_err();
        assert!(
            e.starts_with("window 2 (\"30 1 * * * soon\"): \"soon\" is not a duration"),
            "{e}"
        );
        let e = parse_windows(";; 0 2 * * 2h").unwrap_err();
        assert_eq!(
            e,
            "window 1 (\"0 2 * * 2h\"): schedule \"0 2 * *\": not a cron schedule (5 fields: \
             minute hour day-of-month month day-of-week, UTC): it has 4 fields"
        );
        let e = parse_windows("0 2 * * 6 1h 30m").unwrap_err();
        assert!(e.starts_with("window 1 (\"0 2 * * 6 1h 30m\"): "), "{e}");
        assert!(
            e.ends_with("(a duration is one token: write 1h30m, not 1h 30m)"),
            "{e}"
        );
        let e = parse_windows("2h").unwrap_err();
        assert!(
            e.starts_with("window 1 (\"2h\"): give a cron schedule"),
            "{e}"
        );
        let e = parse_windows("0 2 * * 6 0s").unwrap_err();
        assert_eq!(
            e,
            "window 1 (\"0 2 * * 6 0s\"): duration must be more than 0"
        );
        let e = parse_windows("0 25 * * 6 2h").unwrap_err();
        assert!(
            e.starts_with(
                "window 1 (\"0 25 * * 6 2h\"): schedule \"0 25 * * 6\": not a cron schedule"
            ),
            "{e}"
        );
    }

    #[test]
    fn instants_before_the_epoch_round_down_to_their_second() {
        let half_before = UNIX_EPOCH - Duration::from_millis(500);
        assert_eq!(to_utc(half_before).map(|t| t.timestamp()), Some(-1));
        assert_eq!(to_utc(UNIX_EPOCH).map(|t| t.timestamp()), Some(0));
        let w = window("59 23 31 12 *", "1m");
        assert!(w.is_open(half_before));
        assert_eq!(
            w.next_opening(half_before),
            Some(utc(1970, 12, 31, 23, 59, 0))
        );
    }
}
