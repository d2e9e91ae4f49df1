//! PURE. `method = "byhash"`: where a request's key comes from (`HashSource`, parsed
//! from `hash = "..."`) and which member a key belongs to. Taking the key out of a
//! request is the proxy's (`proxy/affinity.rs`); which members may be chosen is mod.rs's.
//!
//! # Weighted rendezvous hashing
//!
//! Each member gets a score for the key, `weight / -ln(u)`, where `u` in (0, 1) is a
//! hash of the key and the member's identity; the highest score wins. Among equal
//! weights that is plain highest-random-weight hashing, and with weights a member
//! wins a share of keys proportional to its `loadfactor` (Schindelhauer & Schomaker,
//! "Weighted distributed hash tables", 2005). Chosen over a ring of virtual nodes
//! because the properties hold exactly rather than on average, with no table to build:
//!
//! - a key whose best member is removed, or may not be picked (failed, draining,
//!   disabled, already tried), goes to its second best; no other key moves, because
//!   every other key's best member is still there and still best;
//! - a member that joins takes exactly the keys it now scores best on, about
//!   `weight / total weight` of them, from whichever members had them;
//! - a choice depends only on the key and the set of (identity, weight) pairs, not on
//!   the order of members, earlier picks or the process: two sidecars in front of the
//!   same replicas agree, and a reload or a DNS refresh changes nothing for the keys
//!   of the members that stay.
//!
//! A pick costs one hash per eligible member (no allocation); balancers have tens of
//! members, where a ring's binary search would save nothing worth its table.
//!
//! # A stable hash
//!
//! The hash must give the same answer in every build and on every machine, so neither
//! `std`'s `DefaultHasher` (SipHash with keys that may change between Rust releases)
//! nor a seeded one will do. FNV-1a (64-bit) reads the bytes; MurmurHash3's 64-bit
//! finaliser then mixes key and member, because FNV-1a alone leaves keys that differ in
//! their last byte close together. Both are a few published constants, pinned in a test.
//! The score's `ln` comes from the platform's maths library; two machines could differ
//! only for a key whose two best scores agree to the last bit of a double.
//! An identity is the member's URL as `/status` names it, with the address for a member
//! found through DNS (`http://app:3000 (10.0.0.7:3000)`).

use std::fmt;

use super::method::Method;

/// Where `byhash` finds a request's key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HashSource {
    /// `query:NAME`: the value of the first `NAME=` parameter of the query, as sent.
    Query(String),
    /// `cookie:NAME`: the value of the first cookie `NAME`.
    Cookie(String),
    /// `header:NAME`: the value of the first `NAME` header line, without surrounding
    /// spaces.
    Header(String),
    /// `client_ip`: the address the connection comes from.
    ClientIp,
}

/// What `hash = "..."` accepts, for error messages.
pub const HASH_SOURCES: &str = "\"query:NAME\", \"cookie:NAME\", \"header:NAME\" or \"client_ip\"";

impl HashSource {
    /// `"query:sid"`, `"cookie:io"`, `"header:X-Session"`, `"client_ip"`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "client_ip" {
            return Ok(Self::ClientIp);
        }
        let Some((kind, name)) = s.split_once(':') else {
            return Err(format!("unknown hash source {s:?} (expected {HASH_SOURCES})"));
        };
        let token = !name.is_empty() && name.bytes().all(is_token_byte);
        match kind {
            "query" if !name.is_empty() && name.bytes().all(is_query_name_byte) => Ok(Self::Query(name.to_string())),
            "query" => {
                Err(format!("{s:?}: expected a query parameter name after \"query:\" (no '&', '=', '#' or spaces)"))
            }
            "cookie" if token => Ok(Self::Cookie(name.to_string())),
            "header" if token => Ok(Self::Header(name.to_string())),
            "cookie" | "header" => {
                Err(format!("{s:?}: expected a {kind} name after \"{kind}:\" (letters, digits and !#$%&'*+-.^_`|~)"))
            }
            _ => Err(format!("unknown hash source {s:?} (expected {HASH_SOURCES})")),
        }
    }
}

impl fmt::Display for HashSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Query(n) => write!(f, "query:{n}"),
            Self::Cookie(n) => write!(f, "cookie:{n}"),
            Self::Header(n) => write!(f, "header:{n}"),
            Self::ClientIp => f.write_str("client_ip"),
        }
    }
}

/// RFC 9110 `tchar`: what a header or cookie name is made of.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Visible ASCII except what ends or splits a query parameter's name.
fn is_query_name_byte(b: u8) -> bool {
    b.is_ascii_graphic() && !matches!(b, b'&' | b'=' | b'#')
}

/// `byhash` as configured: the key's source, and the method for requests without one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Hashing {
    pub source: HashSource,
    /// `hash_fallback`; never `ByHash`.
    pub fallback: Method,
}

/// FNV-1a, 64 bits (offset basis and prime from the FNV reference).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// MurmurHash3's `fmix64`: every input bit flips each output bit with probability ½.
fn fmix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// What `Balancer::pick_with` is given for a request's key (`Affinity::hash_key`).
pub fn key_hash(key: &[u8]) -> u64 {
    fnv1a64(key)
}

/// A member's identity as the hash sees it (computed once per member).
pub fn member_hash(identity: &str) -> u64 {
    fmix64(fnv1a64(identity.as_bytes()))
}

/// The score of a member (`member_hash`, weight) for a key (`fnv1a64` of its bytes):
/// the highest wins. Weight 0 counts as 1.
pub fn score(key: u64, member: u64, weight: u32) -> f64 {
    let x = fmix64(key ^ member);
    // The top 53 bits, centred in their interval: `u` is never 0 or 1, so the
    // logarithm is finite and negative.
    let u = ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    f64::from(weight.max(1)) / -ln(u)
}

/// The natural logarithm of a positive, normal `x`, computed here: it is sidecar's only
/// use of libm, which would otherwise be one more shared library loaded and mapped.
/// x = m·2ᵉ with m in [√½, √2), and ln m = 2·atanh(s) = 2(s + s³/3 + s⁵/5 + …) with
/// s = (m − 1)/(m + 1), |s| < 0.172: twelve terms reach double precision.
fn ln(x: f64) -> f64 {
    const TERMS: u32 = 12;
    let bits = x.to_bits();
    let mut exponent = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | (1023 << 52));
    if m > std::f64::consts::SQRT_2 {
        m /= 2.0;
        exponent += 1;
    }
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    // Horner's rule from the smallest term: Σ s²ᵏ/(2k + 1).
    let series = (0..TERMS).rev().fold(0.0, |acc, k| acc * s2 + 1.0 / f64::from(2 * k + 1));
    exponent as f64 * std::f64::consts::LN_2 + 2.0 * s * series
}

/// The candidate `(index, member hash, weight)` with the highest score for `key`; on
/// an exact tie (practically never), the first.
pub fn choose(key: u64, candidates: impl Iterator<Item = (usize, u64, u32)>) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, member, weight) in candidates {
        let s = score(key, member, weight);
        if best.is_none_or(|(_, b)| s > b) {
            best = Some((i, s));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Members `m0`, `m1`, … with these weights.
    fn members(weights: &[u32]) -> Vec<(usize, u64, u32)> {
        weights.iter().enumerate().map(|(i, &w)| (i, member_hash(&format!("http://m{i}:3000")), w)).collect()
    }

    fn owner(key: &str, members: &[(usize, u64, u32)]) -> usize {
        choose(fnv1a64(key.as_bytes()), members.iter().copied()).expect("a member")
    }

    fn keys(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("sid-{i}")).collect()
    }

    #[test]
    fn parses_hash_sources() {
        for (input, want) in [
            ("query:sid", Ok(HashSource::Query("sid".into()))),
            ("query:a[b]", Ok(HashSource::Query("a[b]".into()))),
            ("cookie:io", Ok(HashSource::Cookie("io".into()))),
            ("header:X-Session-Id", Ok(HashSource::Header("X-Session-Id".into()))),
            ("client_ip", Ok(HashSource::ClientIp)),
            ("query:", Err("\"query:\": expected a query parameter name")),
            ("query:a=b", Err("\"query:a=b\": expected a query parameter name")),
            ("query:a b", Err("\"query:a b\": expected a query parameter name")),
            ("cookie:", Err("\"cookie:\": expected a cookie name")),
            ("cookie:a;b", Err("\"cookie:a;b\": expected a cookie name")),
            ("header:X Y", Err("\"header:X Y\": expected a header name")),
            ("header:", Err("\"header:\": expected a header name")),
            ("Query:sid", Err("unknown hash source \"Query:sid\"")),
            ("arg:sid", Err("unknown hash source \"arg:sid\"")),
            ("client-ip", Err("unknown hash source \"client-ip\"")),
            ("", Err("unknown hash source \"\"")),
        ] {
            let got = HashSource::parse(input);
            match (&got, &want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "{input:?}"),
                (Err(e), Err(w)) => assert!(e.starts_with(w), "{input:?}: {e}"),
                _ => panic!("{input:?}: got {got:?}, want {want:?}"),
            }
            if let Ok(source) = got {
                assert_eq!(source.to_string(), input, "round trip");
            }
        }
    }

    #[test]
    fn the_logarithm_matches_libm_to_double_precision() {
        let tiny = 0.5 / (1u64 << 53) as f64;
        for x in [
            tiny,
            1e-12,
            0.001,
            0.1,
            0.25,
            0.5,
            std::f64::consts::FRAC_1_SQRT_2,
            0.7072,
            0.9,
            0.999_999,
            1.0 - tiny,
            1.0,
            2.0,
            1e9,
        ] {
            let (got, want) = (ln(x), x.ln());
            assert!((got - want).abs() <= 4.0 * f64::EPSILON * want.abs().max(1.0), "ln({x}) = {got}, libm {want}");
        }
        let mut u = tiny;
        while u < 1.0 {
            let next = u * 1.001 + tiny;
            assert!(ln(next) > ln(u), "monotonic at {u}");
            u = next;
        }
    }

    #[test]
    fn the_hash_is_pinned() {
        // FNV-1a 64 reference values: a change here moves every key of every user.
        for (input, want) in
            [("", 0xcbf2_9ce4_8422_2325), ("a", 0xaf63_dc4c_8601_ec8c), ("foobar", 0x8594_4171_f739_67e8)]
        {
            assert_eq!(fnv1a64(input.as_bytes()), want, "{input:?}");
        }
        let m = members(&[1, 1, 1, 1]);
        let got: Vec<usize> = ["a", "b", "sid-1", "sid-2", "10.0.0.7", "::1"].iter().map(|k| owner(k, &m)).collect();
        assert_eq!(got, PINNED_OWNERS, "owners of a, b, sid-1, sid-2, 10.0.0.7, ::1 among m0..m3");
    }

    /// What `the_hash_is_pinned` expects; recorded from this implementation.
    const PINNED_OWNERS: [usize; 6] = [3, 0, 3, 1, 3, 2];

    #[test]
    fn removing_a_member_moves_exactly_its_own_keys() {
        let keys = keys(1000);
        for (weights, removed) in
            [(&[1, 1, 1, 1][..], 2), (&[1, 1, 1][..], 0), (&[3, 1, 2, 1, 1][..], 4), (&[5, 1][..], 0)]
        {
            let all = members(weights);
            let rest: Vec<_> = all.iter().copied().filter(|&(i, _, _)| i != removed).collect();
            let mut owned = 0;
            for k in &keys {
                let (before, after) = (owner(k, &all), owner(k, &rest));
                if before == removed {
                    owned += 1;
                    assert_ne!(after, removed, "{k}");
                } else {
                    assert_eq!(after, before, "{k} moved though its member {before} stayed ({weights:?})");
                }
            }
            assert!(owned > 0, "member {removed} of {weights:?} owned none of 1000 keys");
        }
    }

    #[test]
    fn a_joining_member_takes_keys_only_for_itself() {
        let keys = keys(1000);
        let all = members(&[1, 1, 1, 1, 1]);
        let before: Vec<_> = all[..4].to_vec();
        let mut taken = 0;
        for k in &keys {
            match owner(k, &all) {
                4 => taken += 1,
                now => assert_eq!(now, owner(k, &before), "{k} moved between members that were there"),
            }
        }
        // About 1/5 of the keys: 200, more than 4 standard deviations (12.6) apart.
        assert!((150..=250).contains(&taken), "the fifth member took {taken} of 1000 keys");
    }

    #[test]
    fn shares_follow_weights() {
        let keys = keys(20_000);
        for weights in [&[1, 1, 1][..], &[1, 2, 3][..], &[5, 1, 1][..], &[1, 100][..], &[2, 2, 1, 1, 4][..]] {
            let m = members(weights);
            let mut counts = vec![0usize; weights.len()];
            for k in &keys {
                counts[owner(k, &m)] += 1;
            }
            let total: u32 = weights.iter().sum();
            for (i, &w) in weights.iter().enumerate() {
                let p = f64::from(w) / f64::from(total);
                let want = p * keys.len() as f64;
                // 5 standard deviations of a binomial count, at least 1 % of the keys.
                let tolerance = (5.0 * (keys.len() as f64 * p * (1.0 - p)).sqrt()).max(200.0);
                let got = counts[i] as f64;
                assert!((got - want).abs() <= tolerance, "{weights:?}: member {i} owns {got} keys, want {want:.0}");
            }
        }
    }

    #[test]
    fn choice_ignores_the_order_of_members() {
        let m = members(&[1, 2, 1, 3]);
        let mut reversed = m.clone();
        reversed.reverse();
        for k in keys(200) {
            assert_eq!(owner(&k, &m), owner(&k, &reversed), "{k}");
        }
    }

    #[test]
    fn no_candidate_no_choice() {
        assert_eq!(choose(fnv1a64(b"k"), std::iter::empty()), None);
    }
}
