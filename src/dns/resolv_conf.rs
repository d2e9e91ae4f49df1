//! PURE. How names are resolved: `/etc/resolv.conf` (as glibc reads it) and
//! `/etc/hosts`, parsed from their text, and the settings they produce. The files are
//! read by config resolution at load and at every SIGHUP; nothing here touches a file.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// glibc uses at most three nameservers (`MAXNS`) and ignores the rest.
const MAX_NAMESERVERS: usize = 3;
/// glibc's defaults (resolv.conf(5)): one dot makes a name worth trying as given first,
/// 5 s per try, 2 tries per nameserver.
pub const DEFAULT_NDOTS: u8 = 1;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_ATTEMPTS: u32 = 2;
/// glibc's caps on the `options` values.
const MAX_NDOTS: u8 = 15;
const MAX_TIMEOUT_SECS: u64 = 30;
const MAX_ATTEMPTS: u32 = 5;
/// With no `nameserver` line glibc asks the local host.
const FALLBACK_NAMESERVER: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), DNS_PORT);
pub const DNS_PORT: u16 = 53;

/// Everything the resolver needs, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolverConfig {
    pub nameservers: Vec<SocketAddr>,
    /// Domains tried after (or before, see `ndots`) the name itself.
    pub search: Vec<String>,
    /// A name with at least this many dots is tried as given before the search list.
    pub ndots: u8,
    /// How long one query to one nameserver may take.
    pub timeout: Duration,
    /// Rounds over the nameservers.
    pub attempts: u32,
    /// A fixed refresh interval; `None`: each answer's TTL, clamped.
    pub refresh: Option<Duration>,
    /// `/etc/hosts`, consulted before DNS (glibc's default `hosts: files dns`).
    pub hosts: Vec<(IpAddr, Vec<String>)>,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        Self {
            nameservers: vec![FALLBACK_NAMESERVER],
            search: Vec::new(),
            ndots: DEFAULT_NDOTS,
            timeout: DEFAULT_TIMEOUT,
            attempts: DEFAULT_ATTEMPTS,
            refresh: None,
            hosts: Vec::new(),
        }
    }
}

impl ResolverConfig {
    /// The addresses `/etc/hosts` gives `name` (case-insensitive), in file order.
    pub fn hosts_entry(&self, name: &str) -> Vec<IpAddr> {
        let name = name.trim_end_matches('.');
        self.hosts
            .iter()
            .filter(|(_, names)| names.iter().any(|n| n.eq_ignore_ascii_case(name)))
            .map(|(ip, _)| *ip)
            .collect()
    }
}

/// Reads resolv.conf text the way glibc does: `nameserver` lines (up to three),
/// `search` or `domain` (the last one wins), `options ndots:N timeout:N attempts:N`.
/// Unknown lines and options are ignored, as glibc ignores them.
pub fn parse_resolv_conf(text: &str) -> ResolverConfig {
    let mut c = ResolverConfig { nameservers: Vec::new(), ..ResolverConfig::default() };
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                // A scoped IPv6 address (`fe80::1%eth0`) cannot be used without the scope.
                if let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok()) {
                    if c.nameservers.len() < MAX_NAMESERVERS {
                        c.nameservers.push(SocketAddr::new(ip, DNS_PORT));
                    }
                }
            }
            Some("search") => c.search = words.map(|w| w.trim_end_matches('.').to_ascii_lowercase()).collect(),
            Some("domain") => {
                c.search = words.next().map(|w| w.trim_end_matches('.').to_ascii_lowercase()).into_iter().collect()
            }
            Some("options") => {
                for option in words {
                    let (key, value) = option.split_once(':').unwrap_or((option, ""));
                    match (key, value.parse::<u64>()) {
                        ("ndots", Ok(n)) => c.ndots = n.min(u64::from(MAX_NDOTS)) as u8,
                        ("timeout", Ok(n)) => c.timeout = Duration::from_secs(n.clamp(1, MAX_TIMEOUT_SECS)),
                        ("attempts", Ok(n)) => c.attempts = (n as u32).clamp(1, MAX_ATTEMPTS),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if c.nameservers.is_empty() {
        c.nameservers.push(FALLBACK_NAMESERVER);
    }
    c
}

/// Reads hosts(5) text: `ADDRESS NAME [ALIAS…]`, `#` comments.
pub fn parse_hosts(text: &str) -> Vec<(IpAddr, Vec<String>)> {
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next().unwrap_or("");
            let mut words = line.split_whitespace();
            let ip = words.next()?.parse::<IpAddr>().ok()?;
            let names: Vec<String> = words.map(str::to_ascii_lowercase).collect();
            (!names.is_empty()).then_some((ip, names))
        })
        .collect()
}

/// `"10.96.0.10:53"`, `"10.96.0.10"` (port 53), `"[fd00::a]:53"` or `"fd00::a"`.
pub fn parse_nameserver(s: &str) -> Option<SocketAddr> {
    s.parse::<SocketAddr>().ok().or_else(|| s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, DNS_PORT)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn reads_resolv_conf_like_glibc() {
        let s = |n| Duration::from_secs(n);
        for (text, nameservers, search, ndots, timeout, attempts) in [
            // A Kubernetes pod's file.
            (
                "nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n",
                &["10.96.0.10:53"][..],
                &["default.svc.cluster.local", "svc.cluster.local", "cluster.local"][..],
                5,
                s(5),
                2,
            ),
            // Docker's embedded DNS.
            ("nameserver 127.0.0.11\noptions ndots:0\n", &["127.0.0.11:53"][..], &[][..], 0, s(5), 2),
            ("", &["127.0.0.1:53"][..], &[][..], 1, s(5), 2), // nothing: ask the local host
            ("nameserver ::1\n", &["[::1]:53"][..], &[][..], 1, s(5), 2),
            ("nameserver fe80::1%eth0\nnameserver 1.1.1.1", &["1.1.1.1:53"][..], &[][..], 1, s(5), 2),
            // At most three nameservers; the last search/domain wins; comments.
            (
                "nameserver 1.0.0.1\nnameserver 1.0.0.2\nnameserver 1.0.0.3\nnameserver 1.0.0.4\n",
                &["1.0.0.1:53", "1.0.0.2:53", "1.0.0.3:53"][..],
                &[][..],
                1,
                s(5),
                2,
            ),
            ("search a.example\ndomain B.Example.\n", &["127.0.0.1:53"][..], &["b.example"][..], 1, s(5), 2),
            ("domain a.example\nsearch x y # z\n", &["127.0.0.1:53"][..], &["x", "y"][..], 1, s(5), 2),
            ("; comment\n# nameserver 9.9.9.9\n", &["127.0.0.1:53"][..], &[][..], 1, s(5), 2),
            // Options, capped as glibc caps them; bad values ignored.
            ("options timeout:2 attempts:3 rotate edns0\n", &["127.0.0.1:53"][..], &[][..], 1, s(2), 3),
            ("options ndots:99 timeout:600 attempts:9\n", &["127.0.0.1:53"][..], &[][..], 15, s(30), 5),
            ("options ndots:x timeout:0 attempts:0\n", &["127.0.0.1:53"][..], &[][..], 1, s(1), 1),
        ] {
            let c = parse_resolv_conf(text);
            assert_eq!(c.nameservers, ns(nameservers), "{text:?}");
            assert_eq!(c.search, search, "{text:?}");
            assert_eq!((c.ndots, c.timeout, c.attempts), (ndots, timeout, attempts), "{text:?}");
        }
    }

    #[test]
    fn reads_hosts_files() {
        let text =
            "127.0.0.1 localhost\n::1 localhost ip6-localhost # loopback\n\n10.0.0.5  App.Local app\nbogus line\n";
        let c = ResolverConfig { hosts: parse_hosts(text), ..ResolverConfig::default() };
        for (name, want) in [
            ("localhost", &["127.0.0.1", "::1"][..]),
            ("app.local", &["10.0.0.5"][..]),
            ("APP", &["10.0.0.5"][..]),
            ("app.local.", &["10.0.0.5"][..]),
            ("bogus", &[][..]),
            ("line", &[][..]),
        ] {
            let want: Vec<IpAddr> = want.iter().map(|s| s.parse().unwrap()).collect();
            assert_eq!(c.hosts_entry(name), want, "{name}");
        }
    }

    #[test]
    fn parses_nameserver_addresses() {
        for (input, want) in [
            ("10.96.0.10:53", Some("10.96.0.10:53")),
            ("10.96.0.10", Some("10.96.0.10:53")),
            ("127.0.0.1:5353", Some("127.0.0.1:5353")),
            ("[fd00::a]:53", Some("[fd00::a]:53")),
            ("fd00::a", Some("[fd00::a]:53")),
            ("dns.example:53", None),
            ("", None),
        ] {
            assert_eq!(parse_nameserver(input), want.map(|w| w.parse().unwrap()), "{input:?}");
        }
    }
}
