//! The balancer's central property, checked over pseudo-random operation
//! sequences (the balancer's own xorshift, no test crates): whatever happens, `pick`
//! never hands out a replica that may not take traffic while another may.

use std::time::{Duration, Instant};

use super::health::Avail;
use super::method::Rng;
use super::tests::{balancer, states, FAIL};
use super::*;

/// Over random sequences of picks, reports and clock steps, `pick`
/// never hands out a resting replica or one whose trial is in flight, nor a tried,
/// draining or disabled one; `NoneAvailable` only when no candidate exists; and
/// below 100 % the guard keeps a replica in service.
#[test]
fn property_pick_never_returns_a_failed_replica_while_another_is_usable() {
    let statuses =
        [Status::Normal, Status::Normal, Status::Normal, Status::HotStandby, Status::Draining, Status::Disabled];
    let methods = [Method::ByRequests, Method::ByBusyness, Method::ByTraffic];
    let (mut trials, mut none, mut spared) = (0, 0, 0);
    for seed in 0..300u64 {
        let mut rng = Rng::new(seed);
        let mut roll = |n: usize| rng.below(n as u64) as usize;
        let n = 1 + roll(5);
        let replicas: Vec<(u32, Status)> =
            (0..n).map(|_| (1 + roll(3) as u32, statuses[roll(statuses.len())])).collect();
        let percent = [0, 50, 99, 100][roll(4)];
        let mut b = balancer(methods[roll(3)], &replicas, percent);
        let mut now = Instant::now();
        let mut open: Vec<Attempt> = Vec::new();
        for step in 0..400 {
            let case = format!("seed {seed} step {step} {replicas:?} {percent}%");
            match roll(4) {
                0 => now += Duration::from_millis(roll(4000) as u64),
                1 if !open.is_empty() => {
                    let a = open.swap_remove(roll(open.len()));
                    let outcome =
                        [Outcome::Success, FAIL, Outcome::Failure(Failure::Status(503)), Outcome::Abandoned][roll(4)];
                    b.report(a, now, outcome);
                    b.finish(a.replica, Work::Request, roll(10_000) as u64);
                }
                _ => {
                    let tried: Vec<usize> = (0..n).filter(|_| roll(4) == 0).collect();
                    let route = ["r0", "r1", "r2", "x"].get(roll(6)).copied();
                    let before: Vec<Avail> = (0..n).map(|i| b.avail(i, now)).collect();
                    let candidate = |i: usize| {
                        replicas[i].1.in_service()
                            && !tried.contains(&i)
                            && matches!(before[i], Avail::Ready | Avail::Due)
                    };
                    match b.pick(now, &tried, route) {
                        Pick::Replica(a) => {
                            let i = a.replica;
                            assert!(candidate(i), "{case}: picked {i} ({:?}, tried {tried:?})", before[i]);
                            assert_eq!(a.trial, before[i] == Avail::Due, "{case}");
                            trials += usize::from(a.trial);
                            let sticky = route.is_some_and(|r| b.spec().replicas[i].route.as_deref() == Some(r));
                            if replicas[i].1 == Status::HotStandby && !sticky {
                                assert!(
                                    !(0..n).any(|j| replicas[j].1 == Status::Normal && candidate(j)),
                                    "{case}: standby while a normal one can"
                                );
                            }
                            b.start(i, Work::Request);
                            open.push(a);
                        }
                        Pick::NoneAvailable { retry_after } => {
                            assert!(!(0..n).any(candidate), "{case}: none available, but {before:?} tried {tried:?}");
                            assert_eq!(retry_after, b.retry_after(now), "{case}");
                            none += 1;
                        }
                    }
                }
            }
            let in_service: Vec<usize> = (0..n).filter(|&i| replicas[i].1.in_service()).collect();
            if percent < 100 && !in_service.is_empty() {
                let states = states(&b, now);
                spared += states.iter().filter(|s| **s == State::Spared).count();
                assert!(in_service.iter().any(|&i| !states[i].is_ejected()), "{case}: guard broken: {states:?}");
                assert!(b.usable(now), "{case}");
            }
        }
    }
    // The sequences reach the interesting states, or the property says little.
    assert!(trials > 100 && none > 100 && spared > 100, "trials {trials}, none available {none}, spared {spared}");
}
