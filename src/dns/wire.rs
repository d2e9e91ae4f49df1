//! PURE. The DNS wire format (RFC 1035) through `hickory-proto`: one question out, one
//! reply in, checked against the question it answers. Only A, AAAA and SRV are asked
//! for; every other record in a reply (CNAME chains included: the recursive server has
//! followed them) is skipped.

use std::fmt;
use std::net::IpAddr;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

/// The record types sidecar asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    A,
    Aaaa,
    Srv,
}

impl Kind {
    fn record_type(self) -> RecordType {
        match self {
            Self::A => RecordType::A,
            Self::Aaaa => RecordType::AAAA,
            Self::Srv => RecordType::SRV,
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
    /// Lower-case, without the final dot.
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

/// The query packet for `name` (fully qualified, ending in `.`), recursion desired.
pub fn encode_query(id: u16, name: &str, kind: Kind) -> Result<Vec<u8>, WireError> {
    let name = Name::from_ascii(name).map_err(|_| WireError::BadName(name.to_string()))?;
    let mut m = Message::new();
    m.set_id(id).set_message_type(MessageType::Query).set_op_code(OpCode::Query).set_recursion_desired(true);
    m.add_query(Query::query(name, kind.record_type()));
    m.to_vec().map_err(|e| WireError::Malformed(e.to_string()))
}

/// Decodes `bytes` as the reply to query `id` for `name` and `kind`.
pub fn decode_reply(bytes: &[u8], id: u16, name: &str, kind: Kind) -> Result<Reply, WireError> {
    let m = Message::from_vec(bytes).map_err(|e| WireError::Malformed(e.to_string()))?;
    let asked = Name::from_ascii(name).map_err(|_| WireError::BadName(name.to_string()))?;
    let echoed = m.queries().first();
    let matches = m.id() == id
        && m.message_type() == MessageType::Response
        && m.queries().len() == 1
        && echoed.is_some_and(|q| q.query_type() == kind.record_type() && *q.name() == asked);
    if !matches {
        return Err(WireError::Mismatch);
    }
    let rcode = match m.response_code() {
        ResponseCode::NoError => Rcode::NoError,
        ResponseCode::NXDomain => Rcode::NxDomain,
        other => Rcode::Failed(u16::from(other)),
    };
    let records = |section: &[hickory_proto::rr::Record]| -> Vec<Record> {
        section
            .iter()
            .filter_map(|r| {
                let data = match r.data() {
                    RData::A(a) => Data::Ip(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Data::Ip(IpAddr::V6(a.0)),
                    RData::SRV(s) => Data::Srv {
                        priority: s.priority(),
                        weight: s.weight(),
                        port: s.port(),
                        target: plain_name(s.target()),
                    },
                    _ => return None,
                };
                Some(Record { name: plain_name(r.name()), ttl: r.ttl(), data })
            })
            .collect()
    };
    Ok(Reply { rcode, truncated: m.truncated(), answers: records(m.answers()), additionals: records(m.additionals()) })
}

/// `App.Example.` → `app.example`.
fn plain_name(n: &Name) -> String {
    n.to_ascii().trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, AAAA, CNAME, SRV};
    use hickory_proto::rr::Record as HRecord;

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
}
