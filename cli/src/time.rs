//! Times and durations as the command line reads and writes them: RFC 3339
//! instants (UTC, milliseconds), and durations such as `30s`, `1h30m`, `7d`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch (the store's unit), saturating.
pub(crate) fn micros(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

/// Now, in microseconds since the Unix epoch.
pub(crate) fn now_micros() -> i64 {
    micros(SystemTime::now())
}

/// Microseconds since the Unix epoch as `2026-12-01T09:30:00.125Z`, the
/// spelling of the HTTP API (durable's own).
pub(crate) use durable::time::rfc3339_micros as rfc3339;

/// Reads an RFC 3339 instant (`2026-12-01T09:30:00.125Z`, any number of
/// fraction digits, `Z` or a `+hh:mm` offset) as microseconds since the
/// Unix epoch; `None` when it is not one.
pub(crate) fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let s = text.get(from..from + len)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (h, mi, s) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut at = 19;
    let mut fraction_micros = 0i64;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        let digits = &text[start..at];
        if digits.is_empty() {
            return None;
        }
        let six: String = digits.chars().chain("000000".chars()).take(6).collect();
        fraction_micros = six.parse().ok()?;
    }
    let offset_secs = match &text[at..] {
        "Z" | "z" => 0,
        rest if rest.len() == 6 && matches!(rest.as_bytes()[0], b'+' | b'-') => {
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            if rest.as_bytes()[3] != b':' {
                return None;
            }
            let oh = num(at + 1, 2)?;
            let om = num(at + 4, 2)?;
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + s - offset_secs;
    Some(secs * 1_000_000 + fraction_micros)
}

/// The day number of a proleptic Gregorian date, after Howard Hinnant's
/// `days_from_civil`.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Reads a duration: a number and a unit, repeated (`500ms`, `30s`, `5m`,
/// `2h`, `7d`, `1h30m`); a bare number is seconds. For clap.
///
/// # Errors
/// Text that is not such a duration, with what is accepted.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "`{text}` is not a duration: write a number and a unit, such as 500ms, 30s, 5m, 2h, 7d or 1h30m"
        )
    };
    let text = text.trim();
    if text.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86_400)),
            "w" => Duration::from_secs(n.saturating_mul(7 * 86_400)),
            _ => return Err(bad()),
        };
        total = total.saturating_add(part);
    }
    Ok(total)
}

/// A duration for people: `250ms`, `42s`, `3m20s`, `2h5m`, `3d4h`.
pub(crate) fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    let (days, hours, mins, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    match (days, hours, mins) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{mins}m{s}s"),
        (0, _, _) => format!("{hours}h{mins}m"),
        _ => format!("{days}d{hours}h"),
    }
}

/// `at` relative to now: `in 5m0s` or `3m20s ago`.
pub(crate) fn relative(at: i64) -> String {
    let now = now_micros();
    let gap = |us: i64| human(Duration::from_micros(us.unsigned_abs()));
    if at >= now {
        format!("in {}", gap(at - now))
    } else {
        format!("{} ago", gap(now - at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_written_and_read_back() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_827_696_789_000), "2000-02-29T12:34:56.789Z");
        assert_eq!(rfc3339(-1_000), "1969-12-31T23:59:59.999Z");
        for us in [0, 951_827_696_789_000, 1_796_083_200_000_000, -1_000] {
            assert_eq!(parse_rfc3339(&rfc3339(us)), Some(us));
        }
        assert_eq!(
            parse_rfc3339("2000-02-29T13:34:56.789123+01:00"),
            Some(951_827_696_789_123)
        );
        assert_eq!(
            parse_rfc3339("2000-02-29T12:34:56Z"),
            Some(951_827_696_000_000)
        );
        for bad in [
            "",
            "2000-02-29",
            "2000-13-01T00:00:00Z",
            "2000-02-29T12:34:56",
            "x",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn durations_take_units_and_refuse_the_rest() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        for bad in ["", "s", "3x", "1.5h", "-1s", "h1"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains("1h30m"), "{e}");
        }
        assert_eq!(human(Duration::from_millis(250)), "250ms");
        assert_eq!(human(Duration::from_secs(200)), "3m20s");
        assert_eq!(human(Duration::from_secs(3 * 86_400 + 4 * 3600)), "3d4h");
    }
}
