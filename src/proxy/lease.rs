//! A balancer member's share of one request or tunnel, from `pick` to the end of the
//! work. The balancer counts requests in flight and open tunnels per member; a lease
//! gives that count back when it is dropped, whatever ends the work: a normal finish,
//! an early return or a panicking connection task. A lease that was never reported on
//! reports `Outcome::Abandoned`, so a member's trial in flight is released too.
//!
//! The balancer is shared by every worker thread and by the config reload and DNS
//! discovery, which stamp it with the real clock: its times are read from the real
//! clock here too, not from a worker's last wake-up, so they never run backwards.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::balance::{Affinity, Attempt, Outcome, Pick, Work};
use crate::config::{MemberRemoved, SharedBalancer};
use crate::target::Url;

pub(crate) struct Lease {
    balancer: Arc<SharedBalancer>,
    attempt: Attempt,
    work: Work,
    /// Bytes moved, added to the member's total when the lease ends.
    bytes: u64,
    reported: bool,
}

impl Lease {
    /// Picks a member for a new request and counts the request on it, under one lock
    /// (a pick and its count must not be split, or concurrent picks miss it). The
    /// member's URL is copied into `member` (the member list may change once the lock
    /// is released), reusing the strings it holds. `Err`: no member can take it;
    /// answer 503 with this `Retry-After`.
    pub fn pick<'m>(
        balancer: &Arc<SharedBalancer>,
        tried: &[usize],
        affinity: Affinity<'_>,
        member: &'m mut Option<Url>,
    ) -> Result<(Lease, &'m Url), Duration> {
        let mut b = balancer.lock();
        match b.pick_with(Instant::now(), tried, affinity) {
            Pick::Replica(attempt) => {
                b.start(attempt.replica, Work::Request);
                let picked = &b.spec().replicas[attempt.replica].url;
                let url = member.get_or_insert_with(|| picked.clone());
                url.clone_from(picked);
                let lease =
                    Lease { balancer: Arc::clone(balancer), attempt, work: Work::Request, bytes: 0, reported: false };
                Ok((lease, url))
            }
            Pick::NoneAvailable { retry_after } => Err(retry_after),
        }
    }

    pub fn member(&self) -> usize {
        self.attempt.replica
    }

    /// Whether `status` counts as the member's failure (`failonstatus`).
    pub fn is_failure_status(&self, status: u16) -> bool {
        self.balancer.lock().is_failure_status(self.attempt.replica, status)
    }

    /// What the attempt taught about the member; only the first report counts. A
    /// health change is logged here, once.
    pub fn report(&mut self, outcome: Outcome) {
        if std::mem::replace(&mut self.reported, true) {
            return;
        }
        let change = self.balancer.lock().report(self.attempt, Instant::now(), outcome);
        if let Some(t) = change {
            if t.is_fault() {
                log::warn!("{t}");
            } else {
                log::info!("{t}");
            }
        }
    }

    /// Completes once the member has left the balancer (its name's DNS answer dropped
    /// it). A tunnel's lease keeps the member's slot from being reused meanwhile.
    pub fn member_left(&self) -> MemberRemoved {
        self.balancer.removed(self.attempt.replica)
    }

    pub fn add_bytes(&mut self, bytes: u64) {
        self.bytes = self.bytes.saturating_add(bytes);
    }

    /// The request became a tunnel: it now counts as an open tunnel on the member.
    pub fn into_tunnel(mut self) -> Lease {
        {
            let mut b = self.balancer.lock();
            b.finish(self.attempt.replica, self.work, std::mem::take(&mut self.bytes));
            b.start(self.attempt.replica, Work::Tunnel);
        }
        self.work = Work::Tunnel;
        self
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.report(Outcome::Abandoned);
        self.balancer.lock().finish(self.attempt.replica, self.work, self.bytes);
    }
}
