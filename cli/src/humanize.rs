//! Sizes, ages and states as people read them in tables.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// Formats a byte count with binary units: `512 B`, `12.3 MiB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Formats a duration as its largest whole unit: `3s`, `5m`, `2h`, `4d`, `3w`.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h", s / 3600),
        86_400..=1_209_599 => format!("{}d", s / 86_400),
        _ => format!("{}w", s / 604_800),
    }
}

/// A CRI timestamp (nanoseconds since the epoch) as a UTC time; 0 means unset.
pub fn from_nanos(ns: i64) -> Option<DateTime<Utc>> {
    (ns > 0).then(|| DateTime::from_timestamp_nanos(ns))
}

/// How long ago `then` was: `5s ago`; `-` when unset.
pub fn ago(then_ns: i64, now: DateTime<Utc>) -> String {
    match from_nanos(then_ns) {
        Some(t) => format!("{} ago", duration(elapsed(t, now))),
        None => "-".to_string(),
    }
}

/// Time from `t` to `now`, zero if `t` is in the future (clock skew).
pub fn elapsed(t: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (now - t).to_std().unwrap_or_default()
}

/// The first 12 hex digits of an id, with any `sha256:` prefix dropped.
pub fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.get(..12).unwrap_or(hex)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn sizes() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1024), "1.0 KiB");
        assert_eq!(size(12_897_485), "12.3 MiB");
        assert_eq!(size(40 * 1024 * 1024), "40.0 MiB");
        assert_eq!(size(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(Duration::from_secs(0)), "0s");
        assert_eq!(duration(Duration::from_secs(59)), "59s");
        assert_eq!(duration(Duration::from_secs(60)), "1m");
        assert_eq!(duration(Duration::from_secs(3599)), "59m");
        assert_eq!(duration(Duration::from_secs(7200)), "2h");
        assert_eq!(duration(Duration::from_secs(3 * 86_400)), "3d");
        assert_eq!(duration(Duration::from_secs(21 * 86_400)), "3w");
    }

    #[test]
    fn ages() {
        let now = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        let then = now - chrono::Duration::seconds(5);
        let ns = then.timestamp_nanos_opt().unwrap();
        assert_eq!(ago(ns, now), "5s ago");
        assert_eq!(ago(0, now), "-");
        // A timestamp slightly ahead of our clock is not negative.
        let future = (now + chrono::Duration::seconds(2))
            .timestamp_nanos_opt()
            .unwrap();
        assert_eq!(ago(future, now), "0s ago");
    }

    #[test]
    fn short_ids() {
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(short_id("abc"), "abc");
    }
}
