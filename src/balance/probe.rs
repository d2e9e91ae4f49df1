//! PURE, `now` is a parameter. Active health checks, combined with passive health:
//! consecutive good and bad checks against `rise` and `fall`, as HAProxy counts them,
//! and what a verdict does to the member. Either kind of health may take a member
//! out (a `fall` goes through the same guard, `max_ejected_percent`, as a failed
//! request); `rise` good checks bring it back, and so does a successful trial request,
//! except while the checks call it down. The checks themselves (I/O) are
//! `health_check.rs`'s.

use std::time::Instant;

use super::outcome::{Failure, Outcome};
use super::{Balancer, State, Status, Transition};

/// What the latest check means for the member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing changes.
    Steady,
    /// `fall` bad checks in a row, and the member is still in service: take it out.
    Fall,
    /// `rise` good checks in a row, and the member is out (or spared): bring it back.
    Rise,
}

/// One member's run of checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeCount {
    ok: u32,
    fail: u32,
    /// The checks say it is down: until they say otherwise, no passive trial brings it
    /// back (a request may well succeed where `/healthz` says the app is unwell).
    down: bool,
}

impl ProbeCount {
    /// Counts one check; `in_service`: the member is healthy (not ejected or spared).
    pub fn record(&mut self, passed: bool, rise: u32, fall: u32, in_service: bool) -> Verdict {
        if passed {
            self.fail = 0;
            self.ok = self.ok.saturating_add(1);
            if self.ok >= rise {
                self.down = false;
                if !in_service {
                    return Verdict::Rise;
                }
            }
        } else {
            self.ok = 0;
            self.fail = self.fail.saturating_add(1);
            if self.fail >= fall {
                self.down = true;
                if in_service {
                    return Verdict::Fall;
                }
            }
        }
        Verdict::Steady
    }

    /// The member was ejected by a failed request: it needs `rise` good checks from now.
    pub fn restart_rise(&mut self) {
        self.ok = 0;
    }

    pub fn is_down(&self) -> bool {
        self.down
    }
}

impl Balancer {
    /// One active check of `replica` ended: `status` is what it answered, `None` when
    /// it did not (connect, TLS or timeout). `Some` when its health changed: log it.
    pub fn check_result(&mut self, replica: usize, status: Option<u16>, now: Instant) -> Option<Transition> {
        let check = self.spec.check.as_ref()?;
        let r = self.spec.replicas.get(replica)?;
        if !r.status.in_service() {
            return None;
        }
        let passed = status.is_some_and(|s| check.expect.contains(s));
        let in_service = self.health[replica].state() == State::Healthy;
        let change = match self.slots[replica].probe.record(passed, check.rise, check.fall, in_service) {
            Verdict::Steady => return None,
            Verdict::Fall => {
                let may_eject = self.guard_allows_ejecting(replica);
                let (health, epoch) = (&r.health, self.health[replica].epoch());
                let failure = Outcome::Failure(Failure::HealthCheck(status));
                self.health[replica].report(epoch, now, failure, health, may_eject)?
            }
            Verdict::Rise => {
                let change = self.health[replica].restore(&r.health)?;
                if change.from.is_ejected() {
                    self.rejoined(replica, now);
                }
                change
            }
        };
        let r = &self.spec.replicas[replica];
        debug_assert!(r.status != Status::Removed);
        Some(Transition {
            balancer: self.spec.name.clone(),
            replica,
            url: r.url.clone(),
            from: change.from,
            to: change.to,
            failure: change.failure,
            rest: change.rest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_rise_and_fall() {
        use Verdict::{Fall, Rise, Steady};
        // (checks as '+'/'-', rise, fall, verdicts); the member is in service until a
        // Fall and out until a Rise.
        for (checks, rise, fall, want) in [
            ("---", 2, 3, &[Steady, Steady, Fall][..]),
            ("--+--", 2, 3, &[Steady, Steady, Steady, Steady, Steady][..]), // a good check resets the run
            ("---++", 2, 3, &[Steady, Steady, Fall, Steady, Rise][..]),
            ("---+-++", 2, 3, &[Steady, Steady, Fall, Steady, Steady, Steady, Rise][..]),
            ("-+", 1, 1, &[Fall, Rise][..]),
            ("++++", 2, 3, &[Steady, Steady, Steady, Steady][..]),
        ] {
            let mut p = ProbeCount::default();
            let mut in_service = true;
            let got: Vec<Verdict> = checks
                .chars()
                .map(|c| {
                    let v = p.record(c == '+', rise, fall, in_service);
                    match v {
                        Fall => in_service = false,
                        Rise => in_service = true,
                        Steady => {}
                    }
                    v
                })
                .collect();
            assert_eq!(got, want, "{checks} rise {rise} fall {fall}");
        }
    }

    #[test]
    fn checks_take_members_out_and_bring_them_back() {
        use crate::balance::spec::{BalancerSpec, Health, HealthCheck, ReplicaSpec, StatusRanges};
        use crate::balance::{Method, Pick};
        use crate::target::{Scheme, Url};
        use std::time::Duration;
        let s = Duration::from_secs(1);
        let replica = |i: u16| ReplicaSpec {
            url: Url { scheme: Scheme::Http, host: "127.0.0.1".into(), port: 3000 + i, path: "/".into(), addr: None },
            weight: 1,
            status: Status::Normal,
            route: None,
            health: Health { retry: 10 * s, retry_max: 300 * s, fail_on_status: vec![] },
        };
        let check = HealthCheck {
            path: "/healthz".into(),
            interval: s,
            timeout: s,
            rise: 2,
            fall: 3,
            expect: StatusRanges(vec![(200, 399)]),
        };
        let spec = BalancerSpec {
            name: "app".into(),
            method: Method::ByRequests,
            hash: None,
            replicas: vec![replica(0), replica(1)],
            sticky_session: None,
            max_attempts: 3,
            max_ejected_percent: 99,
            discovered: vec![],
            slow_start: Duration::ZERO,
            check: Some(check),
        };
        let mut b = Balancer::new(spec, 1);
        let t0 = Instant::now();
        // (replica 1's check answers, its state after each)
        let answers = [Some(500), None, Some(503), Some(200), Some(500), Some(200), Some(204)];
        let want = ["healthy", "healthy", "failed", "failed", "failed", "failed", "healthy"];
        for (k, (status, want)) in answers.iter().zip(want).enumerate() {
            let now = t0 + s * k as u32;
            b.check_result(0, Some(200), now);
            b.check_result(1, *status, now);
            assert_eq!(b.snapshot(now)[1].state.as_str(), want, "check {k} answered {status:?}");
        }
        // While down, its retry time passing brings no trial: only `rise` does.
        let mut b2 = b.clone();
        for k in 0..3 {
            b2.check_result(1, Some(500), t0 + s * (10 + k));
        }
        for _ in 0..5 {
            let Pick::Replica(a) = b2.pick(t0 + 100 * s, &[], None) else { panic!("no pick") };
            assert_eq!(a.replica, 0, "no trial for a member the checks call down");
            b2.report(a, t0 + 100 * s, Outcome::Success);
        }
        // The guard: the last member standing is spared, not ejected.
        for k in 0..3 {
            b2.check_result(0, Some(500), t0 + s * (110 + k));
        }
        assert_eq!(b2.snapshot(t0)[0].state, State::Spared);
    }

    #[test]
    fn down_until_rise_and_spared_members_fall_again() {
        let mut p = ProbeCount::default();
        for _ in 0..3 {
            p.record(false, 2, 3, true);
        }
        assert!(p.is_down());
        // Still failing while spared (the guard kept it in service): each check asks again.
        assert_eq!(p.record(false, 2, 3, true), Verdict::Fall);
        assert_eq!(p.record(true, 2, 3, false), Verdict::Steady);
        assert!(p.is_down());
        assert_eq!(p.record(true, 2, 3, false), Verdict::Rise);
        assert!(!p.is_down());
        // Ejected by a failed request: `rise` good checks from then on bring it back.
        p.restart_rise();
        assert_eq!(p.record(true, 2, 3, false), Verdict::Steady);
        assert_eq!(p.record(true, 2, 3, false), Verdict::Rise);
    }
}
