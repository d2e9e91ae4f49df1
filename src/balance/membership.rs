//! PURE, `now` is a parameter. Which replicas a balancer has while names resolve to
//! changing sets of addresses (a member written as a name). Discovery (I/O) hands
//! each answer over as a list of `Found` members; this file diffs it against what the
//! balancer has:
//!
//! - an address that stays keeps its slot, and so its health, load and history;
//! - a new address joins at once (ramping up under `slow_start`, unless it comes with
//!   a name's first answer);
//! - an address that left becomes `Status::Removed`: never picked again, while its
//!   requests finish and its tunnels last until they close or `drain_timeout`
//!   (closed by the proxy); back in the answer before its slot is reused, it is
//!   revived as it was;
//! - a failed lookup or an empty answer changes nothing but the name's error.
//!
//! Replica indices are what attempts and tunnels hold, so a slot is never moved: a
//! removed one is reused by a new address only once it has no work and has been gone
//! for `SLOT_REUSE_AFTER`.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::health::Tracker;
use super::method::{self, Load};
use super::probe::ProbeCount;
use super::spec::{Lookup, ReplicaSpec, Status};
use super::Balancer;
use crate::target::Url;

/// How long a removed member's slot stays its own after its last work ended. The
/// proxy opens a tunnel's count right after its request's count closes (no await in
/// between), so a second is plenty; ten leave `/status` time to show the member left.
const SLOT_REUSE_AFTER: Duration = Duration::from_secs(10);
/// One name stands for at most this many members. An answer over TCP may list
/// thousands of addresses; each member costs a slot, a health check and a share of
/// every pick's walk, so a runaway or hostile answer is cut here (in answer order).
pub const MAX_MEMBERS_PER_NAME: usize = 256;

/// Per replica, beside its spec, health and load.
#[derive(Clone, Debug, Default)]
pub(super) struct Slot {
    /// The `discovered` entry it came from; `None` for a member written as an address.
    pub source: Option<usize>,
    /// When it left its name's answer.
    pub removed_at: Option<Instant>,
    /// Slow start: ramping since then (joined, or back from an ejection).
    pub ramp_from: Option<Instant>,
    pub probe: ProbeCount,
    /// Scratch for one pick: lost its slow-start draw.
    pub held_back: bool,
    /// Its identity for `byhash` (`hash::member_hash` of its URL and address).
    pub ring: u64,
}

impl Slot {
    pub fn new(source: Option<usize>, url: &Url) -> Self {
        Self { source, ring: super::hash::member_hash(&url.replica()), ..Self::default() }
    }
}

/// A name and what its last lookups said, for `/status`, metrics and `check`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameStatus {
    pub lookup: Lookup,
    /// The members it stands for now (the last good answer).
    pub addresses: Vec<SocketAddr>,
    /// When an answer last arrived, and the TTL it had.
    pub refreshed_at: Option<Instant>,
    pub ttl: Option<Duration>,
    /// Why the last lookup failed, while it keeps failing.
    pub error: Option<String>,
    /// Failed lookups since start.
    pub errors: u64,
}

/// One member an answer stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// The name that goes into `Host` and TLS verification.
    pub host: String,
    pub addr: SocketAddr,
    pub weight: u32,
    pub status: Status,
}

/// An SRV record and its target's addresses, as discovery found them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrvRecord {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub host: String,
    pub addrs: Vec<IpAddr>,
}

/// What an answer changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MembershipChange {
    pub added: Vec<Url>,
    pub removed: Vec<Url>,
    /// The name's previous error, now over.
    pub recovered_from: Option<String>,
}

/// An A/AAAA answer: one member per address, on the entry's port, with its weight and
/// status. Duplicates are dropped.
pub fn found_from_addresses(template: &ReplicaSpec, addrs: &[IpAddr]) -> Vec<Found> {
    let mut out: Vec<Found> = Vec::new();
    for &ip in addrs {
        let addr = SocketAddr::new(ip, template.url.port);
        if !out.iter().any(|f| f.addr == addr) {
            out.push(Found { host: template.url.host.clone(), addr, weight: template.weight, status: template.status });
        }
    }
    out
}

/// An SRV answer: one member per target address, on the record's port, its weight as
/// `loadfactor` (0, "no preference" in RFC 2782, counts as 1). Only the lowest
/// priority is the entry's own status; targets of higher priorities become hot
/// standbys (`+H`): RFC 2782 says to use them only when the lower ones fail, which is
/// what `+H` does. A member that is `+D`/`+N` stays so for every target.
pub fn found_from_srv(template: &ReplicaSpec, records: &[SrvRecord]) -> Vec<Found> {
    let Some(best) = records.iter().filter(|r| !r.addrs.is_empty()).map(|r| r.priority).min() else {
        return Vec::new();
    };
    let mut out: Vec<Found> = Vec::new();
    // The target becomes the `Host` header and the TLS name: only a plain host name.
    for r in records.iter().filter(|r| is_host_name(&r.host)) {
        let status = match template.status {
            Status::Normal if r.priority > best => Status::HotStandby,
            s => s,
        };
        for &ip in &r.addrs {
            let addr = SocketAddr::new(ip, r.port);
            if !out.iter().any(|f| f.addr == addr && f.host == r.host) {
                out.push(Found { host: r.host.clone(), addr, weight: u32::from(r.weight).max(1), status });
            }
        }
    }
    out
}

/// Letters, digits, `-`, `.` and `_`, as config accepts in a member's host.
fn is_host_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

impl Balancer {
    /// The discovered names and their state.
    pub fn names(&self) -> &[NameStatus] {
        &self.names
    }

    /// `replica` leaves this balancer (a reload dropped it): nothing new goes to it and
    /// its tunnels are to be closed, as when it leaves its name's answer.
    pub fn retire(&mut self, replica: usize) {
        if let Some(r) = self.spec.replicas.get_mut(replica) {
            r.status = Status::Removed;
        }
    }

    /// Whether `replica` has left its name's answer (its tunnels are to be closed).
    pub fn is_removed(&self, replica: usize) -> bool {
        self.spec.replicas.get(replica).is_some_and(|r| r.status == Status::Removed)
    }

    /// A lookup of discovered entry `entry` answered `found` (non-empty) with `ttl`.
    pub fn update_members(&mut self, entry: usize, found: Vec<Found>, ttl: Duration, now: Instant) -> MembershipChange {
        let mut change = MembershipChange::default();
        let Some(template) = self.spec.discovered.get(entry).map(|d| d.template.clone()) else { return change };
        if found.is_empty() {
            self.lookup_failed(entry, "no addresses in the answer".into());
            return change;
        }
        let mut found = found;
        found.truncate(MAX_MEMBERS_PER_NAME);
        let first_answer = self.names[entry].refreshed_at.is_none();
        let url_of =
            |f: &Found| Url { host: f.host.clone(), port: f.addr.port(), addr: Some(f.addr), ..template.url.clone() };
        // Those that left.
        for i in 0..self.slots.len() {
            let mine = self.slots[i].source == Some(entry) && self.spec.replicas[i].status != Status::Removed;
            if mine && !found.iter().any(|f| url_of(f) == self.spec.replicas[i].url) {
                self.spec.replicas[i].status = Status::Removed;
                self.slots[i].removed_at = Some(now);
                self.slots[i].ramp_from = None;
                change.removed.push(self.spec.replicas[i].url.clone());
            }
        }
        // Those that stay (options may change with an SRV answer), come back, or join.
        for f in &found {
            let url = url_of(f);
            let existing = (0..self.slots.len())
                .find(|&i| self.slots[i].source == Some(entry) && self.spec.replicas[i].url == url);
            match existing {
                Some(i) => {
                    if self.spec.replicas[i].status == Status::Removed {
                        self.slots[i].removed_at = None;
                        change.added.push(url);
                    }
                    self.spec.replicas[i].status = f.status;
                    self.spec.replicas[i].weight = f.weight;
                    self.loads[i].weight = f.weight.max(1);
                }
                None => {
                    let replica =
                        ReplicaSpec { url: url.clone(), weight: f.weight, status: f.status, ..template.clone() };
                    let ramp = (!first_answer && !self.spec.slow_start.is_zero()).then_some(now);
                    self.join(replica, Some(entry), ramp, now);
                    change.added.push(url);
                }
            }
        }
        let name = &mut self.names[entry];
        name.addresses = found.iter().map(|f| f.addr).collect();
        name.refreshed_at = Some(now);
        name.ttl = Some(ttl);
        change.recovered_from = name.error.take();
        change
    }

    /// A lookup of `entry` failed: the members stay as they are. `true` when the error
    /// is new (log it; the same error again is not logged twice).
    pub fn lookup_failed(&mut self, entry: usize, error: String) -> bool {
        let Some(name) = self.names.get_mut(entry) else { return false };
        name.errors += 1;
        let new = name.error.as_deref() != Some(error.as_str());
        name.error = Some(error);
        new
    }

    /// After a reload that changed this balancer's definition: take over what `old`
    /// knew. Each name still configured keeps its last answer, and every member that
    /// is still there keeps its health, so a reload neither waits for DNS nor revives
    /// a dead member.
    pub fn inherit(&mut self, old: &Balancer, now: Instant) {
        for (entry, d) in self.spec.discovered.clone().iter().enumerate() {
            let Some(o) = old.spec.discovered.iter().position(|od| od.lookup == d.lookup) else { continue };
            let found: Vec<Found> = (0..old.slots.len())
                .filter(|&i| old.slots[i].source == Some(o) && old.spec.replicas[i].status != Status::Removed)
                .map(|i| {
                    let r = &old.spec.replicas[i];
                    let addr = r.url.addr.unwrap_or_else(|| SocketAddr::new(IpAddr::from([0, 0, 0, 0]), r.url.port));
                    let weight = match d.lookup {
                        Lookup::Service(_) => r.weight,
                        Lookup::Address(_) => d.template.weight,
                    };
                    let status = match (d.template.status, r.status) {
                        (Status::Normal, Status::HotStandby) if matches!(d.lookup, Lookup::Service(_)) => r.status,
                        (s, _) => s,
                    };
                    Found { host: r.url.host.clone(), addr, weight, status }
                })
                .collect();
            let old_name = &old.names[o];
            if !found.is_empty() {
                self.update_members(entry, found, old_name.ttl.unwrap_or_default(), now);
            }
            self.names[entry] = NameStatus { lookup: d.lookup.clone(), ..old_name.clone() };
        }
        for i in 0..self.slots.len() {
            let url = &self.spec.replicas[i].url;
            let twin = (0..old.slots.len())
                .find(|&j| &old.spec.replicas[j].url == url && old.spec.replicas[j].status != Status::Removed);
            if let Some(j) = twin {
                self.health[i] = old.health[j].clone();
                self.slots[i].probe = old.slots[j].probe;
                self.slots[i].ramp_from = old.slots[j].ramp_from;
            }
        }
    }

    /// Puts a new member in a free slot (a removed member's, idle long enough) or a new one.
    fn join(&mut self, replica: ReplicaSpec, source: Option<usize>, ramp_from: Option<Instant>, now: Instant) -> usize {
        let reusable = (0..self.slots.len()).find(|&i| {
            self.spec.replicas[i].status == Status::Removed
                && self.loads[i].requests == 0
                && self.loads[i].tunnels == 0
                && self.slots[i].removed_at.is_some_and(|t| now.saturating_duration_since(t) >= SLOT_REUSE_AFTER)
        });
        let load = Load::new(replica.weight);
        let slot = Slot { ramp_from, ..Slot::new(source, &replica.url) };
        let i = match reusable {
            Some(i) => {
                self.health[i].renew(&replica.health);
                self.spec.replicas[i] = replica;
                self.loads[i] = load;
                self.slots[i] = slot;
                i
            }
            None => {
                self.health.push(Tracker::new(&replica.health));
                self.spec.replicas.push(replica);
                self.loads.push(load);
                self.slots.push(slot);
                self.slots.len() - 1
            }
        };
        // `bytraffic` would send it everything until it caught up with the others' bytes.
        let spec = &self.spec;
        method::rejoin(&mut self.loads, i, |j| spec.replicas[j].status.in_service());
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::spec::{BalancerSpec, Discovery, Health};
    use crate::balance::{Method, Outcome, Pick, State, Work};
    use crate::target::Scheme;

    const S: Duration = Duration::from_secs(1);

    fn template(status: Status) -> ReplicaSpec {
        ReplicaSpec {
            url: Url { scheme: Scheme::Http, host: "app.test".into(), port: 3000, path: "/".into(), addr: None },
            weight: 2,
            status,
            route: None,
            health: Health { retry: 10 * S, retry_max: 300 * S, fail_on_status: vec![] },
        }
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn discovered(slow_start: Duration) -> Balancer {
        let spec = BalancerSpec {
            name: "app".into(),
            method: Method::ByRequests,
            hash: None,
            replicas: vec![],
            sticky_session: None,
            max_attempts: 3,
            max_ejected_percent: 99,
            discovered: vec![Discovery {
                template: template(Status::Normal),
                lookup: Lookup::Address("app.test".into()),
            }],
            slow_start,
            check: None,
        };
        Balancer::new(spec, 1)
    }

    fn answer(b: &mut Balancer, list: &[&str], now: Instant) -> MembershipChange {
        let found = found_from_addresses(&b.spec.discovered[0].template.clone(), &ips(list));
        b.update_members(0, found, 5 * S, now)
    }

    /// Live members as "ip state", in slot order.
    fn live(b: &Balancer) -> Vec<String> {
        b.snapshot(Instant::now())
            .iter()
            .filter(|m| m.status != Status::Removed)
            .map(|m| format!("{} {}", m.url.addr.unwrap().ip(), m.state))
            .collect()
    }

    #[test]
    fn addresses_become_members_inheriting_the_entry() {
        for (status, list, want) in [
            (Status::Normal, &["10.0.0.1", "10.0.0.2"][..], &["10.0.0.1:3000 2 normal", "10.0.0.2:3000 2 normal"][..]),
            (Status::Normal, &["10.0.0.1", "10.0.0.1"][..], &["10.0.0.1:3000 2 normal"][..]), // duplicate
            (Status::Draining, &["fd00::1"][..], &["[fd00::1]:3000 2 draining"][..]),
            (Status::Normal, &[][..], &[][..]),
        ] {
            let got: Vec<String> = found_from_addresses(&template(status), &ips(list))
                .iter()
                .map(|f| format!("{} {} {}", f.addr, f.weight, f.status))
                .collect();
            assert_eq!(got, want, "{status} {list:?}");
            assert!(found_from_addresses(&template(status), &ips(list)).iter().all(|f| f.host == "app.test"));
        }
    }

    #[test]
    fn srv_records_become_members() {
        let rec = |priority, weight, port, host: &str, addrs: &[&str]| SrvRecord {
            priority,
            weight,
            port,
            host: host.into(),
            addrs: ips(addrs),
        };
        for (status, records, want) in [
            (
                Status::Normal,
                vec![rec(10, 1, 8080, "a.test", &["10.0.0.1"]), rec(10, 3, 8081, "b.test", &["10.0.0.2", "10.0.0.3"])],
                &["a.test 10.0.0.1:8080 1 normal", "b.test 10.0.0.2:8081 3 normal", "b.test 10.0.0.3:8081 3 normal"][..],
            ),
            // Weight 0 counts as 1; a higher priority is a hot standby.
            (
                Status::Normal,
                vec![rec(20, 5, 80, "backup.test", &["10.0.0.9"]), rec(10, 0, 80, "a.test", &["10.0.0.1"])],
                &["backup.test 10.0.0.9:80 5 hot-standby", "a.test 10.0.0.1:80 1 normal"][..],
            ),
            // The lowest priority with addresses is the one in use.
            (
                Status::Normal,
                vec![rec(5, 1, 80, "gone.test", &[]), rec(10, 1, 80, "a.test", &["10.0.0.1"])],
                &["a.test 10.0.0.1:80 1 normal"][..],
            ),
            (Status::Disabled, vec![rec(20, 1, 80, "b.test", &["10.0.0.2"])], &["b.test 10.0.0.2:80 1 disabled"][..]),
            // A target that is no plain host name never reaches a Host header.
            (
                Status::Normal,
                vec![rec(10, 1, 80, "evil\\013.test", &["10.0.0.6"]), rec(10, 1, 80, "a.test", &["10.0.0.1"])],
                &["a.test 10.0.0.1:80 1 normal"][..],
            ),
            (Status::Normal, vec![], &[][..]),
        ] {
            let got: Vec<String> = found_from_srv(&template(status), &records)
                .iter()
                .map(|f| format!("{} {} {} {}", f.host, f.addr, f.weight, f.status))
                .collect();
            assert_eq!(got, want, "{records:?}");
        }
    }

    #[test]
    fn answers_change_members_and_keep_health() {
        let t0 = Instant::now();
        let mut b = discovered(Duration::ZERO);
        let change = answer(&mut b, &["10.0.0.1", "10.0.0.2", "10.0.0.3"], t0);
        assert_eq!(change.added.len(), 3);
        // 10.0.0.2 fails and is ejected.
        let Pick::Replica(a) = b.pick(t0, &[0], None) else { panic!("no pick") };
        assert_eq!(a.replica, 1);
        b.report(a, t0, Outcome::Failure(crate::balance::Failure::ConnectRefused));
        // (answer, live members after it, added, removed)
        for (list, want, added, removed) in [
            // Same set, other order: nothing moves; the ejected member stays ejected.
            (
                &["10.0.0.3", "10.0.0.2", "10.0.0.1"][..],
                &["10.0.0.1 healthy", "10.0.0.2 failed", "10.0.0.3 healthy"][..],
                0,
                0,
            ),
            // 3 → 5.
            (
                &["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"][..],
                &["10.0.0.1 healthy", "10.0.0.2 failed", "10.0.0.3 healthy", "10.0.0.4 healthy", "10.0.0.5 healthy"][..],
                2,
                0,
            ),
            // 5 → 2: three leave, the failed one keeps its state.
            (&["10.0.0.2", "10.0.0.5"][..], &["10.0.0.2 failed", "10.0.0.5 healthy"][..], 0, 3),
            // 10.0.0.1 comes back before its slot is reused: revived with its history.
            (
                &["10.0.0.1", "10.0.0.2", "10.0.0.5"][..],
                &["10.0.0.1 healthy", "10.0.0.2 failed", "10.0.0.5 healthy"][..],
                1,
                0,
            ),
        ] {
            let change = answer(&mut b, list, t0 + S);
            assert_eq!(live(&b), want, "{list:?}");
            assert_eq!((change.added.len(), change.removed.len()), (added, removed), "{list:?}");
        }
        assert_eq!(b.spec.replicas.len(), 5, "no slot was reused yet");
    }

    #[test]
    fn removed_members_get_no_new_work_and_their_slot_waits_until_idle() {
        let t0 = Instant::now();
        let mut b = discovered(Duration::ZERO);
        answer(&mut b, &["10.0.0.1", "10.0.0.2"], t0);
        b.start(1, Work::Tunnel); // a tunnel on 10.0.0.2
        answer(&mut b, &["10.0.0.1"], t0);
        assert!(b.is_removed(1));
        for _ in 0..20 {
            let Pick::Replica(a) = b.pick(t0, &[], None) else { panic!("no pick") };
            assert_eq!(a.replica, 0, "a removed member is never picked");
            b.report(a, t0, Outcome::Success);
        }
        // A new address while the tunnel is open, and long after: a new slot.
        answer(&mut b, &["10.0.0.1", "10.0.0.3"], t0 + 60 * S);
        assert_eq!(b.spec.replicas.len(), 3);
        b.finish(1, Work::Tunnel, 10);
        // Idle now, and gone for a minute: 10.0.0.4 takes its slot, fresh and healthy.
        answer(&mut b, &["10.0.0.1", "10.0.0.3", "10.0.0.4"], t0 + 60 * S);
        assert_eq!(b.spec.replicas.len(), 3, "slot 1 was reused");
        let m = &b.snapshot(t0)[1];
        assert_eq!(
            (m.url.addr.unwrap().to_string(), m.picks, m.state),
            ("10.0.0.4:3000".to_string(), 0, State::Healthy)
        );
        // 10.0.0.1 leaves; one second later its slot is not yet free for 10.0.0.5.
        answer(&mut b, &["10.0.0.3", "10.0.0.4"], t0 + 61 * S);
        answer(&mut b, &["10.0.0.3", "10.0.0.4", "10.0.0.5"], t0 + 62 * S);
        assert_eq!(b.spec.replicas.len(), 4);
        // Long after, 10.0.0.6 gets slot 0.
        answer(&mut b, &["10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"], t0 + 100 * S);
        assert_eq!(b.spec.replicas.len(), 4);
        assert_eq!(b.snapshot(t0)[0].url.addr.unwrap().to_string(), "10.0.0.6:3000");
    }

    #[test]
    fn failures_and_empty_answers_keep_the_last_set() {
        let t0 = Instant::now();
        let mut b = discovered(Duration::ZERO);
        answer(&mut b, &["10.0.0.1", "10.0.0.2"], t0);
        assert!(b.lookup_failed(0, "no nameserver answered".into()), "a new error is logged");
        assert!(!b.lookup_failed(0, "no nameserver answered".into()), "the same error is not logged again");
        let change = answer(&mut b, &[], t0 + S);
        assert_eq!(change, MembershipChange::default());
        assert_eq!(live(&b).len(), 2);
        let name = &b.names()[0];
        assert_eq!((name.error.as_deref(), name.errors), (Some("no addresses in the answer"), 3));
        let change = answer(&mut b, &["10.0.0.1", "10.0.0.2"], t0 + 2 * S);
        assert_eq!(change.recovered_from.as_deref(), Some("no addresses in the answer"));
        assert_eq!(b.names()[0].error, None);
    }

    #[test]
    fn a_name_stands_for_at_most_max_members() {
        let mut b = discovered(Duration::ZERO);
        let many: Vec<IpAddr> = (0..1000u32).map(|i| IpAddr::from((0x0a00_0000 + i).to_be_bytes())).collect();
        let found = found_from_addresses(&b.spec.discovered[0].template.clone(), &many);
        b.update_members(0, found, S, Instant::now());
        assert_eq!(b.spec.replicas.len(), MAX_MEMBERS_PER_NAME);
    }

    #[test]
    fn new_members_ramp_up_after_the_first_answer_only() {
        let t0 = Instant::now();
        let mut b = discovered(30 * S);
        answer(&mut b, &["10.0.0.1", "10.0.0.2"], t0);
        assert!(b.slots.iter().all(|s| s.ramp_from.is_none()), "the first answer is the starting set");
        answer(&mut b, &["10.0.0.1", "10.0.0.2", "10.0.0.3"], t0 + S);
        assert_eq!(b.slots[2].ramp_from, Some(t0 + S));
    }

    #[test]
    fn a_ramping_member_gets_its_share_times_the_ramp() {
        let t0 = Instant::now();
        let mut b = discovered(10 * S);
        answer(&mut b, &["10.0.0.1", "10.0.0.2"], t0);
        answer(&mut b, &["10.0.0.1", "10.0.0.2", "10.0.0.3"], t0);
        // (seconds into the ramp, the new member's picks out of 3000; its full share is 1000)
        for (at, low, high) in [(0, 60, 160), (5, 420, 600), (10, 1000, 1000)] {
            let mut b = b.clone();
            let now = t0 + S * at;
            let mut new = 0;
            for _ in 0..3000 {
                let Pick::Replica(a) = b.pick(now, &[], None) else { panic!("no pick") };
                new += usize::from(a.replica == 2);
                b.report(a, now, Outcome::Success);
            }
            assert!((low..=high).contains(&new), "{at}s into the ramp: {new} of 3000");
        }
    }

    #[test]
    fn a_reload_inherits_answers_and_health() {
        let t0 = Instant::now();
        let mut old = discovered(Duration::ZERO);
        answer(&mut old, &["10.0.0.1", "10.0.0.2"], t0);
        let Pick::Replica(a) = old.pick(t0, &[0], None) else { panic!("no pick") };
        old.report(a, t0, Outcome::Failure(crate::balance::Failure::Reset));
        let mut spec = old.spec.clone();
        spec.replicas.clear();
        spec.max_attempts = 5; // a changed definition
        let mut new = Balancer::new(spec, 2);
        new.inherit(&old, t0 + S);
        assert_eq!(live(&new), ["10.0.0.1 healthy", "10.0.0.2 failed"]);
        assert_eq!(new.names()[0].refreshed_at, Some(t0));
    }
}
