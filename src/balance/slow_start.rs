//! PURE, `now` is a parameter. Slow start (`slow_start = "30s"`): a member that joins
//! a running balancer, or comes back after an ejection, gets a share of what the
//! method would give it that grows linearly from `MIN_SHARE_PERMILLE` to all of it
//! over the window. After a scale-out, the WebSockets that reconnect all at once
//! (and `bybusyness` would send every one of them to the empty new pod) are spread
//! over the window instead.
//!
//! The share is applied as an admission draw before the method chooses (mod.rs): a
//! ramping member takes part in a pick with probability `share`, so it works the same
//! for every method, including `bybusyness`, whose "least loaded" an empty member
//! would otherwise win every time whatever its weight.

use std::time::{Duration, Instant};

/// Where the ramp starts: like Envoy's `min_weight_percent` (10 %), so a member is
/// never left with nothing while it warms up.
pub const MIN_SHARE_PERMILLE: u32 = 100;
pub const FULL_SHARE_PERMILLE: u32 = 1000;

/// The share, in per mille, a member ramping since `since` gets at `now`.
pub fn share_permille(since: Instant, now: Instant, window: Duration) -> u32 {
    let elapsed = now.saturating_duration_since(since);
    if window.is_zero() || elapsed >= window {
        return FULL_SHARE_PERMILLE;
    }
    let linear = elapsed.as_nanos() * u128::from(FULL_SHARE_PERMILLE) / window.as_nanos();
    (linear as u32).max(MIN_SHARE_PERMILLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramps_linearly_over_the_window() {
        let since = Instant::now();
        let ms = Duration::from_millis;
        for (elapsed, window, want) in [
            (ms(0), ms(30_000), 100), // the floor
            (ms(1_500), ms(30_000), 100),
            (ms(3_000), ms(30_000), 100),
            (ms(6_000), ms(30_000), 200),
            (ms(15_000), ms(30_000), 500),
            (ms(29_970), ms(30_000), 999),
            (ms(30_000), ms(30_000), 1000),
            (ms(90_000), ms(30_000), 1000),
            (ms(0), ms(0), 1000), // off
        ] {
            assert_eq!(share_permille(since, since + elapsed, window), want, "{elapsed:?} into {window:?}");
        }
        // A clock that went backwards counts as no time elapsed.
        assert_eq!(share_permille(since + ms(10), since, ms(1000)), MIN_SHARE_PERMILLE);
    }
}
