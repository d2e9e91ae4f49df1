//! The `byhash` key of a request: the bytes `hash = "..."` names, taken from its head
//! or its connection, for `Balancer::pick_with` to hash (balance/hash.rs). No I/O and
//! no copy: the key borrows from the head. An empty value counts as absent, so a
//! `?sid=` or an empty header does not send every such request to one member.

use crate::balance::HashSource;
use crate::h1::head::{trim, RequestHead};

/// The key `source` names in this request, or `None` when it has none (the balancer
/// then uses its fallback method). `client_ip` is the connection's peer address.
pub(crate) fn hash_key<'r>(head: &'r RequestHead, source: &HashSource, client_ip: &'r str) -> Option<&'r [u8]> {
    let value = match source {
        HashSource::Query(name) => query_param(&head.target, name),
        HashSource::Cookie(name) => head.cookie(name),
        HashSource::Header(name) => head.headers.get(name).map(trim),
        // An IPv4 client of a dual-stack listener hashes as itself, not as
        // `::ffff:a.b.c.d`, so it keeps its member if the listener changes.
        HashSource::ClientIp => {
            Some(client_ip.strip_prefix("::ffff:").filter(|v4| v4.contains('.')).unwrap_or(client_ip).as_bytes())
        }
    };
    value.filter(|v| !v.is_empty())
}

/// The value of the first `name=` parameter of the target's query, as sent (not
/// percent-decoded: a client sends its own key the same way every time).
fn query_param<'t>(target: &'t str, name: &str) -> Option<&'t [u8]> {
    let (_, query) = target.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then_some(v.as_bytes())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h1::head::{parse_request_head, MAX_HEADERS};

    fn head(target: &str, headers: &[&str]) -> RequestHead {
        let mut raw = format!("GET {target} HTTP/1.1\r\nHost: a\r\n");
        for h in headers {
            raw.push_str(h);
            raw.push_str("\r\n");
        }
        raw.push_str("\r\n");
        parse_request_head(raw.as_bytes(), MAX_HEADERS).expect("a valid head")
    }

    #[test]
    fn keys_come_from_where_hash_says() {
        let q = |n: &str| HashSource::Query(n.into());
        let c = |n: &str| HashSource::Cookie(n.into());
        let h = |n: &str| HashSource::Header(n.into());
        for (target, headers, source, peer, want) in [
            ("/socket.io/?EIO=4&transport=polling&sid=abc", &[][..], q("sid"), "10.0.0.7", Some("abc")),
            ("/socket.io/?sid=abc&sid=def", &[], q("sid"), "10.0.0.7", Some("abc")), // the first one
            ("/socket.io/?EIO=4&transport=polling", &[], q("sid"), "10.0.0.7", None), // a handshake
            ("/x?sids=abc&xsid=d", &[], q("sid"), "10.0.0.7", None),                 // names match whole
            ("/x?sid=", &[], q("sid"), "10.0.0.7", None),                            // empty is absent
            ("/x?sid", &[], q("sid"), "10.0.0.7", None),
            ("/x?sid=a%2Fb", &[], q("sid"), "10.0.0.7", Some("a%2Fb")), // as sent
            ("/x?a=1&sid=k=v", &[], q("sid"), "10.0.0.7", Some("k=v")),
            ("/sid=abc", &[], q("sid"), "10.0.0.7", None), // the path is not the query
            ("/x", &["Cookie: a=1; io=s1; b=2"], c("io"), "10.0.0.7", Some("s1")),
            ("/x", &["Cookie: a=1", "Cookie: io=s2"], c("io"), "10.0.0.7", Some("s2")),
            ("/x", &["Cookie: xio=1; io = s3 "], c("io"), "10.0.0.7", Some("s3")),
            ("/x", &["Cookie: IO=1"], c("io"), "10.0.0.7", None), // cookie names are case-sensitive
            ("/x", &["Cookie: io="], c("io"), "10.0.0.7", None),
            ("/x", &["X-Session:  s4 "], h("x-session"), "10.0.0.7", Some("s4")),
            ("/x", &["x-session: s5", "X-Session: s6"], h("X-Session"), "10.0.0.7", Some("s5")),
            ("/x", &["X-Session: "], h("X-Session"), "10.0.0.7", None),
            ("/x", &[], HashSource::ClientIp, "10.0.0.7", Some("10.0.0.7")),
            ("/x", &[], HashSource::ClientIp, "::ffff:10.0.0.7", Some("10.0.0.7")),
            ("/x", &[], HashSource::ClientIp, "2001:db8::7", Some("2001:db8::7")),
            ("/x", &[], HashSource::ClientIp, "::ffff:1", Some("::ffff:1")),
        ] {
            let head = head(target, headers);
            let got = hash_key(&head, &source, peer);
            assert_eq!(got, want.map(str::as_bytes), "{source} on {target} {headers:?} from {peer}");
        }
    }
}
