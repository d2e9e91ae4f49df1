//! PURE, `now` is a parameter. Passive health of one replica: the state machine that
//! turns reported outcomes into "takes traffic", "rests until T", "one trial in
//! flight". What counts as in service and the guard across replicas live in mod.rs;
//! this file sees one replica at a time.
//!
//! ```text
//! from     event                                  to       rest
//! Healthy  failure, guard allows                  Failed   retry
//! Healthy  failure, guard refuses                 Spared
//! Spared   success                                Healthy
//! Spared   failure, guard allows                  Failed   retry
//! Failed   picked once its retry time has passed  Trial
//! Trial    success                                Healthy  (back to retry)
//! Trial    failure                                Failed   rest × 2, at most retry_max
//! Trial    abandoned, or lost (TRIAL_LOST_AFTER)  Failed   same rest, due at once
//! ```
//!
//! Every state change bumps an epoch, and each attempt carries the epoch it was picked
//! in. A report from an older epoch is history: it says something about the replica
//! before its last change and moves nothing (it is still counted in `failures`).

use std::fmt;
use std::time::{Duration, Instant};

use super::outcome::{Failure, Outcome};
use super::spec::Health;

/// No rest lasts longer than a day: past that a replica is effectively disabled, which
/// is `+D`'s job, and `Instant + Duration` must never overflow.
const REST_CEILING: Duration = Duration::from_secs(24 * 60 * 60);

/// A trial that has not been reported after this long (or `retry_max`, if longer) is
/// presumed lost, and the next pick sends another. The proxy reports every attempt, so
/// this is a safety net for a bug, not a timeout: it is longer than connect + response
/// timeout at their defaults (5 s + 60 s), so a slow live trial is never doubled.
const TRIAL_LOST_AFTER: Duration = Duration::from_secs(120);

/// A replica's health, as `/status` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    Healthy,
    /// Failed, but the guard (`max_ejected_percent`) kept it in service; it is picked
    /// like a healthy one until its next outcome.
    Spared,
    /// Ejected: no traffic until its retry time, then one trial.
    Failed,
    /// Ejected, with its one trial request in flight.
    Trial,
}

impl State {
    /// Out of rotation, and counted against `max_ejected_percent`.
    pub fn is_ejected(self) -> bool {
        matches!(self, Self::Failed | Self::Trial)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Spared => "spared",
            Self::Failed => "failed",
            Self::Trial => "trial",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a replica can be picked at `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Avail {
    /// Healthy or spared: pick at will.
    Ready,
    /// Its retry time has passed: the next pick is its trial.
    Due,
    /// Its trial is in flight.
    Busy,
    /// Resting until then.
    Resting(Instant),
}

#[derive(Clone, Copy, Debug)]
enum Phase {
    Healthy,
    Spared,
    Failed { retry_at: Instant },
    Trial { since: Instant },
}

/// A state change, before mod.rs names the replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Change {
    pub from: State,
    pub to: State,
    pub failure: Option<Failure>,
    /// The rest that starts now, when `to` is `Failed`.
    pub rest: Option<Duration>,
}

/// One replica's health.
#[derive(Clone, Debug)]
pub(super) struct Tracker {
    phase: Phase,
    /// The rest of the current ejection, or of the next one (`retry`) while in service.
    rest: Duration,
    epoch: u32,
    failures: u64,
    last_error: Option<Failure>,
}

impl Tracker {
    pub fn new(health: &Health) -> Self {
        Self { phase: Phase::Healthy, rest: first_rest(health), epoch: 0, failures: 0, last_error: None }
    }

    pub fn state(&self) -> State {
        match self.phase {
            Phase::Healthy => State::Healthy,
            Phase::Spared => State::Spared,
            Phase::Failed { .. } => State::Failed,
            Phase::Trial { .. } => State::Trial,
        }
    }

    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    pub fn failures(&self) -> u64 {
        self.failures
    }

    pub fn last_error(&self) -> Option<Failure> {
        self.last_error
    }

    /// When a resting replica may have its trial.
    pub fn retry_at(&self) -> Option<Instant> {
        match self.phase {
            Phase::Failed { retry_at } => Some(retry_at),
            _ => None,
        }
    }

    pub fn avail(&self, now: Instant, health: &Health) -> Avail {
        match self.phase {
            Phase::Healthy | Phase::Spared => Avail::Ready,
            Phase::Failed { retry_at } if retry_at <= now => Avail::Due,
            Phase::Failed { retry_at } => Avail::Resting(retry_at),
            Phase::Trial { since }
                if now.saturating_duration_since(since) >= health.retry_max.max(TRIAL_LOST_AFTER) =>
            {
                Avail::Due
            }
            Phase::Trial { .. } => Avail::Busy,
        }
    }

    /// The pick that makes a due replica's trial. Reports of a lost earlier trial
    /// become history.
    pub fn begin_trial(&mut self, now: Instant) {
        self.enter(Phase::Trial { since: now });
    }

    /// Applies the outcome of an attempt picked in `epoch`. `may_eject` is the guard's
    /// answer: whether this replica may leave service if the outcome is a failure.
    pub fn report(
        &mut self,
        epoch: u32,
        now: Instant,
        outcome: Outcome,
        health: &Health,
        may_eject: bool,
    ) -> Option<Change> {
        if let Outcome::Failure(f) = outcome {
            self.failures += 1;
            self.last_error = Some(f);
        }
        if epoch != self.epoch {
            return None;
        }
        let from = self.state();
        let failure = match outcome {
            Outcome::Failure(f) => Some(f),
            _ => None,
        };
        match (self.phase, outcome) {
            (Phase::Trial { .. }, Outcome::Abandoned) => {
                // Nothing learned: due again at once, same rest.
                self.enter(Phase::Failed { retry_at: now });
                None
            }
            (_, Outcome::Abandoned) | (Phase::Healthy, Outcome::Success) => None,
            (Phase::Spared | Phase::Trial { .. }, Outcome::Success) => {
                self.rest = first_rest(health);
                self.enter(Phase::Healthy);
                Some(Change { from, to: State::Healthy, failure: None, rest: None })
            }
            (Phase::Healthy | Phase::Spared, Outcome::Failure(_)) if may_eject => {
                self.rest = first_rest(health);
                Some(self.eject(now, from, failure))
            }
            (Phase::Healthy, Outcome::Failure(_)) => {
                self.enter(Phase::Spared);
                Some(Change { from, to: State::Spared, failure, rest: None })
            }
            (Phase::Trial { .. }, Outcome::Failure(_)) => {
                let cap = health.retry_max.max(health.retry).min(REST_CEILING);
                self.rest = self.rest.saturating_mul(2).min(cap);
                Some(self.eject(now, from, failure))
            }
            // Spared and still failing while the guard holds; or Failed, where no
            // attempt carries the current epoch (nothing is picked while resting).
            (Phase::Spared | Phase::Failed { .. }, _) => None,
        }
    }

    /// Back in service at once, whatever the state: `rise` good health checks in a row
    /// (mod.rs). A trial in flight becomes history. `None` when already healthy.
    pub fn restore(&mut self, health: &Health) -> Option<Change> {
        let from = self.state();
        if from == State::Healthy {
            return None;
        }
        self.rest = first_rest(health);
        self.enter(Phase::Healthy);
        Some(Change { from, to: State::Healthy, failure: None, rest: None })
    }

    /// A fresh start for a reused slot (a new address taking the place of one that
    /// left): healthy, no history. The epoch moves on, so no report meant for the
    /// slot's previous member can move the new one.
    pub fn renew(&mut self, health: &Health) {
        let epoch = self.epoch;
        *self = Self::new(health);
        self.epoch = epoch.wrapping_add(1);
    }

    fn eject(&mut self, now: Instant, from: State, failure: Option<Failure>) -> Change {
        let retry_at = now.checked_add(self.rest).unwrap_or(now);
        self.enter(Phase::Failed { retry_at });
        Change { from, to: State::Failed, failure, rest: Some(self.rest) }
    }

    fn enter(&mut self, phase: Phase) {
        self.phase = phase;
        self.epoch = self.epoch.wrapping_add(1);
    }
}

fn first_rest(health: &Health) -> Duration {
    health.retry.min(REST_CEILING)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn health(retry: u64, retry_max: u64) -> Health {
        Health {
            retry: Duration::from_secs(retry),
            retry_max: Duration::from_secs(retry_max),
            fail_on_status: vec![503],
        }
    }

    #[test]
    fn failed_trials_double_the_rest_up_to_retry_max() {
        for (retry, retry_max, want) in [
            (10, 300, &[10, 20, 40, 80, 160, 300, 300][..]),
            (10, 10, &[10, 10, 10][..]),
            (10, 5, &[10, 10][..]), // retry_max below retry counts as retry
            (0, 0, &[0, 0][..]),
            (u64::MAX / 4, u64::MAX, &[86_400, 86_400][..]), // the ceiling
        ] {
            let h = health(retry, retry_max);
            let mut t = Tracker::new(&h);
            let mut now = Instant::now();
            let mut rests = Vec::new();
            for _ in want {
                let outcome = Outcome::Failure(Failure::ConnectRefused);
                let change = t.report(t.epoch(), now, outcome, &h, true).expect("a change");
                let rest = change.rest.expect("a rest");
                rests.push(rest.as_secs());
                now += rest;
                assert_eq!(t.avail(now, &h), Avail::Due);
                t.begin_trial(now);
            }
            assert_eq!(rests, want, "retry {retry} retry_max {retry_max}");
        }
    }

    #[test]
    fn transitions() {
        let fail = Outcome::Failure(Failure::Status(503));
        let (ok, abandoned) = (Outcome::Success, Outcome::Abandoned);
        // (outcomes in order, guard answer, states after each)
        for (outcomes, guard, want) in [
            (&[ok][..], true, &[State::Healthy][..]),
            (&[fail, ok][..], true, &[State::Failed, State::Failed][..]), // nothing picked while failed
            (&[fail][..], false, &[State::Spared][..]),
            (&[fail, fail][..], false, &[State::Spared, State::Spared][..]),
            (&[fail, ok][..], false, &[State::Spared, State::Healthy][..]),
            (&[abandoned][..], true, &[State::Healthy][..]),
        ] {
            let h = health(10, 300);
            let mut t = Tracker::new(&h);
            let now = Instant::now();
            let mut got = Vec::new();
            for &o in outcomes {
                t.report(t.epoch(), now, o, &h, guard);
                got.push(t.state());
            }
            assert_eq!(got, want, "outcomes {outcomes:?} guard {guard}");
        }
    }

    #[test]
    fn trial_outcomes() {
        let h = health(10, 300);
        for (outcome, want_state, want_avail_now) in [
            (Outcome::Success, State::Healthy, Avail::Ready),
            (Outcome::Failure(Failure::Tls), State::Failed, Avail::Resting(Instant::now())),
            (Outcome::Abandoned, State::Failed, Avail::Due),
        ] {
            let mut t = Tracker::new(&h);
            let start = Instant::now();
            t.report(t.epoch(), start, Outcome::Failure(Failure::Reset), &h, true);
            let at = start + 10 * S;
            t.begin_trial(at);
            assert_eq!(t.avail(at, &h), Avail::Busy);
            t.report(t.epoch(), at, outcome, &h, true);
            assert_eq!(t.state(), want_state, "{outcome:?}");
            match want_avail_now {
                Avail::Resting(_) => {
                    assert_eq!(t.avail(at, &h), Avail::Resting(at + 20 * S), "{outcome:?}")
                }
                want => assert_eq!(t.avail(at, &h), want, "{outcome:?}"),
            }
        }
    }

    #[test]
    fn stale_reports_are_counted_but_move_nothing() {
        let h = health(10, 300);
        let mut t = Tracker::new(&h);
        let start = Instant::now();
        let before = t.epoch(); // three attempts picked while healthy
        t.report(before, start, Outcome::Failure(Failure::Reset), &h, true);
        // The other two fail later: no longer rest, no double count in the back-off.
        t.report(before, start + 5 * S, Outcome::Failure(Failure::ResponseTimeout), &h, true);
        t.report(before, start + 9 * S, Outcome::Success, &h, true);
        assert_eq!(t.retry_at(), Some(start + 10 * S));
        assert_eq!((t.failures(), t.last_error()), (2, Some(Failure::ResponseTimeout)));
        // The trial fails: the rest doubles once, from 10 s.
        t.begin_trial(start + 10 * S);
        let change = t.report(t.epoch(), start + 10 * S, Outcome::Failure(Failure::Tls), &h, true);
        assert_eq!(change.and_then(|c| c.rest), Some(20 * S));
    }

    #[test]
    fn restore_brings_back_any_state_and_renew_forgets() {
        let h = health(10, 300);
        let start = Instant::now();
        for (setup, want_from) in [
            (&[Outcome::Failure(Failure::Reset)][..], Some(State::Failed)),
            (&[][..], None), // already healthy
        ] {
            let mut t = Tracker::new(&h);
            for &o in setup {
                t.report(t.epoch(), start, o, &h, true);
            }
            let epoch = t.epoch();
            assert_eq!(t.restore(&h).map(|c| (c.from, c.to)), want_from.map(|f| (f, State::Healthy)), "{setup:?}");
            assert_eq!(t.avail(start, &h), Avail::Ready);
            // A report picked before the restore is history.
            if want_from.is_some() {
                assert_eq!(t.report(epoch, start, Outcome::Failure(Failure::Reset), &h, true), None);
            }
        }
        let mut t = Tracker::new(&h);
        t.report(t.epoch(), start, Outcome::Failure(Failure::Reset), &h, true);
        let before = t.epoch();
        t.renew(&h);
        assert_eq!((t.state(), t.failures(), t.last_error()), (State::Healthy, 0, None));
        assert_ne!(t.epoch(), before);
    }

    #[test]
    fn a_lost_trial_is_replaced_after_its_lease() {
        let h = health(10, 60);
        let mut t = Tracker::new(&h);
        let start = Instant::now();
        t.report(t.epoch(), start, Outcome::Failure(Failure::Reset), &h, true);
        t.begin_trial(start + 10 * S);
        let lost = t.epoch();
        assert_eq!(t.avail(start + 129 * S, &h), Avail::Busy);
        assert_eq!(t.avail(start + 130 * S, &h), Avail::Due);
        t.begin_trial(start + 130 * S);
        // The lost trial's late report is history.
        assert_eq!(t.report(lost, start + 131 * S, Outcome::Success, &h, true), None);
        assert_eq!(t.state(), State::Trial);
    }
}
