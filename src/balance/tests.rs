//! The `Balancer` as the proxy drives it: pick, start, report, finish on a fake clock
//! (a base `Instant` plus offsets). method.rs and health.rs test their parts alone.

use std::time::{Duration, Instant};

use super::*;
use crate::target::Scheme;

const S: Duration = Duration::from_secs(1);
pub(super) const FAIL: Outcome = Outcome::Failure(Failure::ConnectRefused);

fn replica(i: usize, weight: u32, status: Status) -> ReplicaSpec {
    ReplicaSpec {
        url: Url { scheme: Scheme::Http, host: format!("r{i}"), port: 3000, path: "/".to_string(), addr: None },
        weight,
        status,
        route: Some(format!("r{i}")),
        health: Health { retry: 10 * S, retry_max: 300 * S, fail_on_status: vec![500, 503] },
    }
}

pub(super) fn balancer(method: Method, replicas: &[(u32, Status)], max_ejected_percent: u8) -> Balancer {
    let replicas = replicas.iter().enumerate().map(|(i, &(w, s))| replica(i, w, s)).collect();
    let spec = BalancerSpec {
        name: "backend".to_string(),
        method,
        hash: None,
        replicas,
        sticky_session: Some("JSESSIONID".to_string()),
        max_attempts: 3,
        max_ejected_percent,
        discovered: Vec::new(),
        slow_start: std::time::Duration::ZERO,
        check: None,
    };
    Balancer::new(spec, 42)
}

fn normal(n: usize) -> Vec<(u32, Status)> {
    vec![(1, Status::Normal); n]
}

fn attempt(pick: Pick) -> Attempt {
    match pick {
        Pick::Replica(a) => a,
        Pick::NoneAvailable { retry_after } => panic!("no replica (retry after {retry_after:?})"),
    }
}

/// Picks `replica` by listing every other one as tried.
fn pick_exactly(b: &mut Balancer, now: Instant, replica: usize) -> Attempt {
    let others: Vec<usize> = (0..b.spec().replicas.len()).filter(|&i| i != replica).collect();
    let a = attempt(b.pick(now, &others, None));
    assert_eq!(a.replica, replica);
    a
}

/// One whole request on whatever `pick` chooses; returns the replica.
fn request(b: &mut Balancer, now: Instant, outcome: Outcome) -> Option<usize> {
    let a = match b.pick(now, &[], None) {
        Pick::Replica(a) => a,
        Pick::NoneAvailable { .. } => return None,
    };
    b.start(a.replica, Work::Request);
    b.report(a, now, outcome);
    b.finish(a.replica, Work::Request, 100);
    Some(a.replica)
}

pub(super) fn states(b: &Balancer, now: Instant) -> Vec<State> {
    b.snapshot(now).iter().map(|r| r.state).collect()
}

#[test]
fn byrequests_gives_the_nginx_sequence() {
    let mut b = balancer(Method::ByRequests, &[(5, Status::Normal), (1, Status::Normal), (1, Status::Normal)], 99);
    let now = Instant::now();
    let got: String = (0..14).map(|_| (b'a' + attempt(b.pick(now, &[], None)).replica as u8) as char).collect();
    assert_eq!(got, "aabacaaaabacaa");
}

#[test]
fn bybusyness_prefers_the_replica_with_fewest_open_tunnels() {
    let mut b = balancer(Method::ByBusyness, &[(1, Status::Normal), (2, Status::Normal)], 99);
    let now = Instant::now();
    for _ in 0..6 {
        let a = attempt(b.pick(now, &[], None));
        b.start(a.replica, Work::Tunnel);
    }
    let open: Vec<u32> = b.snapshot(now).iter().map(|r| r.tunnels).collect();
    assert_eq!(open, [2, 4]);
    b.finish(1, Work::Tunnel, 0);
    b.finish(1, Work::Tunnel, 0);
    b.finish(1, Work::Tunnel, 0); // 2/1 against 1/2: replica 1 is least busy
    assert_eq!(attempt(b.pick(now, &[], None)).replica, 1);
}

#[test]
fn a_failed_replica_gets_nothing_until_its_retry_time_then_one_trial() {
    for method in [Method::ByRequests, Method::ByBusyness, Method::ByTraffic] {
        let mut b = balancer(method, &normal(2), 99);
        let t0 = Instant::now();
        let a = pick_exactly(&mut b, t0, 0);
        let change = b.report(a, t0, FAIL).expect("a transition");
        assert_eq!((change.to, change.rest), (State::Failed, Some(10 * S)), "{method}");
        for ms in (0..10_000).step_by(250) {
            let now = t0 + Duration::from_millis(ms);
            assert_eq!(request(&mut b, now, Outcome::Success), Some(1), "{method} at {ms}ms");
        }
        let t10 = t0 + 10 * S;
        let mut trial = None;
        for _ in 0..10 {
            let a = attempt(b.pick(t10, &[], None));
            if a.replica == 0 {
                trial = Some(a);
                break;
            }
            b.start(a.replica, Work::Request); // busy, so bybusyness turns to replica 0
        }
        let trial = trial.expect("a trial");
        assert!(trial.trial, "{method}");
        for _ in 0..20 {
            assert_eq!(attempt(b.pick(t10 + S, &[], None)).replica, 1, "{method}: trial in flight");
        }
        let back = b.report(trial, t10 + S, Outcome::Success).expect("a transition");
        assert_eq!((back.from, back.to), (State::Trial, State::Healthy), "{method}");
        let picked: Vec<usize> = (0..10).filter_map(|_| request(&mut b, t10 + S, Outcome::Success)).collect();
        assert!(picked.contains(&0), "{method}: back in rotation, got {picked:?}");
    }
}

#[test]
fn back_off_doubles_while_trials_fail_and_resets_after_success() {
    let mut b = balancer(Method::ByRequests, &normal(2), 99);
    let mut now = Instant::now();
    let mut rests = Vec::new();
    let mut a = pick_exactly(&mut b, now, 0);
    for _ in 0..7 {
        let rest = b.report(a, now, FAIL).and_then(|t| t.rest).expect("a rest");
        rests.push(rest.as_secs());
        let early = b.pick(now + rest - Duration::from_millis(1), &[1], None);
        assert!(matches!(early, Pick::NoneAvailable { .. }), "{early:?}");
        now += rest;
        a = pick_exactly(&mut b, now, 0);
        assert!(a.trial);
    }
    assert_eq!(rests, [10, 20, 40, 80, 160, 300, 300]);
    b.report(a, now, Outcome::Success);
    let a = pick_exactly(&mut b, now, 0);
    assert_eq!(b.report(a, now, FAIL).and_then(|t| t.rest), Some(10 * S));
}

#[test]
fn the_guard_keeps_replicas_in_service() {
    use State::{Failed as F, Spared as P};
    let h = (1, Status::HotStandby);
    // Every replica fails once, in order.
    for (replicas, percent, want) in [
        (normal(1), 99, &[P][..]),
        (normal(2), 99, &[F, P][..]),
        (normal(3), 99, &[F, F, P][..]),
        (normal(3), 50, &[F, P, P][..]),
        (normal(4), 50, &[F, F, P, P][..]),
        (normal(3), 0, &[P, P, P][..]),   // 0: never eject
        (normal(3), 100, &[F, F, F][..]), // 100: no guard
        (normal(3), 255, &[F, F, F][..]), // over 100 counts as 100
        (vec![(1, Status::Normal), (1, Status::Normal), h], 99, &[F, F, P][..]),
        (vec![(1, Status::Normal), (1, Status::Disabled)], 99, &[P, F][..]), // +D is not in service
    ] {
        let mut b = balancer(Method::ByBusyness, &replicas, percent);
        let now = Instant::now();
        for i in 0..replicas.len() {
            let a = Attempt { replica: i, trial: false, epoch: b.health[i].epoch() };
            b.report(a, now, FAIL);
        }
        assert_eq!(states(&b, now), want, "{replicas:?} max_ejected_percent={percent}");
        assert_eq!(b.usable(now), percent < 100, "{replicas:?} max_ejected_percent={percent}");
        if percent < 100 {
            let picked = request(&mut b, now, FAIL).expect("a replica in service");
            assert_eq!(want[picked], P, "{replicas:?} max_ejected_percent={percent}");
        }
    }
}

#[test]
fn a_spared_replica_recovers_on_success_and_is_ejected_once_allowed() {
    let mut b = balancer(Method::ByRequests, &normal(2), 99);
    let t0 = Instant::now();
    let a = pick_exactly(&mut b, t0, 0);
    b.report(a, t0, FAIL);
    let a = pick_exactly(&mut b, t0, 1);
    assert_eq!(b.report(a, t0, FAIL).map(|t| t.to), Some(State::Spared));
    let a = pick_exactly(&mut b, t0, 1);
    assert_eq!(b.report(a, t0, FAIL), None, "still spared, nothing new to log");
    let trial = pick_exactly(&mut b, t0 + 10 * S, 0);
    b.report(trial, t0 + 10 * S, Outcome::Success);
    let a = pick_exactly(&mut b, t0 + 10 * S, 1);
    assert_eq!(b.report(a, t0 + 10 * S, FAIL).map(|t| (t.from, t.to)), Some((State::Spared, State::Failed)));
}

#[test]
fn none_available_says_when_to_retry() {
    let mut b = balancer(Method::ByRequests, &normal(2), 100);
    let t0 = Instant::now();
    let a = pick_exactly(&mut b, t0, 0);
    b.report(a, t0, FAIL);
    let a = pick_exactly(&mut b, t0 + 3 * S, 1);
    b.report(a, t0 + 3 * S, FAIL);
    assert!(!b.usable(t0 + 5 * S));
    for (at, want) in [(5, Some(5)), (9, Some(1)), (10, None)] {
        let got = match b.pick(t0 + at * S, &[], None) {
            Pick::NoneAvailable { retry_after } => Some(retry_after.as_secs()),
            Pick::Replica(a) => {
                assert!(a.trial && a.replica == 0, "at {at}s: {a:?}");
                None
            }
        };
        assert_eq!(got, want, "at {at}s");
    }
    // Replica 0's trial is in flight, 1 rests until 13 s: come back soon.
    assert_eq!(b.pick(t0 + 10 * S, &[], None), Pick::NoneAvailable { retry_after: Duration::ZERO });

    let mut b = balancer(Method::ByRequests, &[(1, Status::Disabled), (1, Status::Draining)], 99);
    assert_eq!(b.pick(t0, &[], None), Pick::NoneAvailable { retry_after: IDLE_RETRY_AFTER });
    let mut b = balancer(Method::ByRequests, &normal(2), 99);
    assert_eq!(b.pick(t0, &[0, 1], None), Pick::NoneAvailable { retry_after: Duration::ZERO });
}

#[test]
fn hot_standby_takes_traffic_only_while_no_normal_replica_can() {
    let mut b = balancer(Method::ByBusyness, &[(1, Status::Normal), (1, Status::HotStandby)], 99);
    let t0 = Instant::now();
    for _ in 0..20 {
        assert_eq!(request(&mut b, t0, Outcome::Success), Some(0));
    }
    assert_eq!(attempt(b.pick(t0, &[0], None)).replica, 1, "the normal one was tried");
    let a = attempt(b.pick(t0, &[], None));
    b.report(a, t0, Outcome::Failure(Failure::ConnectTimeout));
    assert_eq!(request(&mut b, t0 + S, Outcome::Success), Some(1));
    let trial = attempt(b.pick(t0 + 10 * S, &[], None));
    assert_eq!((trial.replica, trial.trial), (0, true), "the trial goes before the standby");
    assert_eq!(request(&mut b, t0 + 10 * S, Outcome::Success), Some(1));
    b.report(trial, t0 + 11 * S, Outcome::Success);
    for _ in 0..20 {
        assert_eq!(request(&mut b, t0 + 11 * S, Outcome::Success), Some(0));
    }
}

#[test]
fn draining_and_disabled_replicas_are_never_picked() {
    let replicas = [(1, Status::Draining), (1, Status::Normal), (1, Status::Disabled), (5, Status::HotStandby)];
    for method in [Method::ByRequests, Method::ByBusyness, Method::ByTraffic] {
        let mut b = balancer(method, &replicas, 99);
        let now = Instant::now();
        for route in [None, Some("r0"), Some("r2")] {
            for _ in 0..20 {
                assert_eq!(attempt(b.pick(now, &[], route)).replica, 1, "{method} sticky {route:?}");
                assert_eq!(attempt(b.pick(now, &[1], route)).replica, 3, "{method} sticky {route:?}");
            }
        }
        // A draining replica's open tunnels still finish.
        b.start(0, Work::Tunnel);
        b.finish(0, Work::Tunnel, 4096);
        let row = &b.snapshot(now)[0];
        assert_eq!((row.tunnels, row.bytes, row.picks), (0, 4096, 0), "{method}");
    }
}

#[test]
fn sticky_route_pins_and_falls_back() {
    let t0 = Instant::now();
    let (pinned, without, all) = (&[1, 1, 1, 1][..], &[0, 2, 0, 2][..], &[0, 1, 2, 0][..]);
    // (route, replica 1 failed, tried, status of replica 1, replicas picked)
    for (route, failed, tried, status, want) in [
        (Some("r1"), false, &[][..], Status::Normal, pinned),
        (Some("r1"), false, &[][..], Status::HotStandby, pinned), // a healthy standby keeps its sessions
        (Some("r1"), true, &[][..], Status::Normal, without),
        (Some("r1"), false, &[1][..], Status::Normal, without),
        (Some("r1"), false, &[][..], Status::Draining, without),
        (Some("r1"), false, &[][..], Status::Disabled, without),
        (Some("R1"), false, &[][..], Status::Normal, all), // routes are case-sensitive
        (Some("zz"), false, &[][..], Status::Normal, all),
        (None, false, &[][..], Status::Normal, all),
    ] {
        let replicas = [(1, Status::Normal), (1, status), (1, Status::Normal)];
        let mut b = balancer(Method::ByRequests, &replicas, 99);
        if failed {
            let a = pick_exactly(&mut b, t0, 1);
            b.report(a, t0, FAIL);
        }
        let got: Vec<usize> = (0..4).map(|_| attempt(b.pick(t0 + S, tried, route)).replica).collect();
        assert_eq!(got, want, "route {route:?} failed {failed} tried {tried:?} status {status}");
    }
}

#[test]
fn tried_replicas_are_skipped() {
    for method in [Method::ByRequests, Method::ByBusyness, Method::ByTraffic] {
        let mut b = balancer(method, &normal(3), 99);
        let now = Instant::now();
        for (tried, want) in
            [(&[0, 1][..], Some(2)), (&[2, 0][..], Some(1)), (&[0, 1, 2][..], None), (&[1, 2, 7][..], Some(0))]
        {
            let got = match b.pick(now, tried, None) {
                Pick::Replica(a) => Some(a.replica),
                Pick::NoneAvailable { .. } => None,
            };
            assert_eq!(got, want, "{method} tried {tried:?}");
        }
    }
}

#[test]
fn requests_in_flight_when_a_replica_fails_are_history() {
    let mut b = balancer(Method::ByRequests, &normal(2), 99);
    let t0 = Instant::now();
    let old: Vec<Attempt> = (0..3).map(|_| pick_exactly(&mut b, t0, 0)).collect();
    assert!(b.report(old[0], t0, FAIL).is_some());
    assert_eq!(b.report(old[1], t0 + 5 * S, Outcome::Failure(Failure::ResponseTimeout)), None);
    assert_eq!(b.report(old[2], t0 + 6 * S, Outcome::Success), None, "only the trial ends an ejection");
    let row = &b.snapshot(t0 + 6 * S)[0];
    assert_eq!((row.state, row.failures, row.retry_in), (State::Failed, 2, Some(4 * S)));
    assert_eq!(row.last_error, Some(Failure::ResponseTimeout));
}

#[test]
fn an_abandoned_trial_lets_the_next_pick_try() {
    let mut b = balancer(Method::ByRequests, &normal(2), 99);
    let t0 = Instant::now();
    let a = pick_exactly(&mut b, t0, 0);
    b.report(a, t0, FAIL);
    let trial = pick_exactly(&mut b, t0 + 10 * S, 0);
    assert_eq!(b.pick(t0 + 10 * S, &[1], None), Pick::NoneAvailable { retry_after: Duration::ZERO });
    assert_eq!(b.report(trial, t0 + 11 * S, Outcome::Abandoned), None);
    assert!(pick_exactly(&mut b, t0 + 11 * S, 0).trial);
}

#[test]
fn failure_statuses_come_from_the_replica() {
    let b = balancer(Method::ByRequests, &normal(1), 99);
    for (replica, status, want) in [(0, 503, true), (0, 500, true), (0, 502, false), (0, 200, false), (9, 503, false)] {
        assert_eq!(b.is_failure_status(replica, status), want, "replica {replica} status {status}");
    }
}

#[test]
fn transitions_read_well_in_a_log() {
    let url = replica(0, 1, Status::Normal).url;
    let t = |from, to, failure, rest| Transition {
        balancer: "app".into(),
        replica: 0,
        url: url.clone(),
        from,
        to,
        failure,
        rest,
    };
    let refused = Some(Failure::ConnectRefused);
    for (transition, want) in [
        (t(State::Healthy, State::Failed, refused, Some(10 * S)), "failed (cannot connect): no traffic for 10s"),
        (
            t(State::Trial, State::Failed, Some(Failure::Status(503)), Some(S * 3 / 2)),
            "failed its trial (answered 503, listed in failonstatus): no traffic for 1.500s",
        ),
        (
            t(State::Healthy, State::Spared, refused, None),
            "failed (cannot connect) but stays in service (max_ejected_percent)",
        ),
        (t(State::Trial, State::Healthy, None, None), "recovered: its trial request succeeded"),
        (t(State::Spared, State::Healthy, None, None), "recovered"),
    ] {
        assert_eq!(transition.to_string(), format!("balancer://app: replica http://r0:3000 {want}"));
        assert_eq!(transition.is_fault(), transition.to != State::Healthy);
    }
}
