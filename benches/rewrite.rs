//! Cost of rule evaluation per request for the SPEC §1 rule set (issue 3):
//! `cargo bench --bench rewrite`. A plain loop with `Instant`, no harness.

use std::borrow::Cow;
use std::hint::black_box;
use std::time::Instant;

use sidecar::rewrite::{RequestVars, RuleSource, Rules};

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

fn main() {
    let conds = vec!["%{HTTP:Upgrade} websocket [NC]".to_string(), "%{HTTP:Connection} upgrade [NC]".to_string()];
    let rule = ".* \"wss://localhost:3000%{REQUEST_URI}\" [P,L]";
    let rules = Rules::parse(&[RuleSource { conds: &conds, rule }]).expect("SPEC §1 rules parse");
    let plain = Req { headers: vec![("Host", "ws.example.com"), ("Accept", "*/*")] };
    let upgrade = Req {
        headers: vec![("Host", "ws.example.com"), ("Upgrade", "websocket"), ("Connection", "keep-alive, Upgrade")],
    };
    const N: u32 = 2_000_000;
    for (name, req) in [("plain GET (no rule applies)", &plain), ("WebSocket upgrade (P rule applies)", &upgrade)] {
        for _ in 0..N / 10 {
            black_box(rules.evaluate(black_box(req)));
        }
        let start = Instant::now();
        for _ in 0..N {
            black_box(rules.evaluate(black_box(req)));
        }
        let ns = start.elapsed().as_nanos() as f64 / f64::from(N);
        println!("{name}: {ns:.1} ns per evaluation ({N} evaluations)");
    }
}
