//! PURE. One access line per request and one per closed tunnel (STYLE §4): what was
//! asked, what was answered, where it went, how long it took, and why when it failed.
//! Wire bytes are escaped; header values are never logged.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// Everything an access line says.
#[derive(Clone, Debug, Default)]
pub struct AccessRecord {
    pub peer: Option<SocketAddr>,
    /// `None` when no request line could be read.
    pub request_line: Option<String>,
    pub status: u16,
    /// Response body bytes sent; `None` when no body was relayed.
    pub bytes: Option<u64>,
    pub elapsed: Duration,
    pub route: Option<String>,
    pub replica: Option<String>,
    pub tries: u32,
    /// Tunnel bytes client→backend and backend→client.
    pub tunnel: Option<(u64, u64)>,
    pub reason: Option<String>,
}

/// Writes `s` with `"`, `\` and non-printable bytes as `\xHH`.
fn escaped(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    for c in s.chars() {
        match c {
            '"' | '\\' => write!(f, "\\x{:02x}", c as u32)?,
            c if c.is_ascii_graphic() || c == ' ' => write!(f, "{c}")?,
            c => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    write!(f, "\\x{b:02x}")?;
                }
            }
        }
    }
    Ok(())
}

impl fmt::Display for AccessRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.peer {
            Some(p) => write!(f, "{p} \"")?,
            None => f.write_str("- \"")?,
        }
        match &self.request_line {
            Some(line) => escaped(f, line)?,
            None => f.write_str("-")?,
        }
        write!(f, "\" {} ", self.status)?;
        match self.bytes {
            Some(b) => write!(f, "{b}")?,
            None => f.write_str("-")?,
        }
        write!(f, " {}ms", self.elapsed.as_millis())?;
        if let Some(route) = &self.route {
            write!(f, " route={route}")?;
        }
        if let Some(replica) = &self.replica {
            write!(f, " replica={replica}")?;
        }
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

    #[test]
    fn formats_lines() {
        let peer = "10.0.0.7:51234".parse().ok();
        let ok = AccessRecord {
            peer,
            request_line: Some("GET /api/items HTTP/1.1".into()),
            status: 200,
            bytes: Some(5120),
            elapsed: Duration::from_millis(12),
            route: Some("proxy[0]".into()),
            replica: Some("https://server01:3000".into()),
            tries: 1,
            ..Default::default()
        };
        assert_eq!(
            ok.to_string(),
            "10.0.0.7:51234 \"GET /api/items HTTP/1.1\" 200 5120 12ms route=proxy[0] replica=https://server01:3000"
        );
        let bad = AccessRecord { peer, status: 400, reason: Some("bad \"x\"\r\n".into()), ..Default::default() };
        assert_eq!(bad.to_string(), "10.0.0.7:51234 \"-\" 400 - 0ms reason=\"bad \\x22x\\x22\\x0d\\x0a\"");
    }
}
