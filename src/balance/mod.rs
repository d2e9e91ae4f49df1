//! PURE, `now` is a parameter. Replica selection and passive health for one
//! `[balancer.NAME]`. spec.rs names what config resolves,
//! method.rs chooses among allowed replicas, outcome.rs names what an attempt
//! reports, health.rs runs one replica's state machine; this file decides which
//! replicas are allowed and owns the `Balancer`.
//!
//! # One attempt
//!
//! One `Balancer` per `[balancer.NAME]` serves the whole process: the config holds it
//! behind one mutex (`config::SharedBalancer`), so a dead replica is found once, not
//! once per worker, and `bybusyness` sees every worker's requests and tunnels. The
//! lock is held only for the pure calls here, never across I/O. An attempt is `pick`
//! → `start(Work::Request)` (under the same lock, or concurrent picks miss it) →
//! exactly one `report` (`Outcome::Abandoned` when nothing was learned about the
//! replica) → `finish`. On a 101 the request's `finish` is followed by
//! `start(Work::Tunnel)` and, at close, `finish(Work::Tunnel)`. The proxy's lease
//! (`proxy/lease.rs`) makes that sequence happen even when a connection task ends
//! early or panics. The `Attempt` that `pick` returns goes back to `report`: it says
//! whether this was the replica's trial and in which epoch it was picked. `pick`,
//! `start`, `finish` and a `report` that changes nothing never allocate.
//!
//! A reload builds new balancers, but one whose definition did not change keeps its
//! live state (`Config::adopt_state`): a SIGHUP does not bring a dead replica back.
//! Work still open on a replaced balancer finishes on the one it came from.
//!
//! # Who may be picked
//!
//! Never a replica in `tried`, a `+D` or a `+N` one, one resting after a failure, or
//! one whose trial is in flight. Of the rest: if `sticky_route` names a replica's
//! `route` and that replica is in service and healthy (or spared), it is chosen.
//! Otherwise the method chooses among the normal replicas that are healthy, spared or
//! due for a trial, and only if there are none, among the hot standbys (`+H`) alike.
//! A replica whose retry time has passed is a candidate like a healthy one, so it
//! always gets its trial, and before any hot standby does. Under `byhash` a request
//! with a key goes to the candidate its key ranks first (hash.rs), so a key whose
//! member cannot be picked moves to its next member and no other key moves; slow start
//! does not hold a keyed request back (a draw would break the affinity). A request
//! without the key is the fallback method's, slow start included.
//!
//! # Passive health
//!
//! A failure (connect, TLS, timeout, `fail_on_status`) ejects the replica for its
//! `retry`. When that has passed, the next pick that chooses it makes it the trial;
//! nothing else picks it while the trial is in flight. A successful trial brings it
//! back (and resets the back-off); a failed one doubles the rest, up to `retry_max`.
//! Outcomes of attempts picked before the replica's last state change, such as the
//! other requests in flight when it failed, are history: each still counts in
//! `failures` and `last_error`, but none ejects, extends the rest, doubles the back-off
//! or ends an ejection. Only the trial decides how an ejection ends. See health.rs.
//!
//! # The guard, and "every replica down" (503 with Retry-After)
//!
//! Ejection is capped, like Envoy's `max_ejection_percent`: a failure ejects only while
//! fewer than `floor(in service × max_ejected_percent / 100)` replicas are ejected, and
//! below 100 never the last one. A failure the guard refuses leaves the replica
//! `Spared`: still in service, picked like a healthy one, until its next outcome. So
//! at least one replica always takes traffic, a burst of false failures cannot eject a
//! whole cluster, and a restarted single-replica app is back on the next request.
//! `RECOMMENDED_MAX_EJECTED_PERCENT` (99) is "all but one". The price: with every
//! replica dead, each request still tries the spared one (a fast refusal, usually).
//!
//! `pick` answers `NoneAvailable { retry_after }` when no candidate is left: every
//! in-service replica is tried, resting or in its trial, or none is in service.
//! `retry_after` is the wait until some in-service replica could be picked again: the
//! earliest retry time, zero when one is ready (the caller sends at least
//! `Retry-After: 1`), `IDLE_RETRY_AFTER` when none is in service. The proxy answers 503
//! with it. With `max_ejected_percent = 100` every replica may be ejected, and while
//! all rest, `pick` answers 503 at once, until the earliest retry time lets a trial
//! through: "every replica down" to the letter, at the cost of a restarted app waiting out its
//! back-off.

mod hash;
mod health;
mod membership;
mod method;
mod outcome;
mod probe;
mod slow_start;
mod spec;

#[cfg(test)]
mod byhash_tests;
#[cfg(test)]
mod property;
#[cfg(test)]
mod tests;

use std::fmt;
use std::time::{Duration, Instant};

pub use hash::{key_hash, HashSource, Hashing, HASH_SOURCES};
pub use health::State;
pub use method::Method;
pub use outcome::{Failure, Outcome};
pub use spec::{
    BalancerSpec, Discovery, Health, HealthCheck, Lookup, ReplicaSpec, Status, StatusRanges,
    RECOMMENDED_MAX_EJECTED_PERCENT,
};

pub use membership::{found_from_addresses, found_from_srv, Found, NameStatus, SrvRecord};

use health::{Avail, Tracker};
use membership::Slot;
use method::{Load, Selector};

use crate::target::Url;

/// `retry_after` when no replica is in service (all `+D`/`+N`): nothing changes before
/// a reload, so clients should not hammer, but a reload may come at any moment.
const IDLE_RETRY_AFTER: Duration = Duration::from_secs(10);

/// What a replica is busy with: `bybusyness` counts both, `/status` shows them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Work {
    Request,
    /// An open WebSocket tunnel.
    Tunnel,
}

/// One try of one request on one replica, from `pick` to its `report`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub replica: usize,
    /// The one request let through to a replica whose retry time has passed.
    pub trial: bool,
    epoch: u32,
}

/// What a request brings that may tie it to a member.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Affinity<'a> {
    /// The sticky cookie's part after its last '.', if any (`stickysession`).
    pub sticky_route: Option<&'a str>,
    /// `key_hash` of the request's `byhash` key, if the balancer hashes and the
    /// request has one.
    pub hash_key: Option<u64>,
}

/// `pick`'s answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    Replica(Attempt),
    /// Answer 503 with `Retry-After`: this, rounded up to whole seconds, at least 1.
    NoneAvailable {
        retry_after: Duration,
    },
}

/// A replica's health changed: worth one log line (warn when `is_fault`, else info).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub balancer: String,
    pub replica: usize,
    pub url: Url,
    pub from: State,
    pub to: State,
    /// What was reported, when it was a failure.
    pub failure: Option<Failure>,
    /// How long it rests, when `to` is `Failed`.
    pub rest: Option<Duration>,
}

impl Transition {
    /// It failed (ejected or spared), rather than recovered.
    pub fn is_fault(&self) -> bool {
        self.to != State::Healthy
    }
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "balancer://{}: replica {} ", self.balancer, self.url.replica())?;
        let trial = self.from == State::Trial;
        match (self.to, self.failure, self.rest) {
            (State::Healthy, _, _) if trial => f.write_str("recovered: its trial request succeeded"),
            (State::Healthy, _, _) => f.write_str("recovered"),
            (State::Spared, Some(e), _) => {
                write!(f, "failed ({e}) but stays in service (max_ejected_percent)")
            }
            (_, Some(e), Some(rest)) if trial => {
                write!(f, "failed its trial ({e}): no traffic for {}", Secs(rest))
            }
            (_, Some(e), Some(rest)) => write!(f, "failed ({e}): no traffic for {}", Secs(rest)),
            (to, _, _) => write!(f, "is now {to}"),
        }
    }
}

/// A duration as a log line wants it: `10s`, `1.5s`.
struct Secs(Duration);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.subsec_millis() {
            0 => write!(f, "{}s", self.0.as_secs()),
            ms => write!(f, "{}.{:03}s", self.0.as_secs(), ms),
        }
    }
}

/// One replica, as `/status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaStatus {
    pub url: Url,
    pub status: Status,
    pub weight: u32,
    pub state: State,
    /// Requests in flight.
    pub requests: u32,
    pub tunnels: u32,
    /// Times picked.
    pub picks: u64,
    /// Bytes of finished requests and tunnels.
    pub bytes: u64,
    /// Failures reported, history included.
    pub failures: u64,
    pub last_error: Option<Failure>,
    /// When a resting replica may have its trial, and how long until then.
    pub retry_at: Option<Instant>,
    pub retry_in: Option<Duration>,
    /// Under slow start: the share of its traffic it gets now, in per mille.
    pub ramp_permille: Option<u32>,
    /// Active health checks say it is down.
    pub check_down: bool,
}

/// One balancer's replicas, their load and their health, for one worker thread.
#[derive(Clone, Debug)]
pub struct Balancer {
    spec: BalancerSpec,
    health: Vec<Tracker>,
    loads: Vec<Load>,
    selector: Selector,
    /// Per replica: where it came from, slow start, active checks (membership.rs).
    slots: Vec<Slot>,
    /// Per `spec.discovered` entry.
    names: Vec<NameStatus>,
}

impl Balancer {
    /// `seed` feeds the tie-break randomness; give each worker its own.
    pub fn new(spec: BalancerSpec, seed: u64) -> Self {
        let health = spec.replicas.iter().map(|r| Tracker::new(&r.health)).collect();
        let loads = spec.replicas.iter().map(|r| Load::new(r.weight)).collect();
        let selector = Selector::new(spec.unkeyed_method(), seed);
        let slots = spec.replicas.iter().map(|r| Slot::new(None, &r.url)).collect();
        let names = spec
            .discovered
            .iter()
            .map(|d| NameStatus {
                lookup: d.lookup.clone(),
                addresses: Vec::new(),
                refreshed_at: None,
                ttl: None,
                error: None,
                errors: 0,
            })
            .collect();
        Self { spec, health, loads, selector, slots, names }
    }

    pub fn spec(&self) -> &BalancerSpec {
        &self.spec
    }

    /// Chooses a replica for a new request or tunnel handshake. `tried`: replicas this
    /// request already tried, never chosen again. `sticky_route`: the sticky cookie's
    /// part after its last '.', if any.
    pub fn pick(&mut self, now: Instant, tried: &[usize], sticky_route: Option<&str>) -> Pick {
        self.pick_with(now, tried, Affinity { sticky_route, hash_key: None })
    }

    /// `pick`, with everything the request brings: the sticky route first, then the
    /// `byhash` key, then the (fallback) method.
    pub fn pick_with(&mut self, now: Instant, tried: &[usize], affinity: Affinity<'_>) -> Pick {
        let chosen = match self.sticky(now, tried, affinity.sticky_route) {
            Some(i) => Some(i),
            None => match affinity.hash_key.filter(|_| self.spec.hash.is_some()) {
                Some(key) => self.hashed(now, tried, key),
                None => self.by_method(now, tried),
            },
        };
        let Some(i) = chosen else {
            return Pick::NoneAvailable { retry_after: self.retry_after(now) };
        };
        let trial = self.avail(i, now) == Avail::Due;
        if trial {
            self.health[i].begin_trial(now);
        }
        self.loads[i].picks += 1;
        Pick::Replica(Attempt { replica: i, trial, epoch: self.health[i].epoch() })
    }

    /// Work began on `replica` (a request sent, or a tunnel opened after its 101).
    pub fn start(&mut self, replica: usize, work: Work) {
        if let Some(load) = self.loads.get_mut(replica) {
            match work {
                Work::Request => load.requests = load.requests.saturating_add(1),
                Work::Tunnel => load.tunnels = load.tunnels.saturating_add(1),
            }
        }
    }

    /// Work on `replica` ended, having moved `bytes` both ways. Also for `+N` replicas.
    pub fn finish(&mut self, replica: usize, work: Work, bytes: u64) {
        if let Some(load) = self.loads.get_mut(replica) {
            match work {
                Work::Request => load.requests = load.requests.saturating_sub(1),
                Work::Tunnel => load.tunnels = load.tunnels.saturating_sub(1),
            }
            load.bytes = load.bytes.saturating_add(bytes);
        }
    }

    /// What `attempt` taught us. `Some` when the replica's health changed: log it.
    pub fn report(&mut self, attempt: Attempt, now: Instant, outcome: Outcome) -> Option<Transition> {
        let i = attempt.replica;
        let may_eject = matches!(outcome, Outcome::Failure(_)) && self.guard_allows_ejecting(i);
        let replica = self.spec.replicas.get(i)?;
        let change = self.health.get_mut(i)?.report(attempt.epoch, now, outcome, &replica.health, may_eject)?;
        let url = replica.url.clone();
        if change.from == State::Trial && change.to == State::Healthy {
            self.rejoined(i, now);
        }
        if change.to.is_ejected() {
            self.slots[i].probe.restart_rise();
        }
        Some(Transition {
            balancer: self.spec.name.clone(),
            replica: i,
            url,
            from: change.from,
            to: change.to,
            failure: change.failure,
            rest: change.rest,
        })
    }

    /// `replica` is back in service after an ejection: fair share of load counters,
    /// and slow start from `now`.
    fn rejoined(&mut self, i: usize, now: Instant) {
        let (spec, health) = (&self.spec, &self.health);
        let peers = |j: usize| spec.replicas[j].status.in_service() && health[j].state() == State::Healthy;
        method::rejoin(&mut self.loads, i, peers);
        if !self.spec.slow_start.is_zero() {
            self.slots[i].ramp_from = Some(now);
        }
    }

    /// Whether `status` from `replica` is a failure (`fail_on_status`): the proxy
    /// reports `Failure::Status` for it, and `Success` for any other status.
    pub fn is_failure_status(&self, replica: usize, status: u16) -> bool {
        self.spec.replicas.get(replica).is_some_and(|r| r.health.fail_on_status.contains(&status))
    }

    /// Every replica's state, for `/status` and metrics.
    pub fn snapshot(&self, now: Instant) -> Vec<ReplicaStatus> {
        let rows = self.spec.replicas.iter().zip(&self.health).zip(&self.loads);
        rows.map(|((r, h), l)| ReplicaStatus {
            url: r.url.clone(),
            status: r.status,
            weight: l.weight,
            state: h.state(),
            requests: l.requests,
            tunnels: l.tunnels,
            picks: l.picks,
            bytes: l.bytes,
            failures: h.failures(),
            last_error: h.last_error(),
            retry_at: h.retry_at(),
            retry_in: h.retry_at().map(|t| t.saturating_duration_since(now)),
            ramp_permille: None,
            check_down: false,
        })
        .zip(&self.slots)
        .map(|(mut m, s)| {
            m.ramp_permille = s
                .ramp_from
                .map(|t| slow_start::share_permille(t, now, self.spec.slow_start))
                .filter(|&p| p < slow_start::FULL_SHARE_PERMILLE);
            m.check_down = s.probe.is_down();
            m
        })
        .collect()
    }

    /// Whether a new request could be sent somewhere now (`/readyz`).
    pub fn usable(&self, now: Instant) -> bool {
        (0..self.spec.replicas.len()).any(|i| {
            self.spec.replicas[i].status.in_service() && matches!(self.avail(i, now), Avail::Ready | Avail::Due)
        })
    }

    fn avail(&self, i: usize, now: Instant) -> Avail {
        avail_of(&self.spec, &self.health, &self.slots, i, now)
    }

    /// The sticky replica, if the route names one that may take the request.
    fn sticky(&self, now: Instant, tried: &[usize], route: Option<&str>) -> Option<usize> {
        let route = route?;
        let i = self.spec.replicas.iter().position(|r| r.route.as_deref() == Some(route))?;
        let ok = self.spec.replicas[i].status.in_service() && !tried.contains(&i) && self.avail(i, now) == Avail::Ready;
        ok.then_some(i)
    }

    /// `byhash`: the candidate `key` ranks first among normal replicas, else among hot
    /// standbys; the same candidates as `by_method`, without the slow-start draw.
    fn hashed(&self, now: Instant, tried: &[usize], key: u64) -> Option<usize> {
        [Status::Normal, Status::HotStandby].into_iter().find_map(|tier| {
            let candidates = (0..self.spec.replicas.len())
                .filter(|&i| {
                    self.spec.replicas[i].status == tier
                        && !tried.contains(&i)
                        && matches!(self.avail(i, now), Avail::Ready | Avail::Due)
                })
                .map(|i| (i, self.slots[i].ring, self.loads[i].weight));
            hash::choose(key, candidates)
        })
    }

    /// Every replica in the order `key` prefers them under `byhash`, whatever their
    /// status and health (`check --explain` shows it).
    pub fn hash_ranking(&self, key: u64) -> Vec<usize> {
        let mut ranked: Vec<(usize, f64)> = (0..self.spec.replicas.len())
            .map(|i| (i, hash::score(key, self.slots[i].ring, self.loads[i].weight)))
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked.into_iter().map(|(i, _)| i).collect()
    }

    /// The method's choice among normal replicas, else among hot standbys. Members
    /// under slow start first draw for a place (slow_start.rs); if that leaves no one,
    /// the pick is made without the draw.
    fn by_method(&mut self, now: Instant, tried: &[usize]) -> Option<usize> {
        let ramping = self.draw_slow_start(now);
        for tier in [Status::Normal, Status::HotStandby] {
            for draw in [true, false] {
                if !draw && !ramping {
                    break;
                }
                let (spec, health, slots) = (&self.spec, &self.health, &self.slots);
                let eligible = |i: usize| {
                    spec.replicas[i].status == tier
                        && !tried.contains(&i)
                        && !(draw && slots[i].held_back)
                        && matches!(avail_of(spec, health, slots, i, now), Avail::Ready | Avail::Due)
                };
                if let Some(i) = self.selector.choose(&mut self.loads, eligible) {
                    return Some(i);
                }
            }
        }
        None
    }

    /// Draws, for each member under slow start, whether it takes part in this pick.
    /// Whether any is ramping.
    fn draw_slow_start(&mut self, now: Instant) -> bool {
        let mut ramping = false;
        for slot in &mut self.slots {
            slot.held_back = false;
            let Some(since) = slot.ramp_from else { continue };
            let share = slow_start::share_permille(since, now, self.spec.slow_start);
            if share >= slow_start::FULL_SHARE_PERMILLE {
                slot.ramp_from = None;
                continue;
            }
            ramping = true;
            slot.held_back = !self.selector.chance_permille(share);
        }
        ramping
    }

    /// How long until some in-service replica could be picked by a new request (the
    /// `Retry-After` of a 503).
    pub fn retry_after(&self, now: Instant) -> Duration {
        (0..self.spec.replicas.len())
            .filter(|&i| self.spec.replicas[i].status.in_service())
            .map(|i| match self.avail(i, now) {
                Avail::Resting(at) => at.saturating_duration_since(now),
                Avail::Ready | Avail::Due | Avail::Busy => Duration::ZERO,
            })
            .min()
            .unwrap_or(IDLE_RETRY_AFTER)
    }

    /// The guard: may `replica` be ejected without passing `max_ejected_percent`?
    fn guard_allows_ejecting(&self, replica: usize) -> bool {
        let percent = usize::from(self.spec.max_ejected_percent.min(100));
        let in_service = |i: &usize| self.spec.replicas[*i].status.in_service();
        if percent == 100 || !self.spec.replicas.get(replica).is_some_and(|r| r.status.in_service()) {
            return true;
        }
        let total = (0..self.spec.replicas.len()).filter(in_service).count();
        let ejected =
            (0..self.spec.replicas.len()).filter(in_service).filter(|&i| self.health[i].state().is_ejected()).count();
        let allowed = (total * percent / 100).min(total.saturating_sub(1));
        ejected < allowed
    }
}

/// Whether replica `i` can be picked at `now`: its passive health, except that one
/// the active checks call down gets no trial before they call it up again.
fn avail_of(spec: &BalancerSpec, health: &[Tracker], slots: &[Slot], i: usize, now: Instant) -> Avail {
    match health[i].avail(now, &spec.replicas[i].health) {
        Avail::Due if slots[i].probe.is_down() => {
            let interval = spec.check.as_ref().map_or(Duration::from_secs(1), |c| c.interval);
            Avail::Resting(now + interval)
        }
        a => a,
    }
}
