//! PURE. One access line per request and one per closed tunnel, on stdout apart from the
//! diagnostics on stderr: Apache's "combined" format plus where the request went and
//! how long it took, or the same facts as one JSON object. Wire bytes are escaped; only
//! `Referer` and `User-Agent` values are logged, never `Authorization` or `Cookie`.

use std::fmt::{self, Write};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::route::RouteLabel;

/// `[server] access_log`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AccessFormat {
    Off,
    #[default]
    Combined,
    Json,
}

/// Everything an access line says.
#[derive(Clone, Debug, Default)]
pub struct AccessRecord {
    pub peer: Option<SocketAddr>,
    /// `None` when no request line could be read.
    pub request_line: Option<String>,
    pub referer: Option<String>,
    pub user_agent: Option<String>,
    pub status: u16,
    /// Response body bytes sent; `None` when no body was relayed.
    pub bytes: Option<u64>,
    /// From the first byte of the request head to the backend's response head.
    pub ttfb: Option<Duration>,
    pub elapsed: Duration,
    pub route: Option<RouteLabel>,
    pub replica: Option<String>,
    pub tries: u32,
    /// Tunnel bytes client→backend and backend→client.
    pub tunnel: Option<(u64, u64)>,
    pub reason: Option<String>,
}

/// Appends `s` with `"`, `\` and bytes outside printable ASCII as `\xHH`.
fn escaped(out: &mut impl Write, s: &str) -> fmt::Result {
    for c in s.chars() {
        match c {
            '"' | '\\' => write!(out, "\\x{:02x}", c as u32)?,
            c if c.is_ascii_graphic() || c == ' ' => out.write_char(c)?,
            c => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    write!(out, "\\x{b:02x}")?;
                }
            }
        }
    }
    Ok(())
}

/// Appends `s` as a JSON string.
pub(crate) fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends `25/Nov/2026:07:22:01 +0000`: Apache's `%t` in UTC.
fn write_clf_time(out: &mut String, t: SystemTime) {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = MONTHS[(m - 1) as usize];
    let _ = write!(out, "{d:02}/{month}/{y}:{:02}:{:02}:{:02} +0000", rem / 3600, rem % 3600 / 60, rem % 60);
}

/// `2026-11-25T07:22:01Z`: RFC 3339 in UTC, to the second, as stderr's diagnostics
/// are stamped.
pub fn rfc3339_time(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Days since 1970-01-01 → (year, month, day) (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

impl AccessRecord {
    /// The line in `format` at time `now` (the end of the request), or `None` when off.
    pub fn line(&self, format: AccessFormat, now: SystemTime) -> Option<String> {
        let mut s = String::new();
        self.write_line(format, now, &mut s).then_some(s)
    }

    /// `line` appended to `out`, which the caller may reuse from line to line: writing
    /// one allocates nothing once `out` has room. `false` (nothing written) when off.
    pub fn write_line(&self, format: AccessFormat, now: SystemTime, out: &mut String) -> bool {
        match format {
            AccessFormat::Off => return false,
            AccessFormat::Combined => self.combined(now, out),
            AccessFormat::Json => self.json(now, out),
        }
        true
    }

    fn combined(&self, now: SystemTime, s: &mut String) {
        match self.peer {
            Some(p) => {
                let _ = write!(s, "{}", p.ip());
            }
            None => s.push('-'),
        }
        s.push_str(" - - [");
        write_clf_time(s, now);
        s.push_str("] \"");
        let _ = escaped(s, self.request_line.as_deref().unwrap_or("-"));
        let _ = write!(s, "\" {} ", self.status);
        match self.bytes {
            Some(b) if b > 0 => {
                let _ = write!(s, "{b}");
            }
            _ => s.push('-'),
        }
        for v in [&self.referer, &self.user_agent] {
            s.push_str(" \"");
            let _ = escaped(s, v.as_deref().unwrap_or("-"));
            s.push('"');
        }
        let _ = write!(s, " {}", self);
    }

    fn json(&self, now: SystemTime, s: &mut String) {
        s.push_str("{\"time\":\"");
        // The time, an address and a route label hold nothing JSON escapes.
        write_clf_time(s, now);
        s.push('"');
        match self.peer {
            Some(p) => {
                let _ = write!(s, ",\"peer\":\"{p}\"");
            }
            None => s.push_str(",\"peer\":null"),
        }
        for (name, value) in
            [("request", &self.request_line), ("referer", &self.referer), ("user_agent", &self.user_agent)]
        {
            let _ = write!(s, ",\"{name}\":");
            match value {
                Some(v) => json_string(s, v),
                None => s.push_str("null"),
            }
        }
        match self.route {
            Some(r) => {
                let _ = write!(s, ",\"route\":\"{r}\"");
            }
            None => s.push_str(",\"route\":null"),
        }
        s.push_str(",\"replica\":");
        match &self.replica {
            Some(v) => json_string(s, v),
            None => s.push_str("null"),
        }
        let _ = write!(s, ",\"status\":{}", self.status);
        let _ = write!(s, ",\"bytes\":{}", self.bytes.unwrap_or(0));
        match self.ttfb {
            Some(t) => {
                let _ = write!(s, ",\"ttfb_ms\":{:.3}", t.as_secs_f64() * 1000.0);
            }
            None => s.push_str(",\"ttfb_ms\":null"),
        }
        let _ = write!(s, ",\"total_ms\":{:.3},\"tries\":{}", self.elapsed.as_secs_f64() * 1000.0, self.tries);
        if let Some((up, down)) = self.tunnel {
            let _ = write!(s, ",\"tunnel_up\":{up},\"tunnel_down\":{down}");
        }
        s.push_str(",\"reason\":");
        match &self.reason {
            Some(r) => json_string(s, r),
            None => s.push_str("null"),
        }
        s.push('}');
    }
}

/// The short form (also the tail of a combined line): `route=… replica=… ttfb=…ms
/// total=…ms [tries=…] [up=… down=…] [reason="…"]`.
impl fmt::Display for AccessRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.route {
            Some(route) => write!(f, "route={route}")?,
            None => f.write_str("route=-")?,
        }
        write!(f, " replica={}", self.replica.as_deref().unwrap_or("-"))?;
        match self.ttfb {
            Some(t) => write!(f, " ttfb={}ms", t.as_millis())?,
            None => f.write_str(" ttfb=-")?,
        }
        write!(f, " total={}ms", self.elapsed.as_millis())?;
        if self.tries > 1 {
            write!(f, " tries={}", self.tries)?;
        }
        if let Some((up, down)) = self.tunnel {
            write!(f, " up={up} down={down}")?;
        }
        if let Some(reason) = &self.reason {
            f.write_str(" reason=\"")?;
            escaped(f, reason)?;
            f.write_str("\"")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn clf_times() {
        for (secs, want) in [
            (0, "01/Jan/1970:00:00:00 +0000"),
            (951_782_400, "29/Feb/2000:00:00:00 +0000"),
            (1_795_591_321, "25/Nov/2026:07:22:01 +0000"),
        ] {
            let mut got = String::new();
            write_clf_time(&mut got, at(secs));
            assert_eq!(got, want, "secs {secs}");
        }
    }

    #[test]
    fn rfc3339_times() {
        for (secs, want) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_795_591_321, "2026-11-25T07:22:01Z"),
            (4_102_444_799, "2099-12-31T23:59:59Z"),
        ] {
            assert_eq!(rfc3339_time(at(secs)), want, "secs {secs}");
        }
    }

    #[test]
    fn formats_lines() {
        let peer = "10.0.0.7:51234".parse().ok();
        let ok = AccessRecord {
            peer,
            request_line: Some("GET /api/items HTTP/1.1".into()),
            user_agent: Some("curl/8.0".into()),
            status: 200,
            bytes: Some(5120),
            ttfb: Some(Duration::from_millis(3)),
            elapsed: Duration::from_millis(12),
            route: Some(RouteLabel::Proxy(0)),
            replica: Some("https://server01:3000".into()),
            tries: 1,
            ..Default::default()
        };
        assert_eq!(
            ok.line(AccessFormat::Combined, at(1_795_591_321)).as_deref(),
            Some(
                "10.0.0.7 - - [25/Nov/2026:07:22:01 +0000] \"GET /api/items HTTP/1.1\" 200 5120 \"-\" \"curl/8.0\" \
                 route=proxy[0] replica=https://server01:3000 ttfb=3ms total=12ms"
            )
        );
        let bad = AccessRecord { peer, status: 400, reason: Some("bad \"x\"\r\n".into()), ..Default::default() };
        let line = bad.line(AccessFormat::Combined, at(0)).unwrap_or_default();
        assert!(
            line.ends_with(
                "\"-\" 400 - \"-\" \"-\" route=- replica=- ttfb=- total=0ms reason=\"bad \\x22x\\x22\\x0d\\x0a\""
            ),
            "{line}"
        );
        let json = bad.line(AccessFormat::Json, at(0)).unwrap_or_default();
        assert!(
            json.contains("\"status\":400") && json.contains("\"reason\":\"bad \\\"x\\\"\\u000d\\u000a\""),
            "{json}"
        );
        assert_eq!(bad.line(AccessFormat::Off, at(0)), None);
    }
}
