//! Cost of running the WebSocket rule set (the README's first example: two `RewriteCond`s
//! on `Upgrade`/`Connection`, one `P` rule) over one request: a plain GET, which
//! no rule applies to (the hot path: no allocation), and a WebSocket upgrade, which the
//! `P` rule proxies. A plain loop with `Instant` and `black_box`, no harness:
//! `cargo bench --bench rewrite`.

use std::borrow::Cow;
use std::hint::black_box;
use std::time::Instant;

use sidecar::rewrite::{RequestVars, RuleSource, Rules};

/// A request as the proxy presents it: headers borrowed, one line each.
struct Req {
    headers: Vec<(&'static str, &'static str)>,
}

impl RequestVars for Req {
    fn method(&self) -> &str {
        "GET"
    }
    fn path(&self) -> &str {
        "/chat/room/42"
    }
    fn query(&self) -> &str {
        "token=abc"
    }
    fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| Cow::Borrowed(*v))
    }
    fn request_line(&self) -> &str {
        "GET /chat/room/42?token=abc HTTP/1.1"
    }
    fn remote_addr(&self) -> &str {
        "10.0.0.7"
    }
    fn server_name(&self) -> &str {
        "ws.example.com"
    }
    fn server_port(&self) -> u16 {
        443
    }
    fn https(&self) -> bool {
        true
    }
}

/// Evaluations per measurement; a tenth of it warms up first.
const N: u32 = 2_000_000;

fn main() {
    let conds = vec!["%{HTTP:Upgrade} websocket [NC]".to_string(), "%{HTTP:Connection} upgrade [NC]".to_string()];
    let rule = ".* \"wss://localhost:3000%{REQUEST_URI}\" [P,L]";
    let rules = match Rules::parse(&[RuleSource { conds: &conds, rule }]) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("the WebSocket rule set does not load: {e:?}");
            std::process::exit(1);
        }
    };
    let base = [("Host", "ws.example.com"), ("User-Agent", "bench/1"), ("Accept", "*/*")];
    let plain = Req { headers: base.to_vec() };
    let mut ws = base.to_vec();
    ws.extend([("Upgrade", "websocket"), ("Connection", "keep-alive, Upgrade"), ("Sec-WebSocket-Version", "13")]);
    let upgrade = Req { headers: ws };
    println!("WebSocket rule set, {N} evaluations each:");
    for (name, req) in [("plain GET (no rule applies)", &plain), ("WebSocket upgrade (P rule applies)", &upgrade)] {
        for _ in 0..N / 10 {
            black_box(rules.evaluate(black_box(req)));
        }
        let start = Instant::now();
        for _ in 0..N {
            black_box(rules.evaluate(black_box(req)));
        }
        let ns = start.elapsed().as_nanos() as f64 / f64::from(N);
        println!("  {name:<36} {ns:>7.1} ns/eval");
    }
}
