//! PURE. How one replica is chosen among those health and status allow: Apache's
//! `byrequests`, `bybusyness` and `bytraffic`, plus the per-replica counters they read
//! (`Load`). `byhash` is named here but chooses in hash.rs; its requests without a key
//! come here under its fallback method. Which replicas are allowed is decided in mod.rs; this file never sees a
//! clock or a health state. No allocation: `choose` walks the replicas in place.

use std::cmp::Ordering;
use std::fmt;

/// A selection method (`method = "..."` in `[balancer.NAME]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(clippy::enum_variant_names)] // Apache's lbmethod names: byrequests, bybusyness, bytraffic
pub enum Method {
    /// Smooth weighted round robin, as nginx does it: shares follow the weights
    /// exactly and a heavy replica's turns are spread out (5,1,1 → a a b a c a a),
    /// not bunched. Counts requests, not how long they last.
    ByRequests,
    /// Fewest requests in flight plus open tunnels, relative to weight; ties go to a
    /// weighted random pick, so an idle cluster still gets weighted shares.
    ByBusyness,
    /// Fewest bytes transferred, relative to weight. Bytes count when work finishes,
    /// so an open tunnel weighs nothing until it closes.
    ByTraffic,
    /// A key taken from the request (`hash = "..."`) names the member, by weighted
    /// rendezvous hashing (hash.rs); requests without the key use `hash_fallback`.
    /// Not an Apache method: mod_proxy_balancer has no hashing.
    ByHash,
}

impl Method {
    /// The method recommended when config names none: `bybusyness`.
    ///
    /// For WebSocket-heavy apps it is the only one that keeps open tunnels even.
    /// Round robin counts handshakes, not the hours a tunnel stays open: after a
    /// replica restarts, its clients reconnect and are dealt round-robin across all
    /// replicas, so the restarted one stays nearly empty for as long as the other
    /// tunnels last. `bytraffic` learns of a tunnel's bytes only when it closes.
    /// `bybusyness` sends new work to the replica with the fewest requests and tunnels
    /// per unit of weight, so it refills the emptied replica first; for plain HTTP it is
    /// least-connections, which also steers around a replica that has turned slow.
    pub fn default_for_config() -> Self {
        Self::ByBusyness
    }

    /// The config words, as Apache's `lbmethod` spells them.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "byrequests" => Some(Self::ByRequests),
            "bybusyness" => Some(Self::ByBusyness),
            "bytraffic" => Some(Self::ByTraffic),
            "byhash" => Some(Self::ByHash),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ByRequests => "byrequests",
            Self::ByBusyness => "bybusyness",
            Self::ByTraffic => "bytraffic",
            Self::ByHash => "byhash",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the methods count for one replica.
#[derive(Clone, Debug, Default)]
pub(super) struct Load {
    /// At least 1.
    pub weight: u32,
    pub requests: u32,
    pub tunnels: u32,
    /// Bytes of finished work, both directions.
    pub bytes: u64,
    /// Times `pick` chose it, for `/status`.
    pub picks: u64,
    /// Smooth weighted round robin credit (nginx `current_weight`).
    current: i64,
}

impl Load {
    pub fn new(weight: u32) -> Self {
        Self { weight: weight.max(1), ..Self::default() }
    }

    fn busyness(&self) -> u64 {
        u64::from(self.requests) + u64::from(self.tunnels)
    }
}

/// The chosen method and the randomness it breaks ties with.
#[derive(Clone, Debug)]
pub(super) struct Selector {
    method: Method,
    rng: Rng,
}

impl Selector {
    pub fn new(method: Method, seed: u64) -> Self {
        Self { method, rng: Rng::new(seed) }
    }

    /// True with probability `permille` / 1000 (a slow-start draw).
    pub fn chance_permille(&mut self, permille: u32) -> bool {
        self.rng.below(1000) < u64::from(permille)
    }

    /// Picks one index among those `eligible` allows; `None` when it allows none.
    pub fn choose(&mut self, loads: &mut [Load], eligible: impl Fn(usize) -> bool) -> Option<usize> {
        match self.method {
            Method::ByRequests => smooth_round_robin(loads, eligible),
            // A `byhash` balancer builds its selector with its fallback; were `ByHash`
            // to come here, the default method is the sensible answer.
            Method::ByBusyness | Method::ByHash => self.least(loads, eligible, Load::busyness),
            Method::ByTraffic => self.least(loads, eligible, |l| l.bytes),
        }
    }

    /// The eligible replica with the smallest `amount / weight`. Ties are broken by
    /// weighted reservoir sampling: each tied replica wins with probability
    /// weight / (total weight of the ties so far), so among equals shares follow weights.
    fn least(&mut self, loads: &[Load], eligible: impl Fn(usize) -> bool, amount: fn(&Load) -> u64) -> Option<usize> {
        let mut best: Option<usize> = None;
        let mut tied_weight = 0u64;
        for (i, load) in loads.iter().enumerate().filter(|(i, _)| eligible(*i)) {
            let order = match best {
                None => Ordering::Less,
                Some(b) => per_weight_cmp(amount(load), load.weight, amount(&loads[b]), loads[b].weight),
            };
            match order {
                Ordering::Less => {
                    best = Some(i);
                    tied_weight = u64::from(load.weight);
                }
                Ordering::Equal => {
                    tied_weight += u64::from(load.weight);
                    if self.rng.below(tied_weight) < u64::from(load.weight) {
                        best = Some(i);
                    }
                }
                Ordering::Greater => {}
            }
        }
        best
    }
}

/// A replica comes back into service after an ejection: its round robin credit
/// restarts at zero, and for `bytraffic` its byte count is raised to the lowest
/// per-weight count among `peers`, or it would take all the traffic until it
/// caught up with bytes the others moved while it was out.
pub(super) fn rejoin(loads: &mut [Load], replica: usize, peers: impl Fn(usize) -> bool) {
    let floor = loads
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != replica && peers(*j))
        .map(|(_, l)| l.bytes / u64::from(l.weight))
        .min();
    if let Some(load) = loads.get_mut(replica) {
        load.current = 0;
        if let Some(per_weight) = floor {
            load.bytes = load.bytes.max(per_weight.saturating_mul(u64::from(load.weight)));
        }
    }
}

/// nginx's smooth weighted round robin: every eligible replica earns its weight, the
/// richest is chosen and pays the total. The first of equals wins, as in nginx.
fn smooth_round_robin(loads: &mut [Load], eligible: impl Fn(usize) -> bool) -> Option<usize> {
    let mut best: Option<usize> = None;
    let mut total = 0i64;
    for i in 0..loads.len() {
        if !eligible(i) {
            continue;
        }
        let weight = i64::from(loads[i].weight);
        loads[i].current += weight;
        total += weight;
        if best.is_none_or(|b| loads[i].current > loads[b].current) {
            best = Some(i);
        }
    }
    if let Some(b) = best {
        loads[b].current -= total;
    }
    best
}

/// Compares `a / wa` with `b / wb` exactly, without division.
fn per_weight_cmp(a: u64, wa: u32, b: u64, wb: u32) -> Ordering {
    (u128::from(a) * u128::from(wb)).cmp(&(u128::from(b) * u128::from(wa)))
}

/// xorshift64*: tie breaks need speed and a seed for tests, not quality or secrecy.
#[derive(Clone, Debug)]
pub(super) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        // splitmix64 once, so seeds 1, 2, 3 (one per worker) start far apart; xorshift
        // never leaves the all-zero state, so that one is replaced.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Self(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z })
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (0 when `n` is 0); the bias of the multiply-shift is < n / 2^64.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loads(weights: &[u32]) -> Vec<Load> {
        weights.iter().map(|&w| Load::new(w)).collect()
    }

    fn sequence(method: Method, weights: &[u32], picks: usize) -> String {
        let mut selector = Selector::new(method, 7);
        let mut loads = loads(weights);
        (0..picks).map(|_| selector.choose(&mut loads, |_| true).map_or('-', |i| (b'a' + i as u8) as char)).collect()
    }

    #[test]
    fn byrequests_follows_nginx_smooth_sequence() {
        for (weights, want) in [
            (&[5, 1, 1][..], "aabacaa"), // nginx's own example
            (&[1, 1, 1][..], "abcabc"),
            (&[2, 1][..], "abaaba"),
            (&[3, 2][..], "ababa"),
            (&[0, 1][..], "abab"), // weight 0 counts as 1
        ] {
            assert_eq!(sequence(Method::ByRequests, weights, want.len()), want, "weights {weights:?}");
        }
    }

    #[test]
    fn methods_give_weighted_shares() {
        // ByBusyness with nothing in flight is all ties, so shares come from the
        // weighted random tie break; ByRequests is exact.
        for (method, weights, rounds, tolerance) in [
            (Method::ByRequests, &[5, 1, 1][..], 100, 0),
            (Method::ByRequests, &[2, 3, 5][..], 100, 0),
            (Method::ByBusyness, &[1, 1][..], 2000, 150),
            (Method::ByBusyness, &[3, 1][..], 2000, 150),
            (Method::ByTraffic, &[1, 4][..], 2000, 200),
        ] {
            let total: u32 = weights.iter().sum();
            let picks = sequence(method, weights, (total * rounds) as usize);
            for (i, w) in weights.iter().enumerate() {
                let got = picks.bytes().filter(|&c| c == b'a' + i as u8).count() as i64;
                let want = i64::from(w * rounds);
                assert!((got - want).abs() <= tolerance, "{method} {weights:?}: replica {i} got {got}, want {want}");
            }
        }
    }

    #[test]
    fn least_loaded_wins_relative_to_weight() {
        for (method, weights, counts, want) in [
            // (requests + tunnels) or bytes for each replica
            (Method::ByBusyness, &[1, 1, 1][..], &[3, 1, 2][..], 1),
            (Method::ByBusyness, &[1, 3][..], &[1, 2][..], 1), // 2/3 < 1/1
            (Method::ByBusyness, &[1, 3][..], &[1, 4][..], 0), // 1/1 < 4/3
            (Method::ByTraffic, &[1, 1][..], &[900, 100][..], 1),
            (Method::ByTraffic, &[10, 1][..], &[900, 100][..], 0), // 90 per weight < 100
        ] {
            let mut l = loads(weights);
            for (load, &n) in l.iter_mut().zip(counts) {
                match method {
                    Method::ByTraffic => load.bytes = n,
                    _ => load.tunnels = n as u32,
                }
            }
            let got = Selector::new(method, 1).choose(&mut l, |_| true);
            assert_eq!(got, Some(want), "{method} weights {weights:?} counts {counts:?}");
        }
    }

    #[test]
    fn bybusyness_fills_in_proportion_to_weight() {
        // 400 long requests that never finish land exactly 3:1.
        let mut selector = Selector::new(Method::ByBusyness, 3);
        let mut l = loads(&[3, 1]);
        for _ in 0..400 {
            let i = selector.choose(&mut l, |_| true).expect("a replica");
            l[i].requests += 1;
        }
        assert_eq!((l[0].requests, l[1].requests), (300, 100));
    }

    #[test]
    fn only_eligible_replicas_are_chosen() {
        for method in [Method::ByRequests, Method::ByBusyness, Method::ByTraffic] {
            let mut selector = Selector::new(method, 9);
            let mut l = loads(&[5, 1, 1]);
            for _ in 0..50 {
                assert_eq!(selector.choose(&mut l, |i| i == 2), Some(2), "{method}");
            }
            assert_eq!(selector.choose(&mut l, |_| false), None, "{method}");
        }
    }

    #[test]
    fn rejoining_replica_catches_up_on_traffic() {
        let mut l = loads(&[1, 2, 1]);
        l[0].bytes = 10;
        l[1].bytes = 5000; // 2500 per weight
        l[2].bytes = 4000;
        rejoin(&mut l, 0, |_| true);
        assert_eq!(l[0].bytes, 2500);
        l[2].bytes = 100;
        rejoin(&mut l, 2, |j| j != 0); // only replica 1 is a peer
        assert_eq!(l[2].bytes, 2500);
    }

    #[test]
    fn method_words_round_trip() {
        for m in [Method::ByRequests, Method::ByBusyness, Method::ByTraffic, Method::ByHash] {
            assert_eq!(Method::parse(m.as_str()), Some(m));
        }
        assert_eq!(Method::parse("heartbeat"), None);
        assert_eq!(Method::default_for_config(), Method::ByBusyness);
    }
}
