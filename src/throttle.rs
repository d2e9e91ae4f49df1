//! Repeated failure lines, throttled: the first line of a kind is logged at once; the
//! same line again within `WINDOW` is only counted, and the first one after the window
//! carries the count: `… (and 41 more in the last 10s)`. A replica that refuses every
//! connect, or a process out of descriptors, would otherwise write one line per
//! request, and a log that floods hides the line that matters (and costs a write
//! per request on a hot path).
//!
//! `Throttle` is the pure bookkeeping (time is a parameter); `warn` and `error` share
//! one process-wide throttle, locked only on these failure paths.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long repeats of one line are held back.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Kinds remembered at once. Lines name replicas and causes, not clients, so a few
/// dozen kinds is the normal; the cap only bounds memory if that ever stops holding.
const MAX_KINDS: usize = 1024;

struct Seen {
    /// When the line was last written.
    since: Instant,
    /// Repeats held back since then.
    held: u64,
}

/// What to do with one occurrence of a line.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Write it; `held` repeats were held back in the `for_` before it.
    Write { held: u64, for_: Duration },
    /// Count it and write nothing.
    Hold,
}

#[derive(Default)]
pub struct Throttle {
    kinds: HashMap<String, Seen>,
}

impl Throttle {
    /// Judges one occurrence of `line` at `now`.
    pub fn admit(&mut self, line: &str, now: Instant) -> Verdict {
        if let Some(seen) = self.kinds.get_mut(line) {
            let for_ = now.saturating_duration_since(seen.since);
            if for_ < WINDOW {
                seen.held += 1;
                return Verdict::Hold;
            }
            seen.since = now;
            return Verdict::Write { held: std::mem::take(&mut seen.held), for_ };
        }
        if self.kinds.len() >= MAX_KINDS {
            self.kinds.retain(|_, s| now.saturating_duration_since(s.since) < WINDOW);
            if self.kinds.len() >= MAX_KINDS {
                self.kinds.clear();
            }
        }
        self.kinds.insert(line.to_string(), Seen { since: now, held: 0 });
        Verdict::Write { held: 0, for_: Duration::ZERO }
    }
}

static THROTTLE: Mutex<Option<Throttle>> = Mutex::new(None);

fn write(level: log::Level, line: &str) {
    let verdict = {
        let mut t = THROTTLE.lock().unwrap_or_else(|e| e.into_inner());
        t.get_or_insert_with(Throttle::default).admit(line, Instant::now())
    };
    match verdict {
        Verdict::Hold => {}
        Verdict::Write { held: 0, .. } => log::log!(level, "{line}"),
        Verdict::Write { held, for_ } => {
            log::log!(level, "{line} (and {held} more in the last {}s)", for_.as_secs())
        }
    }
}

/// `log::warn!` of `line`, throttled.
pub fn warn(line: &str) {
    write(log::Level::Warn, line);
}

/// `log::error!` of `line`, throttled.
pub fn error(line: &str) {
    write(log::Level::Error, line);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_held_back_for_a_window_then_counted() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut t = Throttle::default();
        for (line, ms, want) in [
            ("a", 0, Verdict::Write { held: 0, for_: Duration::ZERO }),
            ("a", 10, Verdict::Hold),
            ("b", 20, Verdict::Write { held: 0, for_: Duration::ZERO }), // another kind is not held
            ("a", 9_999, Verdict::Hold),
            ("a", 10_000, Verdict::Write { held: 2, for_: Duration::from_secs(10) }),
            ("a", 10_001, Verdict::Hold),
            ("a", 40_000, Verdict::Write { held: 1, for_: Duration::from_secs(30) }),
            ("b", 40_000, Verdict::Write { held: 0, for_: Duration::from_millis(39_980) }),
        ] {
            assert_eq!(t.admit(line, at(ms)), want, "{line:?} at {ms} ms");
        }
    }

    #[test]
    fn kinds_are_capped() {
        let now = Instant::now();
        let mut t = Throttle::default();
        for i in 0..MAX_KINDS * 2 {
            t.admit(&i.to_string(), now);
        }
        assert!(t.kinds.len() <= MAX_KINDS);
    }
}
