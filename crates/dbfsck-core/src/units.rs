//! Parsing of the sizes and durations the command line accepts (`64MiB`, `1GiB`, `500M`, `30s`).

use std::time::Duration;

/// Why a size or duration could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a valid {what} (examples: {examples})")]
pub struct ParseUnitError {
    input: String,
    what: &'static str,
    examples: &'static str,
}

/// Splits `12.5MiB` into `(12.5, "MiB")`; `None` when the number does not parse.
fn number_and_unit(s: &str) -> Option<(f64, &str)> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    Some((num.parse().ok()?, unit.trim()))
}

/// Parses a byte size: a number with an optional unit, `K`/`M`/`G`/`T` (powers of 1000, also
/// `KB`…) or `KiB`/`MiB`/`GiB`/`TiB` (powers of 1024); case-insensitive; `B` alone is bytes.
pub fn parse_size(s: &str) -> Result<u64, ParseUnitError> {
    let err = || ParseUnitError {
        input: s.to_owned(),
        what: "size",
        examples: "4096, 64MiB, 1GiB, 500M",
    };
    let (value, unit) = number_and_unit(s).ok_or_else(err)?;
    let mult: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(err()),
    };
    let bytes = value * mult;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(err());
    }
    Ok(bytes.round() as u64)
}

/// Parses a duration: a number with a unit `ms`, `s`, `m`, `h` or `d` (`30s`, `5m`, `2h`, `1.5h`).
pub fn parse_duration(s: &str) -> Result<Duration, ParseUnitError> {
    let err = || ParseUnitError {
        input: s.to_owned(),
        what: "duration",
        examples: "30s, 5m, 2h",
    };
    let (value, unit) = number_and_unit(s).ok_or_else(err)?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86400.0,
        _ => return Err(err()),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| err())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("500M"), Ok(500_000_000));
        assert_eq!(parse_size("1.5kib"), Ok(1536));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("-5M").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
