//! PURE. The DNS wire format (RFC 1035 §4): one question out, one reply in, checked
//! against the question it answers. Only A, AAAA and SRV are asked for; every other
//! record in a reply (CNAME chains included: the recursive server has followed them) is
//! skipped. Replies come from the network: every length is checked against the bytes
//! there, and a compression pointer must point before the last one followed, so a
//! hostile packet can neither read out of bounds nor loop.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const HEADER_BYTES: usize = 12;
/// RFC 1035 §2.3.4.
const MAX_LABEL_BYTES: usize = 63;
const MAX_NAME_BYTES: usize = 255;
const CLASS_IN: u16 = 1;
const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const TYPE_SRV: u16 = 33;
/// Header flags (RFC 1035 §4.1.1).
const FLAG_RESPONSE: u16 = 0x8000;
const FLAG_TRUNCATED: u16 = 0x0200;
const FLAG_RECURSION_DESIRED: u16 = 0x0100;

/// The record types sidecar asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    A,
    Aaaa,
    Srv,
}

impl Kind {
    fn record_type(self) -> u16 {
        match self {
            Self::A => TYPE_A,
            Self::Aaaa => TYPE_AAAA,
            Self::Srv => TYPE_SRV,
        }
    }
}

/// What a reply says about the name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rcode {
    NoError,
    /// The name does not exist (NXDOMAIN): try the next search domain.
    NxDomain,
    /// SERVFAIL, REFUSED and the like: ask the next nameserver.
    Failed(u16),
}

/// One usable record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Data {
    Ip(IpAddr),
    Srv { priority: u16, weight: u16, port: u16, target: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Lower-case, without the final dot; a byte that is not a letter, digit, `-` or
    /// `_` is written `\DDD` (RFC 1035 §5.1), so no label can pass for two.
    pub name: String,
    pub ttl: u32,
    pub data: Data,
}

/// A decoded reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub rcode: Rcode,
    /// TC: the answer did not fit a UDP datagram; ask again over TCP.
    pub truncated: bool,
    pub answers: Vec<Record>,
    /// Addresses a server volunteered for SRV targets (RFC 2782), saving lookups.
    pub additionals: Vec<Record>,
}

/// Why bytes are not a usable reply to our question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireError {
    BadName(String),
    Malformed(String),
    /// A reply to another question (or a query, not a reply): a late or forged packet.
    Mismatch,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadName(n) => write!(f, "{n:?} is not a valid DNS name"),
            Self::Malformed(why) => write!(f, "malformed reply: {why}"),
            Self::Mismatch => f.write_str("reply does not match the question"),
        }
    }
}

fn malformed(why: &str) -> WireError {
    WireError::Malformed(why.to_string())
}

/// The query packet for `name` (fully qualified, ending in `.`), recursion desired.
pub fn encode_query(id: u16, name: &str, kind: Kind) -> Result<Vec<u8>, WireError> {
    let labels = labels(name).ok_or_else(|| WireError::BadName(name.to_string()))?;
    let mut out = Vec::with_capacity(HEADER_BYTES + name.len() + 6);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&FLAG_RECURSION_DESIRED.to_be_bytes());
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // one question, no records
    for label in labels {
        out.push(label.len() as u8);
        out.extend_from_slice(label);
    }
    out.push(0);
    out.extend_from_slice(&kind.record_type().to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(out)
}

/// The labels of a host name (`app.test.` or `app.test`): `None` unless each is 1–63
/// printable ASCII bytes other than `\` (no escapes: configured names are plain) and
/// the whole fits 255 bytes on the wire.
fn labels(name: &str) -> Option<Vec<&[u8]>> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let labels: Vec<&[u8]> = name.split('.').map(str::as_bytes).collect();
    let fits = labels.iter().map(|l| l.len() + 1).sum::<usize>() < MAX_NAME_BYTES;
    let valid =
        |l: &&[u8]| (1..=MAX_LABEL_BYTES).contains(&l.len()) && l.iter().all(|b| b.is_ascii_graphic() && *b != b'\\');
    (fits && labels.iter().all(valid)).then_some(labels)
}

/// Decodes `bytes` as the reply to query `id` for `name` and `kind`.
pub fn decode_reply(bytes: &[u8], id: u16, name: &str, kind: Kind) -> Result<Reply, WireError> {
    let asked = labels(name).ok_or_else(|| WireError::BadName(name.to_string()))?;
    let mut r = Reader { bytes, at: 0 };
    let (got_id, flags, questions) = (r.u16()?, r.u16()?, r.u16()?);
    let (answers, authorities, additionals) = (r.u16()?, r.u16()?, r.u16()?);
    if got_id != id || flags & FLAG_RESPONSE == 0 || questions != 1 {
        return Err(WireError::Mismatch);
    }
    // The question is echoed; its name compared case-blind (0x20 randomisation, RFC 4343).
    let echoed = r.name()?;
    let (qtype, qclass) = (r.u16()?, r.u16()?);
    let asked = asked.iter().map(|l| escaped(l)).collect::<Vec<_>>().join(".");
    if echoed != asked || qtype != kind.record_type() || qclass != CLASS_IN {
        return Err(WireError::Mismatch);
    }
    let rcode = match flags & 0x000F {
        0 => Rcode::NoError,
        3 => Rcode::NxDomain,
        other => Rcode::Failed(other),
    };
    let truncated = flags & FLAG_TRUNCATED != 0;
    if truncated {
        // Cut anywhere by the server's datagram size; asked again over TCP.
        return Ok(Reply { rcode, truncated, answers: Vec::new(), additionals: Vec::new() });
    }
    let answers = r.records(answers)?;
    r.records(authorities)?;
    let additionals = r.records(additionals)?;
    Ok(Reply { rcode, truncated, answers, additionals })
}

/// A label as text: lower-case, with `\DDD` for anything but letters, digits, `-`, `_`.
fn escaped(label: &[u8]) -> String {
    let mut out = String::with_capacity(label.len());
    for &b in label {
        match b.to_ascii_lowercase() {
            c @ (b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_') => out.push(c as char),
            c => out.push_str(&format!("\\{c:03}")),
        }
    }
    out
}

/// A position in a reply; every read is bounds-checked.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or_else(|| malformed("cut short"))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        self.take(4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A possibly compressed name (RFC 1035 §4.1.4) as text, lower-case, without the
    /// final dot; the reader moves past the name's own bytes.
    fn name(&mut self) -> Result<String, WireError> {
        let mut out = String::new();
        let mut at = self.at;
        // Where the reader resumes: after the first pointer, or after the final 0.
        let mut resume = None;
        // Each pointer must go before the previous one's target: the walk ends.
        let mut limit = self.at;
        let mut wire_len = 1;
        loop {
            let len = *self.bytes.get(at).ok_or_else(|| malformed("name cut short"))?;
            match len & 0xC0 {
                0x00 if len == 0 => break,
                0x00 => {
                    let len = usize::from(len);
                    wire_len += len + 1;
                    if wire_len > MAX_NAME_BYTES {
                        return Err(malformed("name longer than 255 bytes"));
                    }
                    let label = self.bytes.get(at + 1..at + 1 + len).ok_or_else(|| malformed("name cut short"))?;
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(&escaped(label));
                    at += 1 + len;
                }
                0xC0 => {
                    let low = *self.bytes.get(at + 1).ok_or_else(|| malformed("name cut short"))?;
                    let target = usize::from(u16::from_be_bytes([len & 0x3F, low]));
                    if target >= limit {
                        return Err(malformed("compression pointer does not point back"));
                    }
                    resume.get_or_insert(at + 2);
                    (limit, at) = (target, target);
                }
                _ => return Err(malformed("unknown label type")),
            }
        }
        self.at = resume.unwrap_or(at + 1);
        Ok(out)
    }

    /// `count` resource records; those of other types or classes are skipped.
    fn records(&mut self, count: u16) -> Result<Vec<Record>, WireError> {
        let mut out = Vec::new();
        for _ in 0..count {
            let name = self.name()?;
            let (rtype, class, ttl) = (self.u16()?, self.u16()?, self.u32()?);
            let len = usize::from(self.u16()?);
            let start = self.at;
            let rdata = self.take(len)?;
            let data = match (rtype, class, rdata.len()) {
                (_, c, _) if c != CLASS_IN => continue,
                (TYPE_A, _, 4) => Data::Ip(IpAddr::V4(Ipv4Addr::from([rdata[0], rdata[1], rdata[2], rdata[3]]))),
                (TYPE_AAAA, _, 16) => {
                    let mut octets = [0u8; 16];
                    octets.copy_from_slice(rdata);
                    Data::Ip(IpAddr::V6(Ipv6Addr::from(octets)))
                }
                (TYPE_A | TYPE_AAAA, _, _) => return Err(malformed("address of the wrong length")),
                (TYPE_SRV, _, 7..) => {
                    // RFC 2782 forbids compressing the target; servers that do are read too.
                    let mut srv = Reader { bytes: &self.bytes[..start + len], at: start };
                    let (priority, weight, port) = (srv.u16()?, srv.u16()?, srv.u16()?);
                    let target = srv.name()?;
                    if srv.at != start + len {
                        return Err(malformed("SRV record of the wrong length"));
                    }
                    Data::Srv { priority, weight, port, target }
                }
                (TYPE_SRV, _, _) => return Err(malformed("SRV record of the wrong length")),
                _ => continue,
            };
            out.push(Record { name, ttl, data });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    //! Replies are built with hickory-proto, an independent encoder; hostile ones by hand.
    use super::*;
    use hickory_proto::op::{Message, MessageType, ResponseCode};
    use hickory_proto::rr::rdata::{A, AAAA, CNAME, SRV};
    use hickory_proto::rr::Record as HRecord;
    use hickory_proto::rr::{Name, RData};

    /// The reply a server would send to `query`, with `answers`.
    fn reply_to(query: &[u8], rcode: ResponseCode, answers: Vec<HRecord>, truncated: bool) -> Vec<u8> {
        let q = Message::from_vec(query).unwrap();
        let mut m = Message::new();
        m.set_id(q.id()).set_message_type(MessageType::Response).set_response_code(rcode).set_truncated(truncated);
        m.add_query(q.queries()[0].clone());
        m.add_answers(answers);
        m.to_vec().unwrap()
    }

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    #[test]
    fn decodes_replies() {
        let ip = |s: &str| Data::Ip(s.parse().unwrap());
        let a = |n: &str, ttl, addr: &str| HRecord::from_rdata(name(n), ttl, RData::A(A(addr.parse().unwrap())));
        for (kind, rcode, answers, truncated, want) in [
            (
                Kind::A,
                ResponseCode::NoError,
                vec![a("app.test.", 7, "127.0.0.2"), a("app.test.", 3, "127.0.0.3")],
                false,
                Ok((Rcode::NoError, vec![(7, ip("127.0.0.2")), (3, ip("127.0.0.3"))])),
            ),
            (Kind::A, ResponseCode::NXDomain, vec![], false, Ok((Rcode::NxDomain, vec![]))),
            (Kind::A, ResponseCode::ServFail, vec![], false, Ok((Rcode::Failed(2), vec![]))),
            (Kind::A, ResponseCode::NoError, vec![], true, Ok((Rcode::NoError, vec![]))),
            // A CNAME chain: only the address counts.
            (
                Kind::A,
                ResponseCode::NoError,
                vec![
                    HRecord::from_rdata(name("app.test."), 30, RData::CNAME(CNAME(name("real.test.")))),
                    a("real.test.", 30, "10.0.0.1"),
                ],
                false,
                Ok((Rcode::NoError, vec![(30, ip("10.0.0.1"))])),
            ),
            (
                Kind::Aaaa,
                ResponseCode::NoError,
                vec![HRecord::from_rdata(name("app.test."), 5, RData::AAAA(AAAA("::1".parse().unwrap())))],
                false,
                Ok((Rcode::NoError, vec![(5, ip("::1"))])),
            ),
            (
                Kind::Srv,
                ResponseCode::NoError,
                vec![HRecord::from_rdata(
                    name("_http._tcp.app.test."),
                    9,
                    RData::SRV(SRV::new(10, 3, 8080, name("Pod1.App.Test."))),
                )],
                false,
                Ok((
                    Rcode::NoError,
                    vec![(9, Data::Srv { priority: 10, weight: 3, port: 8080, target: "pod1.app.test".into() })],
                )),
            ),
        ] {
            let qname = if kind == Kind::Srv { "_http._tcp.app.test." } else { "app.test." };
            let query = encode_query(77, qname, kind).unwrap();
            let bytes = reply_to(&query, rcode, answers, truncated);
            let got = decode_reply(&bytes, 77, qname, kind)
                .map(|r| (r.rcode, r.answers.into_iter().map(|a| (a.ttl, a.data)).collect::<Vec<_>>()));
            assert_eq!(got, want, "{kind:?} {rcode:?}");
            assert_eq!(decode_reply(&bytes, 77, qname, kind).unwrap().truncated, truncated);
        }
    }

    #[test]
    fn refuses_replies_to_other_questions() {
        let query = encode_query(5, "app.test.", Kind::A).unwrap();
        let reply = reply_to(&query, ResponseCode::NoError, vec![], false);
        for (bytes, id, name, kind, want) in [
            (&reply[..], 6, "app.test.", Kind::A, WireError::Mismatch), // another id
            (&reply[..], 5, "other.test.", Kind::A, WireError::Mismatch), // another name
            (&reply[..], 5, "app.test.", Kind::Aaaa, WireError::Mismatch), // another type
            (&query[..], 5, "app.test.", Kind::A, WireError::Mismatch), // a query, not a reply
        ] {
            assert_eq!(decode_reply(bytes, id, name, kind), Err(want), "id {id} {name} {kind:?}");
        }
        assert!(matches!(decode_reply(&reply[..7], 5, "app.test.", Kind::A), Err(WireError::Malformed(_))));
        assert!(matches!(decode_reply(b"", 5, "app.test.", Kind::A), Err(WireError::Malformed(_))));
        // The name's case does not matter (0x20 randomisation, RFC 4343).
        assert!(decode_reply(&reply, 5, "APP.test.", Kind::A).is_ok());
    }

    #[test]
    fn refuses_bad_names() {
        let long = format!("{}.test.", "a".repeat(64));
        assert!(matches!(encode_query(1, &long, Kind::A), Err(WireError::BadName(_))));
    }

    #[test]
    fn encodes_queries_as_hickory_reads_them() {
        for (name, kind) in [("app.test.", Kind::A), ("App.Test", Kind::Aaaa), ("_http._tcp.app.test.", Kind::Srv)] {
            let m = Message::from_vec(&encode_query(0xBEEF, name, kind).unwrap()).unwrap();
            assert_eq!((m.id(), m.message_type(), m.recursion_desired()), (0xBEEF, MessageType::Query, true));
            assert_eq!(m.queries().len(), 1);
            assert_eq!(u16::from(m.queries()[0].query_type()), kind.record_type(), "{name}");
            let want = if name.ends_with('.') { name.to_string() } else { format!("{name}.") };
            assert_eq!(m.queries()[0].name().to_ascii(), want);
        }
    }

    /// The reply to `query` with no records and the counts given, then `tail`.
    fn raw_reply(query: &[u8], counts: [u16; 3], tail: &[u8]) -> Vec<u8> {
        let mut out = query.to_vec();
        out[2] |= 0x80; // QR
        for (i, c) in counts.iter().enumerate() {
            out[6 + 2 * i..8 + 2 * i].copy_from_slice(&c.to_be_bytes());
        }
        out.extend_from_slice(tail);
        out
    }

    /// A record's bytes after its name: type, class IN, TTL 60, rdata.
    fn rr(rtype: u16, rdata: &[u8]) -> Vec<u8> {
        let mut out = rtype.to_be_bytes().to_vec();
        out.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(rdata);
        out
    }

    #[test]
    fn reads_hand_built_replies() {
        let query = encode_query(9, "app.test.", Kind::A).unwrap();
        let cat = |parts: &[&[u8]]| parts.concat();
        let ip = |s: &str| Data::Ip(s.parse().unwrap());
        for (counts, tail, want) in [
            // The answer's name points at the question's (offset 12).
            (
                [1, 0, 0],
                cat(&[&[0xC0, 12], &rr(TYPE_A, &[10, 0, 0, 1])]),
                vec![("app.test".to_string(), ip("10.0.0.1"))],
            ),
            // Another class, and an unknown type, are skipped; an OPT record too.
            (
                [2, 0, 1],
                cat(&[
                    &[0xC0, 12, 0, 1, 0, 3, 0, 0, 0, 1, 0, 4, 1, 2, 3, 4],
                    &[0xC0, 12],
                    &rr(99, b"x"),
                    &[0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0],
                ]),
                vec![],
            ),
            // Odd bytes in a label are escaped: one label never passes for two.
            (
                [1, 0, 0],
                cat(&[&[3, b'a', b'.', b'B', 0], &rr(TYPE_A, &[1, 2, 3, 4])]),
                vec![("a\\046b".to_string(), ip("1.2.3.4"))],
            ),
        ] {
            let bytes = raw_reply(&query, counts, &tail);
            let got = decode_reply(&bytes, 9, "app.test.", Kind::A)
                .map(|r| r.answers.into_iter().chain(r.additionals).map(|a| (a.name, a.data)).collect::<Vec<_>>());
            assert_eq!(got, Ok(want), "{tail:02x?}");
        }
        // A compressed SRV target, pointing into the question.
        let query = encode_query(9, "_h._tcp.app.test.", Kind::Srv).unwrap();
        let tail = cat(&[&[0xC0, 12], &rr(TYPE_SRV, &[0, 1, 0, 2, 0x1F, 0x90, 3, b'p', b'o', b'd', 0xC0, 20])]);
        let got = decode_reply(&raw_reply(&query, [1, 0, 0], &tail), 9, "_h._tcp.app.test.", Kind::Srv).unwrap();
        let want = Data::Srv { priority: 1, weight: 2, port: 8080, target: "pod.app.test".into() };
        assert_eq!(got.answers.into_iter().map(|a| a.data).collect::<Vec<_>>(), vec![want]);
    }

    #[test]
    fn refuses_hostile_replies() {
        let query = encode_query(9, "app.test.", Kind::A).unwrap();
        let long_name: Vec<u8> = (0..5).flat_map(|_| [&[63u8][..], &[b'a'; 63]].concat()).chain([0]).collect();
        for (counts, tail) in [
            ([1, 0, 0], vec![0xC0, 40]), // a pointer forward
            ([1, 0, 0], [&[0xC0, 12][..], &rr(TYPE_A, &[1, 2, 3, 4])[..]].concat()[..2].to_vec()), // record cut short
            ([1, 0, 0], vec![0xC0]),     // pointer cut short
            ([1, 0, 0], vec![0x40, 0]),  // an extended label type
            ([1, 0, 0], [&long_name[..], &rr(TYPE_A, &[1, 2, 3, 4])].concat()), // a name over 255 bytes
            ([1, 0, 0], [&[0xC0, 12][..], &rr(TYPE_A, &[1, 2, 3])].concat()), // a short address
            ([1, 0, 0], [&[0xC0, 12][..], &rr(TYPE_AAAA, &[0; 4])].concat()),
            ([1, 0, 0], [&[0xC0, 12][..], &rr(TYPE_SRV, &[0, 1, 0, 2, 0, 80])].concat()), // SRV without a target
            ([1, 0, 0], [&[0xC0, 12][..], &rr(TYPE_SRV, &[0, 1, 0, 2, 0, 80, 0, 9])].concat()), // bytes after it
            ([1, 0, 0], [&[0xC0, 12][..], &rr(TYPE_SRV, &[0, 1, 0, 2, 0, 80, 3, b'p'])].concat()), // target past it
            ([2, 0, 0], [&[0xC0, 12][..], &rr(TYPE_A, &[1, 2, 3, 4])].concat()),          // fewer records than counted
        ] {
            let got = decode_reply(&raw_reply(&query, counts, &tail), 9, "app.test.", Kind::A);
            assert!(matches!(got, Err(WireError::Malformed(_))), "{tail:02x?}: {got:?}");
        }
        // A name that points back at itself, and two that point at each other: an
        // unknown record's data holds `y` then a pointer to the next record's name,
        // which points back at that `y`.
        let own = raw_reply(&query, [1, 0, 0], &[]).len() as u8;
        let looped = raw_reply(&query, [1, 0, 0], &[&[1, b'x', 0xC0, own][..], &rr(TYPE_A, &[1, 2, 3, 4])].concat());
        let base = raw_reply(&query, [2, 0, 0], &[]).len() as u8;
        let (y, second) = (base + 12, base + 16);
        let tail =
            [&[0xC0, 12][..], &rr(99, &[1, b'y', 0xC0, second]), &[0xC0, y], &rr(TYPE_A, &[1, 2, 3, 4])].concat();
        let crossed = raw_reply(&query, [2, 0, 0], &tail);
        for bytes in [looped, crossed] {
            let got = decode_reply(&bytes, 9, "app.test.", Kind::A);
            assert_eq!(got, Err(malformed("compression pointer does not point back")), "{bytes:02x?}");
        }
    }
}
