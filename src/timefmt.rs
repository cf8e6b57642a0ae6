//! Reading and showing times the way traceback requests state them.
//!
//! A request names an instant: as RFC 3339 with an offset
//! (`2026-03-01T14:03:22+08:00`), as Unix seconds with an optional fraction
//! (`1772345002.25`), or as a wall-clock time plus a zone given with `--tz`
//! (`"2026-03-01 14:03:22" --tz Asia/Shanghai`; requests often come in Beijing
//! time). Every time shown carries its offset: UTC always, and the requested
//! zone when one was given.

use anyhow::{anyhow, bail, Context, Result};
use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use natrec_storage::UnixNanos;

/// Earliest instant natrec accepts in a query (1990-01-01T00:00:00Z): older
/// times cannot be in any capture and are almost certainly a typing error.
const QUERY_MIN_NS: i64 = 631_152_000 * 1_000_000_000;
/// Latest instant natrec accepts in a query (2200-01-01T00:00:00Z).
const QUERY_MAX_NS: i64 = 7_258_118_400 * 1_000_000_000;

/// Resolves `--tz`: an IANA zone name (`Asia/Shanghai`), `UTC`, or a fixed
/// offset (`+08:00`, `-0500`).
pub fn parse_tz(s: &str) -> Result<TimeZone> {
    if let Some(first) = s.chars().next() {
        if first == '+' || first == '-' {
            let off: jiff::tz::Offset = parse_offset(s)
                .with_context(|| format!("--tz '{s}' is not an offset like +08:00"))?;
            return Ok(TimeZone::fixed(off));
        }
    }
    TimeZone::get(s).map_err(|e| anyhow!("--tz '{s}': unknown time zone ({e}); use an IANA name such as Asia/Shanghai or an offset such as +08:00"))
}

fn parse_offset(s: &str) -> Result<jiff::tz::Offset> {
    let (sign, rest) = s.split_at(1);
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.chars().all(|c| c.is_ascii_digit()) {
        bail!("expected ±HH:MM");
    }
    let h: i32 = digits[..2].parse()?;
    let m: i32 = digits[2..].parse()?;
    if h > 23 || m > 59 {
        bail!("offset out of range");
    }
    let secs = (h * 3600 + m * 60) * if sign == "-" { -1 } else { 1 };
    Ok(jiff::tz::Offset::from_seconds(secs)?)
}

/// Parses a query time; `tz` applies to times written without an offset.
pub fn parse_time(s: &str, tz: Option<&TimeZone>) -> Result<UnixNanos> {
    let s = s.trim();
    let ns = if let Some(ns) = parse_unix(s)? {
        ns
    } else if let Ok(ts) = s.parse::<Timestamp>() {
        ts.as_nanosecond() as i64
    } else if let Ok(dt) = s.parse::<DateTime>() {
        let Some(tz) = tz else {
            bail!("time '{s}' has no UTC offset; write it with one (2026-03-01T14:03:22+08:00) or say its zone with --tz (e.g. --tz Asia/Shanghai)");
        };
        let zoned = tz.to_ambiguous_zoned(dt).unambiguous().map_err(|e| {
            anyhow!(
                "time '{s}' in zone {}: {e}; add an explicit offset to say which one",
                tz_name(tz)
            )
        })?;
        zoned.timestamp().as_nanosecond() as i64
    } else {
        bail!("time '{s}' is not RFC 3339 (2026-03-01T14:03:22+08:00), Unix seconds (1772345002.5), or a local time with --tz");
    };
    if !(QUERY_MIN_NS..QUERY_MAX_NS).contains(&ns) {
        bail!(
            "time '{s}' ({}) is outside 1990..2200; check the date",
            format_utc(ns)
        );
    }
    Ok(ns)
}

/// `1772345002`, `1772345002.25`, `@1772345002`: `None` if `s` is not of that form.
fn parse_unix(s: &str) -> Result<Option<UnixNanos>> {
    let body = s.strip_prefix('@').unwrap_or(s);
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if int.is_empty()
        || !int.chars().all(|c| c.is_ascii_digit())
        || !frac.chars().all(|c| c.is_ascii_digit())
    {
        return Ok(None);
    }
    if frac.len() > 9 {
        bail!("time '{s}': more than 9 fractional digits (nanoseconds are the finest unit)");
    }
    let secs: i64 = int
        .parse()
        .map_err(|_| anyhow!("time '{s}': seconds out of range"))?;
    let mut frac_ns: i64 = 0;
    if !frac.is_empty() {
        frac_ns = frac.parse::<i64>()? * 10_i64.pow(9 - frac.len() as u32);
    }
    let ns = secs
        .checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(frac_ns))
        .ok_or_else(|| anyhow!("time '{s}': out of range"))?;
    Ok(Some(ns))
}

/// Parses a duration: `30s`, `5m`, `1h30m`, `250ms`, ISO 8601 `PT30S`, or bare seconds.
pub fn parse_duration(s: &str) -> Result<i64> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return secs
            .checked_mul(1_000_000_000)
            .and_then(|n| i64::try_from(n).ok())
            .ok_or_else(|| anyhow!("duration '{s}' is too long"));
    }
    let d: SignedDuration = s
        .parse()
        .map_err(|e| anyhow!("duration '{s}' not understood ({e}); write e.g. 30s, 5m, 1h"))?;
    if d.is_negative() {
        bail!("duration '{s}' is negative");
    }
    i64::try_from(d.as_nanos()).map_err(|_| anyhow!("duration '{s}' is too long"))
}

/// Parses a whole number of seconds from a duration (for hold times and spans).
pub fn parse_duration_secs(s: &str) -> Result<u32> {
    let ns = parse_duration(s)?;
    if ns % 1_000_000_000 != 0 {
        bail!("duration '{s}' must be whole seconds");
    }
    u32::try_from(ns / 1_000_000_000).map_err(|_| anyhow!("duration '{s}' is too long"))
}

/// RFC 3339 in UTC (`2026-03-01T06:03:22.25Z`).
pub fn format_utc(ns: UnixNanos) -> String {
    match Timestamp::from_nanosecond(i128::from(ns)) {
        Ok(ts) => ts.to_string(),
        Err(_) => format!("@{ns}ns"),
    }
}

/// RFC 3339 in `tz`, with its offset (`2026-03-01T14:03:22.25+08:00`).
pub fn format_in(ns: UnixNanos, tz: &TimeZone) -> String {
    match Timestamp::from_nanosecond(i128::from(ns)) {
        Ok(ts) => {
            let z = ts.to_zoned(tz.clone());
            let off = z.offset();
            format!("{}{}", z.datetime(), offset_str(off))
        }
        Err(_) => format!("@{ns}ns"),
    }
}

fn offset_str(off: jiff::tz::Offset) -> String {
    let secs = off.seconds();
    let sign = if secs < 0 { '-' } else { '+' };
    let a = secs.abs();
    format!("{sign}{:02}:{:02}", a / 3600, (a % 3600) / 60)
}

/// A zone's name for messages.
pub fn tz_name(tz: &TimeZone) -> String {
    tz.iana_name()
        .map(str::to_string)
        .unwrap_or_else(|| format!("{tz:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_772_345_002 * 1_000_000_000; // 2026-03-01T06:03:22Z

    #[test]
    fn rfc3339_with_offset() {
        assert_eq!(parse_time("2026-03-01T14:03:22+08:00", None).unwrap(), T);
        assert_eq!(parse_time("2026-03-01T06:03:22Z", None).unwrap(), T);
        assert_eq!(
            parse_time("2026-03-01T06:03:22.5Z", None).unwrap(),
            T + 500_000_000
        );
    }

    #[test]
    fn unix_seconds_with_fraction() {
        assert_eq!(parse_time("1772345002", None).unwrap(), T);
        assert_eq!(parse_time("1772345002.000001", None).unwrap(), T + 1000);
        assert_eq!(parse_time("@1772345002.5", None).unwrap(), T + 500_000_000);
        assert!(parse_time("1772345002.1234567891", None).is_err());
    }

    #[test]
    fn local_time_needs_a_zone() {
        let e = parse_time("2026-03-01 14:03:22", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--tz"), "{e}");
        let bj = parse_tz("Asia/Shanghai").unwrap();
        assert_eq!(parse_time("2026-03-01 14:03:22", Some(&bj)).unwrap(), T);
        assert_eq!(
            parse_time("2026-03-01T14:03:22", Some(&parse_tz("+08:00").unwrap())).unwrap(),
            T
        );
    }

    #[test]
    fn impossible_times_are_refused() {
        assert!(parse_time("2026-02-30T00:00:00Z", None).is_err());
        assert!(parse_time("0", None).is_err());
        assert!(parse_time("99999999999", None).is_err());
        assert!(parse_time("yesterday", None).is_err());
        assert!(parse_tz("Mars/Olympus").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), 30_000_000_000);
        assert_eq!(parse_duration("90").unwrap(), 90_000_000_000);
        assert_eq!(parse_duration("1h30m").unwrap(), 5_400_000_000_000);
        assert_eq!(parse_duration("250ms").unwrap(), 250_000_000);
        assert!(parse_duration("-5s").is_err());
        assert_eq!(parse_duration_secs("2m").unwrap(), 120);
        assert!(parse_duration_secs("1.5s").is_err());
    }

    #[test]
    fn shows_offsets() {
        assert_eq!(format_utc(T), "2026-03-01T06:03:22Z");
        assert_eq!(
            format_in(T, &parse_tz("Asia/Shanghai").unwrap()),
            "2026-03-01T14:03:22+08:00"
        );
    }
}
