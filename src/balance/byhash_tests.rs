//! The `Balancer` under `method = "byhash"`, as the proxy drives it: which member a key
//! reaches while members fail, drain, stand by, leave on a reload or a DNS refresh,
//! and what a request without a key gets. hash.rs tests the hashing alone.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::tests::FAIL;
use super::*;
use crate::target::Scheme;

const S: Duration = Duration::from_secs(1);

fn replica(name: &str, weight: u32, status: Status) -> ReplicaSpec {
    ReplicaSpec {
        url: Url { scheme: Scheme::Http, host: name.to_string(), port: 3000, path: "/".to_string(), addr: None },
        weight,
        status,
        route: Some(name.to_string()),
        health: Health { retry: 10 * S, retry_max: 300 * S, fail_on_status: vec![] },
    }
}

fn spec(members: &[(&str, u32, Status)], fallback: Method) -> BalancerSpec {
    BalancerSpec {
        name: "app".to_string(),
        method: Method::ByHash,
        hash: Some(Hashing { source: HashSource::Query("sid".into()), fallback }),
        replicas: members.iter().map(|&(n, w, s)| replica(n, w, s)).collect(),
        sticky_session: Some("ROUTEID".into()),
        max_attempts: 3,
        max_ejected_percent: 99,
        discovered: Vec::new(),
        slow_start: Duration::ZERO,
        check: None,
    }
}

fn hashed(members: &[(&str, u32, Status)]) -> Balancer {
    Balancer::new(spec(members, Method::ByRequests), 7)
}

fn normal(names: &[&'static str]) -> Vec<(&'static str, u32, Status)> {
    names.iter().map(|&n| (n, 1, Status::Normal)).collect()
}

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("session-{i}")).collect()
}

/// The member `key` reaches now, by host name; `-` for none.
fn member_of(b: &mut Balancer, now: Instant, key: &str, tried: &[usize]) -> String {
    let affinity = Affinity { sticky_route: None, hash_key: Some(key_hash(key.as_bytes())) };
    match b.pick_with(now, tried, affinity) {
        Pick::Replica(a) => {
            // A whole request, so load and trials move as they would.
            b.start(a.replica, Work::Request);
            b.report(a, now, Outcome::Success);
            b.finish(a.replica, Work::Request, 100);
            b.spec().replicas[a.replica].url.host.clone()
        }
        Pick::NoneAvailable { .. } => "-".to_string(),
    }
}

fn owners(b: &mut Balancer, now: Instant, keys: &[String]) -> Vec<String> {
    keys.iter().map(|k| member_of(b, now, k, &[])).collect()
}

/// Asserts that only the keys owned by `gone` moved between `before` and `after`, and
/// that they all left it. Returns how many moved.
fn only_moved_from(gone: &str, before: &[String], after: &[String], what: &str) -> usize {
    let mut moved = 0;
    for (i, (b, a)) in before.iter().zip(after).enumerate() {
        if b == gone {
            assert_ne!(a, gone, "{what}: key {i} still on {gone}");
            moved += 1;
        } else {
            assert_eq!(a, b, "{what}: key {i} moved from {b} though {b} is still there");
        }
    }
    moved
}

fn tally(owners: &[String]) -> BTreeMap<String, usize> {
    let mut t = BTreeMap::new();
    for o in owners {
        *t.entry(o.clone()).or_insert(0) += 1;
    }
    t
}

#[test]
fn byhash_keeps_1000_keys_on_their_members_across_a_removal_except_the_removed_share() {
    let keys = keys(1000);
    let t0 = Instant::now();
    let mut four = hashed(&normal(&["a", "b", "c", "d"]));
    let before = owners(&mut four, t0, &keys);
    assert_eq!(owners(&mut four, t0, &keys), before, "the same keys, the same members");
    // A reload without "c" builds a new balancer from the new definition.
    let mut three = hashed(&normal(&["a", "b", "d"]));
    let after = owners(&mut three, t0, &keys);
    let moved = only_moved_from("c", &before, &after, "c removed");
    assert_eq!(moved, tally(&before)["c"]);
    assert!((150..=350).contains(&moved), "c owned about a quarter of the keys, not {moved}");
    // The order of the members in the file does not matter.
    let mut shuffled = hashed(&normal(&["d", "b", "a"]));
    assert_eq!(owners(&mut shuffled, t0, &keys), after);
    // Adding it back returns exactly its keys.
    let mut again = hashed(&normal(&["a", "b", "c", "d"]));
    assert_eq!(owners(&mut again, t0, &keys), before);
}

#[test]
fn byhash_shares_follow_loadfactor() {
    let keys = keys(6000);
    for weights in [[1, 1, 1], [1, 2, 3], [4, 1, 1]] {
        let members: Vec<_> = ["a", "b", "c"].iter().zip(weights).map(|(&n, w)| (n, w, Status::Normal)).collect();
        let mut b = hashed(&members);
        let seen = tally(&owners(&mut b, Instant::now(), &keys));
        let total: u32 = weights.iter().sum();
        for ((name, w, _), got) in members.iter().zip(seen.values()) {
            let want = 6000 * *w as usize / total as usize;
            // Well over 4 standard deviations of a binomial count of 6000.
            assert!(got.abs_diff(want) <= 220, "{weights:?}: {name} got {got} keys, want about {want}");
        }
    }
}

#[test]
fn byhash_moves_only_the_keys_of_a_failed_member_and_gives_them_back() {
    let keys = keys(1000);
    let t0 = Instant::now();
    let mut b = hashed(&normal(&["a", "b", "c", "d"]));
    let before = owners(&mut b, t0, &keys);
    // "b" fails one request: ejected for its retry (10 s).
    let a = match b.pick(t0, &[0, 2, 3], None) {
        Pick::Replica(a) => a,
        other => panic!("{other:?}"),
    };
    assert_eq!(b.report(a, t0, FAIL).map(|t| t.to), Some(State::Failed));
    let during = owners(&mut b, t0 + S, &keys);
    assert_eq!(only_moved_from("b", &before, &during, "b failed"), tally(&before)["b"]);
    // After its retry time the first of its keys is its trial; once that succeeds
    // (member_of reports success), every key of its comes back.
    let after = owners(&mut b, t0 + 11 * S, &keys);
    assert_eq!(after, before, "b recovered");
}

#[test]
fn byhash_skips_draining_disabled_and_standby_members_like_every_method() {
    let keys = keys(1000);
    let t0 = Instant::now();
    let before = owners(&mut hashed(&normal(&["a", "b", "c", "d"])), t0, &keys);
    for status in [Status::Draining, Status::Disabled, Status::HotStandby] {
        let mut members = normal(&["a", "b", "c", "d"]);
        members[3].2 = status;
        let after = owners(&mut hashed(&members), t0, &keys);
        only_moved_from("d", &before, &after, status.as_str());
    }
    // A hot standby takes the keys only while no normal member can.
    let mut b = hashed(&[("a", 1, Status::Normal), ("h", 1, Status::HotStandby), ("i", 1, Status::HotStandby)]);
    assert!(owners(&mut b, t0, &keys).iter().all(|o| o == "a"));
    let a = match b.pick(t0, &[1, 2], None) {
        Pick::Replica(a) => a,
        other => panic!("{other:?}"),
    };
    b.report(a, t0, FAIL);
    let standby = tally(&owners(&mut b, t0 + S, &keys));
    assert_eq!(standby.keys().collect::<Vec<_>>(), ["h", "i"], "the standbys share the keys: {standby:?}");
}

#[test]
fn a_retried_request_goes_to_its_keys_next_member() {
    let t0 = Instant::now();
    let mut b = hashed(&normal(&["a", "b", "c", "d"]));
    for k in keys(50) {
        let ranking = b.hash_ranking(key_hash(k.as_bytes()));
        let first = member_of(&mut b, t0, &k, &[]);
        assert_eq!(first, b.spec().replicas[ranking[0]].url.host, "{k}");
        let second = member_of(&mut b, t0, &k, &ranking[..1]);
        assert_eq!(second, b.spec().replicas[ranking[1]].url.host, "{k}: tried its first");
    }
}

#[test]
fn without_a_key_the_fallback_method_picks() {
    let t0 = Instant::now();
    for (fallback, weights, want) in [
        (Method::ByRequests, [5, 1, 1], "aabacaaaabacaa"), // the nginx sequence, as byrequests
        (Method::ByRequests, [1, 1, 1], "abcabcabcabcab"),
    ] {
        let members: Vec<_> = ["a", "b", "c"].iter().zip(weights).map(|(&n, w)| (n, w, Status::Normal)).collect();
        let mut b = Balancer::new(spec(&members, fallback), 7);
        let got: String = (0..want.len())
            .map(|_| match b.pick_with(t0, &[], Affinity::default()) {
                Pick::Replica(a) => b.spec().replicas[a.replica].url.host.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(got, want, "{fallback} {weights:?}");
    }
    // A key given to a balancer that does not hash is ignored: its method picks.
    let mut plain = Balancer::new(
        BalancerSpec { method: Method::ByRequests, hash: None, ..spec(&normal(&["a", "b"]), Method::ByRequests) },
        7,
    );
    let key = Some(key_hash(b"session-1"));
    let got: Vec<usize> = (0..4)
        .map(|_| match plain.pick_with(t0, &[], Affinity { sticky_route: None, hash_key: key }) {
            Pick::Replica(a) => a.replica,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(got, [0, 1, 0, 1]);
}

#[test]
fn a_sticky_route_wins_over_the_key() {
    let t0 = Instant::now();
    let mut b = hashed(&normal(&["a", "b", "c"]));
    for k in keys(30) {
        let key = Some(key_hash(k.as_bytes()));
        let a = match b.pick_with(t0, &[], Affinity { sticky_route: Some("c"), hash_key: key }) {
            Pick::Replica(a) => a,
            other => panic!("{other:?}"),
        };
        assert_eq!(b.spec().replicas[a.replica].url.host, "c", "{k}");
    }
}

#[test]
fn a_dns_refresh_that_drops_an_address_moves_only_that_addresss_keys() {
    let t0 = Instant::now();
    let template = ReplicaSpec {
        url: Url { scheme: Scheme::Http, host: "app.test".into(), port: 3000, path: "/".into(), addr: None },
        ..replica("app.test", 1, Status::Normal)
    };
    let mut spec = spec(&[], Method::ByBusyness);
    spec.discovered = vec![Discovery { template: template.clone(), lookup: Lookup::Address("app.test".into()) }];
    let mut b = Balancer::new(spec, 3);
    let ips = |list: &[&str]| -> Vec<IpAddr> { list.iter().map(|s| s.parse().expect("an address")).collect() };
    let answer = |addrs: &[&str]| found_from_addresses(&template, &ips(addrs));
    b.update_members(0, answer(&["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]), 5 * S, t0);
    let keys = keys(1000);
    let addr_of = |b: &mut Balancer, k: &str| {
        let affinity = Affinity { sticky_route: None, hash_key: Some(key_hash(k.as_bytes())) };
        match b.pick_with(t0 + S, &[], affinity) {
            Pick::Replica(a) => b.spec().replicas[a.replica].url.addr.map(|a| a.ip().to_string()).unwrap_or_default(),
            other => panic!("{other:?}"),
        }
    };
    let before: Vec<String> = keys.iter().map(|k| addr_of(&mut b, k)).collect();
    assert_eq!(tally(&before).len(), 4, "four addresses share the keys");
    b.update_members(0, answer(&["10.0.0.1", "10.0.0.2", "10.0.0.4"]), 5 * S, t0 + S);
    let after: Vec<String> = keys.iter().map(|k| addr_of(&mut b, k)).collect();
    assert_eq!(only_moved_from("10.0.0.3", &before, &after, "10.0.0.3 left"), tally(&before)["10.0.0.3"]);
    // A new address takes keys from everyone, and only for itself.
    b.update_members(0, answer(&["10.0.0.1", "10.0.0.2", "10.0.0.4", "10.0.0.5"]), 5 * S, t0 + 2 * S);
    let grown: Vec<String> = keys.iter().map(|k| addr_of(&mut b, k)).collect();
    for (i, (a, g)) in after.iter().zip(&grown).enumerate() {
        assert!(g == a || g == "10.0.0.5", "key {i} moved from {a} to {g}, not to the new address");
    }
}
