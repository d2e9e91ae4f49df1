//! PURE. Durations as sidecar.toml writes them: "500ms", "10s", "5m", "1h".

use std::time::Duration;

/// The longest duration sidecar accepts: one year (`"8760h"`). Every timeout is added
/// to the current `Instant` while serving, and an absurd one would overflow there; no
/// real timeout comes near a year.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let too_long = || format!("duration {s:?} is too long (at most 1 year, \"8760h\")");
    if !digits.is_empty() && digits.len() > 18 {
        return Err(too_long());
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (expected e.g. \"500ms\", \"10s\", \"5m\", \"1h\")"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(format!("invalid duration {s:?} (expected a number followed by ms, s, m or h)")),
    };
    if d > MAX_DURATION {
        return Err(too_long());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        for (input, want) in [
            ("500ms", Some(Duration::from_millis(500))),
            ("10s", Some(Duration::from_secs(10))),
            ("5m", Some(Duration::from_secs(300))),
            ("1h", Some(Duration::from_secs(3600))),
            ("10", None),
            ("s", None),
            ("1.5s", None),
            ("-1s", None),
            ("10 s", None),
            ("8760h", Some(MAX_DURATION)),
            ("8761h", None),
            ("18446744073709551615s", None),
            ("99999999999999999999999ms", None),
        ] {
            assert_eq!(parse_duration(input).ok(), want, "input {input:?}");
        }
    }

    #[test]
    fn too_long_durations_say_the_limit() {
        for input in ["8761h", "18446744073709551615s", "99999999999999999999999ms"] {
            let e = parse_duration(input).expect_err(input);
            assert_eq!(e, format!("duration {input:?} is too long (at most 1 year, \"8760h\")"));
        }
    }
}
