//! RewriteRule flags: `[P,L]`, `[R=301,NE]`, `[E=VAR:VAL]` … read as Apache's
//! `cmd_rewriterule_setflag` does (names case-insensitive, short or long), into one
//! `RuleFlags`. Flags that only make sense for a file server are load errors that say
//! why; unknown flags are load errors too (Apache refuses them as well).

use std::fmt;

use super::args::{FlagItem, Located};
use super::escape::BEscape;
use super::expand::Template;

/// What a matching rule does with the request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Action {
    /// Internal rewrite: route the new path by `[[proxy]]`.
    #[default]
    Rewrite,
    /// `P`: proxy to the substituted URL.
    Proxy,
    /// `R[=code]`: answer with a redirect.
    Redirect(u16),
    /// `F`: 403.
    Forbidden,
    /// `G`: 410.
    Gone,
}

/// `E=VAR:VAL` (set, value expanded when the rule applies) or `E=!VAR` (unset).
#[derive(Clone, Debug)]
pub(crate) enum EnvOp {
    /// `text` is the value as written, for `sidecar check`.
    Set {
        name: Box<str>,
        value: Template,
        text: Box<str>,
    },
    Unset(Box<str>),
}

#[derive(Clone, Debug, Default)]
pub(crate) struct RuleFlags {
    pub action: Action,
    /// `L` (and `PT`, which implies it).
    pub last: bool,
    pub end: bool,
    pub chain: bool,
    pub skip: usize,
    pub nocase: bool,
    pub qsappend: bool,
    pub qsdiscard: bool,
    pub noescape: bool,
    pub b: Option<BEscape>,
    pub env: Vec<EnvOp>,
}

impl RuleFlags {
    /// Reads every flag; all problems are returned.
    pub fn parse(items: &[FlagItem<'_>]) -> Result<Self, Vec<Located>> {
        let mut f = Self::default();
        let mut errors = Vec::new();
        let (mut b_seen, mut b) = (false, BEscape::default());
        for item in items {
            if let Err(message) = f.one(item, &mut b_seen, &mut b) {
                errors.push(Located::new(item.column, message));
            }
        }
        if b_seen {
            f.b = Some(b);
        }
        match errors.is_empty() {
            true => Ok(f),
            false => Err(errors),
        }
    }

    fn one(&mut self, item: &FlagItem<'_>, b_seen: &mut bool, b: &mut BEscape) -> Result<(), String> {
        let key = item.key.to_ascii_lowercase();
        let value = item.value;
        let no_value = |on: &mut bool| match value {
            None => {
                *on = true;
                Ok(())
            }
            Some(_) => Err(format!("flag {} takes no value", item.key)),
        };
        match key.as_str() {
            "p" | "proxy" => self.set_action(Action::Proxy, value),
            "f" | "forbidden" => self.set_action(Action::Forbidden, value),
            "g" | "gone" => self.set_action(Action::Gone, value),
            "r" | "redirect" => {
                let status = redirect_status(value.unwrap_or(""))?;
                self.set_action(Action::Redirect(status), None)
            }
            "l" | "last" | "pt" | "passthrough" => no_value(&mut self.last),
            "end" => no_value(&mut self.end),
            "c" | "chain" => no_value(&mut self.chain),
            "nc" | "nocase" => no_value(&mut self.nocase),
            "qsa" | "qsappend" => no_value(&mut self.qsappend),
            "qsd" | "qsdiscard" => no_value(&mut self.qsdiscard),
            "ne" | "noescape" => no_value(&mut self.noescape),
            // No subrequests and no PATH_INFO in server context: nothing to do.
            "ns" | "nosubreq" | "dpi" | "discardpath" | "discardpathinfo" => no_value(&mut false),
            // Control characters and spaces are always escaped (docs/security.md, CVE-2023-25690).
            "bctls" => no_value(&mut false),
            "b" | "backrefescaping" => {
                *b_seen = true;
                b.only = value.filter(|v| !v.is_empty()).map(str::to_string);
                Ok(())
            }
            "bnp" | "backrefnoplus" => no_value(&mut b.no_plus),
            "bne" => match value {
                Some(v) if !v.is_empty() => {
                    b.except = Some(v.to_string());
                    Ok(())
                }
                _ => Err("BNE needs the characters B must not escape, e.g. BNE=/".into()),
            },
            "s" | "skip" => match value.map(str::parse::<usize>) {
                Some(Ok(n)) => {
                    self.skip = n;
                    Ok(())
                }
                _ => Err(format!("flag {} needs a number of rules to skip, e.g. S=2", item.key)),
            },
            "e" | "env" => {
                let op = env_op(value.unwrap_or(""), item.column + item.key.chars().count() + 1)?;
                self.env.push(op);
                Ok(())
            }
            "n" | "next" => Err("N (next round) is not supported: sidecar runs the rules once per request".into()),
            "t" | "type" | "h" | "handler" => Err(format!("{} sets a MIME type or handler; sidecar serves no files", item.key)),
            "co" | "cookie" => Err("CO (cookie) is not supported: sidecar sets no cookies".into()),
            "qsl" | "qslast" => Err("QSL is not supported: a literal ? cannot travel in a path".into()),
            "unsafeallow3f" => Err("UnsafeAllow3F is not supported: an encoded ? never becomes a query separator (CVE-2024-38474)".into()),
            "unsafeprefixstat" => Err("UnsafePrefixStat is not supported: sidecar never maps URLs to files".into()),
            _ => Err(format!(
                "unknown flag {:?} (expected one of P, L, END, F, G, R[=code], QSA, QSD, NE, B, BNP, BNE, NC, C, S=N, E=VAR:VAL, PT, NS)",
                item.key
            )),
        }
    }

    fn set_action(&mut self, action: Action, value: Option<&str>) -> Result<(), String> {
        if value.is_some() {
            return Err(format!("flag {} takes no value", ActionName(action)));
        }
        match self.action {
            Action::Rewrite => {
                self.action = action;
                Ok(())
            }
            prev if prev == action => Ok(()),
            prev => {
                Err(format!("flags {} and {} both decide what happens: keep one", ActionName(prev), ActionName(action)))
            }
        }
    }
}

/// `R`, `R=301`, `R=permanent` … → a 3xx status (Apache's default is 302).
fn redirect_status(value: &str) -> Result<u16, String> {
    match value.to_ascii_lowercase().as_str() {
        "" | "temp" => Ok(302),
        "permanent" => Ok(301),
        "seeother" => Ok(303),
        v => match v.parse::<u16>() {
            Ok(code @ 300..=399) => Ok(code),
            _ => Err(format!("R={value} is not a redirect: expected a 3xx status, permanent, temp or seeother (use F for 403, G for 410)")),
        },
    }
}

/// `VAR:VAL`, `VAR` (empty value) or `!VAR`. `column` is where the value starts.
fn env_op(value: &str, column: usize) -> Result<EnvOp, String> {
    if let Some(name) = value.strip_prefix('!') {
        return match name.is_empty() {
            true => Err("E=! needs a variable name".into()),
            false => Ok(EnvOp::Unset(name.into())),
        };
    }
    let (name, val, val_at) = match value.split_once(':') {
        Some((n, v)) => (n, v, column + n.chars().count() + 1),
        None => (value, "", column),
    };
    if name.is_empty() || name.contains(['%', '$', '{', '}']) {
        return Err(format!("E needs a literal variable name: E=NAME:value (found {value:?})"));
    }
    let template = Template::parse(val, val_at).map_err(|e| e.message)?;
    Ok(EnvOp::Set { name: name.into(), value: template, text: val.into() })
}

/// The long name of an action, for messages and `sidecar check`.
pub(crate) struct ActionName(pub Action);

impl fmt::Display for ActionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Action::Rewrite => f.write_str("rewrite"),
            Action::Proxy => f.write_str("P"),
            Action::Redirect(code) => write!(f, "R={code}"),
            Action::Forbidden => f.write_str("F"),
            Action::Gone => f.write_str("G"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewrite::args::{split_flags, Arg};

    fn parse(flags: &str) -> Result<RuleFlags, Vec<Located>> {
        RuleFlags::parse(&split_flags(Arg { text: flags, column: 1 }).map_err(|e| vec![e])?)
    }

    #[test]
    fn reads_short_and_long_names_in_any_case() {
        for (flags, check) in [
            ("[P,L]", (|f: &RuleFlags| f.action == Action::Proxy && f.last) as fn(&RuleFlags) -> bool),
            ("[proxy,last]", |f| f.action == Action::Proxy && f.last),
            ("[p,l]", |f| f.action == Action::Proxy && f.last),
            ("[END]", |f| f.end && !f.last),
            ("[F]", |f| f.action == Action::Forbidden),
            ("[forbidden]", |f| f.action == Action::Forbidden),
            ("[G]", |f| f.action == Action::Gone),
            ("[gone]", |f| f.action == Action::Gone),
            ("[R]", |f| f.action == Action::Redirect(302)),
            ("[R=301]", |f| f.action == Action::Redirect(301)),
            ("[redirect=permanent]", |f| f.action == Action::Redirect(301)),
            ("[R=seeother]", |f| f.action == Action::Redirect(303)),
            ("[R=308]", |f| f.action == Action::Redirect(308)),
            ("[QSA]", |f| f.qsappend),
            ("[qsappend]", |f| f.qsappend),
            ("[QSD]", |f| f.qsdiscard),
            ("[qsdiscard]", |f| f.qsdiscard),
            ("[NE]", |f| f.noescape),
            ("[noescape]", |f| f.noescape),
            ("[B]", |f| f.b == Some(BEscape::default())),
            ("[B=&?,BNP]", |f| f.b == Some(BEscape { only: Some("&?".into()), except: None, no_plus: true })),
            ("[B,BNE=/]", |f| f.b.as_ref().and_then(|b| b.except.as_deref()) == Some("/")),
            ("[BNP]", |f| f.b.is_none()), // BNP alone changes nothing, as in Apache
            ("[NC]", |f| f.nocase),
            ("[nocase]", |f| f.nocase),
            ("[C]", |f| f.chain),
            ("[chain]", |f| f.chain),
            ("[S=2]", |f| f.skip == 2),
            ("[skip=3]", |f| f.skip == 3),
            (
                "[E=X:1,env=!Y]",
                |f| matches!(f.env.as_slice(), [EnvOp::Set { name: x, .. }, EnvOp::Unset(y)] if &**x == "X" && &**y == "Y"),
            ),
            ("[PT]", |f| f.last),
            ("[NS,DPI,BCTLS]", |f| f.action == Action::Rewrite),
            ("[]", |f| f.action == Action::Rewrite && !f.last),
        ] {
            let got = parse(flags).unwrap_or_else(|e| panic!("{flags}: {e:?}"));
            assert!(check(&got), "flags {flags}: {got:?}");
        }
    }

    #[test]
    fn rejects_bad_flags_with_columns() {
        for (flags, column, needle) in [
            ("[P,X]", 4, "unknown flag \"X\""),
            ("[R=404]", 2, "not a redirect"),
            ("[R=abc]", 2, "not a redirect"),
            ("[P,R]", 4, "flags P and R=302 both decide"),
            ("[F,G]", 4, "flags F and G both decide"),
            ("[L=1]", 2, "takes no value"),
            ("[P=x]", 2, "takes no value"),
            ("[S]", 2, "number of rules to skip"),
            ("[S=-1]", 2, "number of rules to skip"),
            ("[E=:x]", 2, "literal variable name"),
            ("[E=X:%{NOPE}]", 2, "unknown variable"),
            ("[N]", 2, "next round"),
            ("[T=text/html]", 2, "MIME type"),
            ("[CO=a:b:c]", 2, "cookie"),
            ("[QSL]", 2, "QSL"),
            ("[UnsafeAllow3F]", 2, "CVE-2024-38474"),
            ("[BNE]", 2, "BNE needs"),
        ] {
            let errors = parse(flags).expect_err(flags);
            assert_eq!(errors[0].column, column, "flags {flags}: {errors:?}");
            assert!(errors[0].message.contains(needle), "flags {flags}: {errors:?}");
        }
    }
}
