//! When a worker asks the C allocator to give its free pages back to the system: after
//! a burst of connections has closed.
//!
//! The allocator keeps what a burst freed (it returns memory only from the top of its
//! heap, and a few blocks still in use sit above), so without this a host that once
//! held 9,000 tunnels keeps their memory for good. The request stores and spare
//! buffers free what went unused at one housekeeping round and the next (their
//! low-water mark), so the pages are given back at the round that sees the drop and
//! once more at the round after it. A steady load, whose connection count goes up and
//! down by less than `DROP`, never pays for the walk.

/// Connections closed since the busiest moment that make a burst: fewer would free
/// too little to be worth a walk of the heap (about 4 KiB each, 20 KiB with TLS).
pub const DROP: usize = 64;

/// The connection count's high-water mark since the last release.
#[derive(Debug, Default)]
pub struct AfterBurst {
    peak: usize,
    /// The round after a release gives back what the stores freed at it.
    again: bool,
}

impl AfterBurst {
    /// A connection opened: `open` are open now.
    pub fn opened(&mut self, open: usize) {
        self.peak = self.peak.max(open);
    }

    /// At a housekeeping round, with `open` connections open: whether to give free
    /// pages back now.
    pub fn due(&mut self, open: usize) -> bool {
        let dropped = self.peak.saturating_sub(open) >= DROP;
        let due = dropped || self.again;
        self.again = dropped;
        self.peak = open;
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_follows_a_drop_of_drop_connections_and_the_round_after_it() {
        // (connections opened up to, open at the round) per round → due.
        let rounds: [(usize, usize, bool); 8] = [
            (10, 10, false),
            (10 + DROP, 10 + DROP, false),
            (10 + DROP, 10, true),
            (10, 10, true),
            (10, 10, false),
            (DROP - 1, 0, false),
            (5000, 4000, true),
            (4000, 4000, true),
        ];
        let mut b = AfterBurst::default();
        for (i, (peak, open, want)) in rounds.into_iter().enumerate() {
            b.opened(peak);
            assert_eq!(b.due(open), want, "round {i}: peak {peak}, open {open}");
        }
    }

    #[test]
    fn the_high_water_mark_counts_from_the_last_round() {
        let mut b = AfterBurst::default();
        b.opened(DROP);
        assert!(b.due(0));
        assert!(b.due(0), "the round after a release");
        // The peak was reset: a later round with no new connections is quiet.
        assert!(!b.due(0));
    }
}
