//! What `sidecar check` prints for the rules (on stdout): one block per `[[rewrite]]`
//! entry, in evaluation order (the path pattern first, then the conditions, as Apache
//! runs them), with every flag spelled out and what the rule does in words.

use std::fmt;

use super::cond::{Cmp, Cond, ExprOp, Test};
use super::flags::{Action, EnvOp, RuleFlags};
use super::rule::Rule;
use super::Rules;

impl fmt::Display for Rules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, rule) in self.rules.iter().enumerate() {
            write!(f, "rewrite[{i}]\n{}", RuleText(rule))?;
        }
        Ok(())
    }
}

struct RuleText<'a>(&'a Rule);

impl fmt::Display for RuleText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        let (verb, pattern) = match r.negate {
            true => ("does not match", &r.pattern_src[1..]),
            false => ("matches", &*r.pattern_src),
        };
        let nc = if r.flags.nocase { " (ignoring case)" } else { "" };
        writeln!(f, "  when the path {verb} {pattern}{nc}")?;
        let mut joiner = "and";
        for c in &r.conds {
            writeln!(f, "  {joiner} {}", CondText(c))?;
            joiner = if c.or_next { "or" } else { "and" };
        }
        writeln!(f, "  then {}", action(r))?;
        writeln!(f, "  flags {}", FlagList(&r.flags))
    }
}

fn action(r: &Rule) -> String {
    let sub = &r.substitution_src;
    let mut s = match (r.flags.action, &r.substitution) {
        (Action::Forbidden, _) => return "answer 403 Forbidden".into(),
        (Action::Gone, _) => return "answer 410 Gone".into(),
        (Action::Redirect(_), None) => "do nothing (Apache ignores R with -)".to_string(),
        (_, None) => "leave the URL as it is".to_string(),
        (Action::Rewrite, Some(_)) => format!("rewrite the URL to {sub} and route it by [[proxy]]"),
        (Action::Proxy, Some(_)) => format!("proxy to {sub}"),
        (Action::Redirect(code), Some(_)) => format!("redirect with {code} to {sub}"),
    };
    if r.substitution.is_some() {
        let has_query = sub.replace("\\?", "").contains('?');
        s.push_str(match (r.flags.qsdiscard, r.flags.qsappend, has_query) {
            (true, true, true) => ", using only its own query string",
            (true, _, _) => ", dropping the query string",
            (false, true, true) => ", appending the request's query string",
            (false, _, true) => ", replacing the query string",
            (false, _, false) => ", keeping the query string",
        });
    }
    for op in &r.flags.env {
        match op {
            EnvOp::Set { name, text, .. } => s.push_str(&format!(", set ENV:{name} to {text}")),
            EnvOp::Unset(name) => s.push_str(&format!(", unset ENV:{name}")),
        }
    }
    let stops = r.flags.last || r.flags.end || matches!(r.flags.action, Action::Proxy | Action::Redirect(_));
    if stops {
        s.push_str("; then stop");
    } else if r.flags.skip > 0 {
        s.push_str(&format!("; then skip the next {} rule(s)", r.flags.skip));
    }
    if r.flags.chain {
        s.push_str("; if it does not apply, skip the rules chained to it");
    }
    s
}

struct CondText<'a>(&'a Cond);

impl fmt::Display for CondText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.0;
        let not = if c.negate { "not " } else { "" };
        let nc = if c.nocase { " (ignoring case)" } else { "" };
        let operand = c.pattern_src.trim_start_matches('!');
        match &c.test {
            Test::Regex(_) => write!(
                f,
                "{} {}{} {operand}{nc}",
                c.test_src,
                if c.negate { "does " } else { "" },
                if c.negate { "not match" } else { "matches" }
            ),
            Test::Str(Cmp::Eq, s) if s.is_empty() => write!(f, "{} is {not}empty", c.test_src),
            Test::Str(cmp, s) => write!(f, "{} is {not}{} {s:?}{nc}", c.test_src, cmp_text(*cmp, false)),
            Test::Int(cmp, n) => write!(f, "{} is {not}{} {n} (as a number)", c.test_src, cmp_text(*cmp, true)),
            Test::Expr { op, .. } => {
                let op = match op {
                    ExprOp::StrMatch => "wildcard",
                    ExprOp::StrCMatch => "wildcard ignoring case",
                    ExprOp::FnMatch => "path wildcard",
                    ExprOp::Equal | ExprOp::NotEqual => "comparison",
                };
                write!(f, "expression {operand} is {}({op})", if c.negate { "false " } else { "true " })
            }
        }
    }
}

fn cmp_text(cmp: Cmp, number: bool) -> &'static str {
    match (cmp, number) {
        (Cmp::Eq, _) => "equal to",
        (Cmp::Lt, true) => "less than",
        (Cmp::Le, true) => "at most",
        (Cmp::Gt, true) => "greater than",
        (Cmp::Ge, true) => "at least",
        // Apache's string order: shorter first, then byte by byte.
        (Cmp::Lt, false) => "before",
        (Cmp::Le, false) => "before or equal to",
        (Cmp::Gt, false) => "after",
        (Cmp::Ge, false) => "after or equal to",
    }
}

/// Every flag set, by its long name.
struct FlagList<'a>(&'a RuleFlags);

impl fmt::Display for FlagList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fl = self.0;
        let mut names: Vec<String> = Vec::new();
        match fl.action {
            Action::Rewrite => {}
            Action::Proxy => names.push("proxy".into()),
            Action::Redirect(code) => names.push(format!("redirect={code}")),
            Action::Forbidden => names.push("forbidden".into()),
            Action::Gone => names.push("gone".into()),
        }
        let bools = [
            (fl.last, "last"),
            (fl.end, "end"),
            (fl.chain, "chain"),
            (fl.nocase, "nocase"),
            (fl.qsappend, "qsappend"),
            (fl.qsdiscard, "qsdiscard"),
            (fl.noescape, "noescape"),
        ];
        names.extend(bools.iter().filter(|(on, _)| *on).map(|(_, n)| n.to_string()));
        if fl.skip > 0 {
            names.push(format!("skip={}", fl.skip));
        }
        if let Some(b) = &fl.b {
            names.push(match &b.only {
                Some(list) => format!("backrefescaping={list}"),
                None => "backrefescaping".into(),
            });
            if b.no_plus {
                names.push("backrefnoplus".into());
            }
            if let Some(e) = &b.except {
                names.push(format!("bne={e}"));
            }
        }
        for op in &fl.env {
            names.push(match op {
                EnvOp::Set { name, text, .. } => format!("env={name}:{text}"),
                EnvOp::Unset(name) => format!("env=!{name}"),
            });
        }
        match names.is_empty() {
            true => f.write_str("(none)"),
            false => write!(f, "[{}]", names.join(",")),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::rewrite::{RuleSource, Rules};

    #[test]
    fn describes_the_websocket_rule_set() {
        let conds = vec!["%{HTTP:Upgrade} websocket [NC]".to_string(), "%{HTTP:Connection} upgrade [NC]".to_string()];
        let more = vec!["%{REQUEST_METHOD} =POST [OR]".to_string(), "%{SERVER_PORT} !-eq443".to_string()];
        let sources = [
            RuleSource { conds: &conds, rule: ".* \"wss://localhost:3000%{REQUEST_URI}\" [P,L]" },
            RuleSource { conds: &more, rule: "!^/static/ /app/index?x=1 [QSA,NC,E=SEEN:1,S=1]" },
            RuleSource { conds: &[], rule: "^/old - [F]" },
        ];
        let rules = Rules::parse(&sources).expect("rules load");
        let text = rules.to_string();
        let want = "\
rewrite[0]
  when the path matches .*
  and %{HTTP:Upgrade} matches websocket (ignoring case)
  and %{HTTP:Connection} matches upgrade (ignoring case)
  then proxy to wss://localhost:3000%{REQUEST_URI}, keeping the query string; then stop
  flags [proxy,last]
rewrite[1]
  when the path does not match ^/static/ (ignoring case)
  and %{REQUEST_METHOD} is equal to \"POST\"
  or %{SERVER_PORT} is not equal to 443 (as a number)
  then rewrite the URL to /app/index?x=1 and route it by [[proxy]], appending the request's query string, set ENV:SEEN to 1; then skip the next 1 rule(s)
  flags [nocase,qsappend,skip=1,env=SEEN:1]
rewrite[2]
  when the path matches ^/old
  then answer 403 Forbidden
  flags [forbidden]
";
        assert_eq!(text, want, "got:\n{text}");
    }
}
