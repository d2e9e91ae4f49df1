//! A worker's pending deadlines. The poller's wait ends at `next()`, so an idle worker
//! sleeps until its earliest deadline and no ticker runs. Arming, re-arming and
//! dropping a deadline touch only this table (slots are reused, nothing is allocated
//! once the table has grown to the worker's peak); finding the earliest is a scan,
//! done only when the remembered earliest has passed.
//!
//! `next` is a lower bound: removing the earliest deadline leaves it in place, which
//! costs at most one early wake-up and a scan, never a late one.

use std::time::Instant;

struct Slot<W> {
    at: Instant,
    /// `None` once fired (the owner has not noticed yet) or not armed.
    waker: Option<W>,
}

pub struct Timers<W> {
    slots: Vec<Option<Slot<W>>>,
    free: Vec<usize>,
    next: Option<Instant>,
}

impl<W> Default for Timers<W> {
    fn default() -> Self {
        Self { slots: Vec::new(), free: Vec::new(), next: None }
    }
}

impl<W> Timers<W> {
    /// Arms a deadline; the id names it until `remove`.
    pub fn insert(&mut self, at: Instant, waker: W) -> usize {
        self.lower_next(at);
        let slot = Some(Slot { at, waker: Some(waker) });
        match self.free.pop() {
            Some(id) => {
                self.slots[id] = slot;
                id
            }
            None => {
                self.slots.push(slot);
                self.slots.len() - 1
            }
        }
    }

    /// Re-arms `id` for `at` with `waker` (a moved deadline, or a new waker).
    pub fn arm(&mut self, id: usize, at: Instant, waker: W) {
        if let Some(Some(slot)) = self.slots.get_mut(id) {
            slot.at = at;
            slot.waker = Some(waker);
            self.lower_next(at);
        }
    }

    /// The waker armed on `id`, to compare with a new one before replacing it.
    pub fn waker(&self, id: usize) -> Option<(&W, Instant)> {
        match self.slots.get(id) {
            Some(Some(Slot { at, waker: Some(w) })) => Some((w, *at)),
            _ => None,
        }
    }

    pub fn remove(&mut self, id: usize) {
        if let Some(slot) = self.slots.get_mut(id) {
            if slot.take().is_some() {
                self.free.push(id);
            }
        }
    }

    /// Drops the free tail (`super::compact`).
    pub fn compact(&mut self) {
        super::compact_slots(&mut self.slots, &mut self.free);
    }

    /// No armed deadline is earlier than this.
    pub fn next(&self) -> Option<Instant> {
        self.next
    }

    /// Hands every armed waker due at `now` to `fire` (disarming it) and recomputes
    /// `next` exactly.
    pub fn expire(&mut self, now: Instant, mut fire: impl FnMut(W)) {
        if self.next.is_none_or(|n| n > now) {
            return;
        }
        let mut next: Option<Instant> = None;
        for slot in self.slots.iter_mut().flatten() {
            if slot.waker.is_none() {
                continue;
            }
            if slot.at <= now {
                if let Some(w) = slot.waker.take() {
                    fire(w);
                }
            } else if next.is_none_or(|n| slot.at < n) {
                next = Some(slot.at);
            }
        }
        self.next = next;
    }

    fn lower_next(&mut self, at: Instant) {
        if self.next.is_none_or(|n| at < n) {
            self.next = Some(at);
        }
    }

    /// Armed or fired-but-not-removed deadlines.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.iter().flatten().count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ms(base: Instant, n: u64) -> Instant {
        base + Duration::from_millis(n)
    }

    fn fired(t: &mut Timers<&'static str>, now: Instant) -> Vec<&'static str> {
        let mut out = Vec::new();
        t.expire(now, |w| out.push(w));
        out.sort_unstable();
        out
    }

    #[test]
    fn next_is_the_earliest_armed_deadline() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        assert_eq!(t.next(), None);
        for (at, name) in [(30, "c"), (10, "a"), (20, "b")] {
            t.insert(ms(t0, at), name);
        }
        assert_eq!(t.next(), Some(ms(t0, 10)));
        assert_eq!(fired(&mut t, ms(t0, 5)), Vec::<&str>::new());
        assert_eq!(fired(&mut t, ms(t0, 20)), vec!["a", "b"]);
        assert_eq!(t.next(), Some(ms(t0, 30)));
        assert_eq!(fired(&mut t, ms(t0, 30)), vec!["c"]);
        assert_eq!(t.next(), None);
    }

    #[test]
    fn a_removed_earliest_costs_one_early_scan_never_a_late_wake() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        let a = t.insert(ms(t0, 10), "a");
        t.insert(ms(t0, 50), "b");
        t.remove(a);
        // Still a lower bound: the wait may end early, never late.
        assert_eq!(t.next(), Some(ms(t0, 10)));
        assert_eq!(fired(&mut t, ms(t0, 10)), Vec::<&str>::new());
        assert_eq!(t.next(), Some(ms(t0, 50)));
    }

    #[test]
    fn rearming_moves_a_deadline_both_ways() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        let a = t.insert(ms(t0, 100), "a");
        t.arm(a, ms(t0, 10), "a");
        assert_eq!(t.next(), Some(ms(t0, 10)));
        assert_eq!(fired(&mut t, ms(t0, 10)), vec!["a"]);
        // Fired: nothing armed until the owner re-arms it, later.
        assert_eq!(t.next(), None);
        t.arm(a, ms(t0, 200), "a");
        assert_eq!(t.next(), Some(ms(t0, 200)));
        assert_eq!(fired(&mut t, ms(t0, 150)), Vec::<&str>::new());
        assert_eq!(fired(&mut t, ms(t0, 200)), vec!["a"]);
    }

    #[test]
    fn slots_are_reused() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        for round in 0..100 {
            let ids: Vec<usize> = (0..8).map(|i| t.insert(ms(t0, round * 8 + i), "x")).collect();
            for id in ids {
                t.remove(id);
            }
        }
        assert_eq!(t.len(), 0);
        assert!(t.slots.len() <= 8, "{} slots for 8 live deadlines", t.slots.len());
        // Removing twice, or an unknown id, does nothing.
        t.remove(0);
        t.remove(999);
        assert_eq!(t.free.len(), t.slots.len());
    }
}
