//! One `[[rewrite]]` entry compiled: the RewriteRule (pattern, substitution, flags) and
//! its RewriteConds, plus what evaluation needs to know up front (which back-references
//! are used, so captures are only computed when something reads them). Evaluation is
//! `eval.rs`; this file only builds and checks.

use regex::Regex;

use super::args::{split_args, split_flags, Located};
use super::cond::{compile_regex, Cond};
use super::expand::{Piece, Template};
use super::flags::{Action, EnvOp, RuleFlags};

#[derive(Clone, Debug)]
pub(crate) struct Rule {
    pub conds: Vec<Cond>,
    pub pattern: Regex,
    /// `!pattern`: the rule applies when the pattern does *not* match (no `$N` then).
    pub negate: bool,
    /// The pattern matches every path (`.*`, `^`, …): no regex run is needed to know.
    pub always: bool,
    /// Pattern and substitution as written (after quote removal), for `sidecar check`.
    pub pattern_src: Box<str>,
    pub substitution_src: Box<str>,
    /// `None` for `-` (no substitution).
    pub substitution: Option<Template>,
    pub flags: RuleFlags,
    /// Conditions read `$N`: rule captures are needed before the conditions run.
    pub conds_use_rule_refs: bool,
    /// The substitution or `E=` values read `$N`.
    pub uses_rule_refs: bool,
    /// Something reads `%N`: condition captures must be kept.
    pub uses_cond_refs: bool,
}

/// The pattern, substitution and flags of a `rule` string, before conditions are added.
pub(crate) struct RuleHead {
    pattern: Regex,
    negate: bool,
    pattern_src: Box<str>,
    substitution_src: Box<str>,
    substitution: Option<Template>,
    flags: RuleFlags,
}

impl RuleHead {
    /// Parses a `rule` string; every problem found is returned, ordered by column.
    pub fn parse(src: &str) -> Result<Self, Vec<Located>> {
        let args = split_args(src, "Pattern Substitution [flags]").map_err(|e| vec![e])?;
        let mut errors = Vec::new();
        // Flags first: NC changes how the pattern compiles (as in Apache).
        let flags = match args.flags.map(split_flags).transpose() {
            Err(e) => Err(vec![e]),
            Ok(items) => RuleFlags::parse(&items.unwrap_or_default()),
        };
        let flags = flags.map_err(|e| errors.extend(e)).ok();
        let nocase = flags.as_ref().is_some_and(|f| f.nocase);
        let negate = args.first.text.starts_with('!');
        let pattern_text = &args.first.text[usize::from(negate)..];
        let pattern = compile_regex(pattern_text, nocase, args.first.column + usize::from(negate))
            .map_err(|e| errors.push(e))
            .ok();
        let substitution = match args.second.text {
            "-" => Some(None),
            s => Template::parse(s, args.second.column).map(Some).map_err(|e| errors.push(e)).ok(),
        };
        if let (Some(f), Some(sub)) = (&flags, &substitution) {
            if let Err(e) = check_proxy_target(f, sub.as_ref(), args.second.text, args.second.column) {
                errors.push(e);
            }
        }
        match (pattern, substitution, flags) {
            (Some(pattern), Some(substitution), Some(flags)) if errors.is_empty() => Ok(Self {
                pattern,
                negate,
                pattern_src: args.first.text.into(),
                substitution_src: args.second.text.into(),
                substitution,
                flags,
            }),
            _ => {
                errors.sort_by_key(|e| e.column);
                Err(errors)
            }
        }
    }

    pub fn with_conds(self, conds: Vec<Cond>) -> Rule {
        let env_templates = self.flags.env.iter().filter_map(|op| match op {
            EnvOp::Set { value, .. } => Some(value),
            EnvOp::Unset(_) => None,
        });
        let (mut uses_rule_refs, mut uses_cond_refs) = (false, false);
        for t in self.substitution.iter().chain(env_templates) {
            let (r, c) = t.uses_refs();
            uses_rule_refs |= r;
            uses_cond_refs |= c;
        }
        let mut conds_use_rule_refs = false;
        for c in &conds {
            for t in cond_templates(c) {
                let (r, cr) = t.uses_refs();
                conds_use_rule_refs |= r;
                uses_cond_refs |= cr;
            }
        }
        // Patterns that match any subject (`.` matches newlines too, see compile_regex).
        let always = ["", "^", ".*", "^.*", "^.*$", "(.*)", "^(.*)", "^(.*)$"]
            .contains(&&self.pattern_src[usize::from(self.negate)..]);
        Rule {
            conds,
            pattern: self.pattern,
            negate: self.negate,
            always,
            pattern_src: self.pattern_src,
            substitution_src: self.substitution_src,
            substitution: self.substitution,
            flags: self.flags,
            conds_use_rule_refs,
            uses_rule_refs,
            uses_cond_refs,
        }
    }
}

/// The templates a condition expands (its test string, or an `expr`'s operands).
pub(crate) fn cond_templates(c: &Cond) -> Vec<&Template> {
    match &c.test {
        super::cond::Test::Expr { left, right, .. } => vec![left, right],
        _ => vec![&c.test_string],
    }
}

/// A `P` substitution must be able to become an absolute URL: `-` or a path would make
/// Apache proxy to itself, which sidecar does not do.
fn check_proxy_target(flags: &RuleFlags, sub: Option<&Template>, text: &str, column: usize) -> Result<(), Located> {
    if flags.action != Action::Proxy {
        return Ok(());
    }
    let starts_with_path = match sub.and_then(|t| t.pieces.first()) {
        None => true,
        Some(Piece::Lit(l)) => l.starts_with('/'),
        Some(_) => false,
    };
    match starts_with_path {
        true => Err(Located::new(
            column,
            format!("P needs an absolute URL to proxy to, found {text:?} (expected http://, https://, ws://, wss:// or balancer://NAME/…)"),
        )),
        false => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rules() {
        for (rule, pattern, negate, substitution) in [
            (
                ".* \"wss://localhost:3000%{REQUEST_URI}\" [P,L]",
                ".*",
                false,
                Some("wss://localhost:3000%{REQUEST_URI}"),
            ),
            ("!^/api /other", "!^/api", true, Some("/other")),
            ("^/old - [F]", "^/old", false, None),
            ("'^/a b' /c", "^/a b", false, Some("/c")),
        ] {
            let head = RuleHead::parse(rule).unwrap_or_else(|e| panic!("{rule:?}: {e:?}"));
            assert_eq!(&*head.pattern_src, pattern, "rule {rule:?}");
            assert_eq!(head.negate, negate, "rule {rule:?}");
            assert_eq!(head.substitution.is_some(), substitution.is_some(), "rule {rule:?}");
            if let Some(s) = substitution {
                assert_eq!(&*head.substitution_src, s, "rule {rule:?}");
            }
        }
    }

    #[test]
    fn nc_makes_the_pattern_case_insensitive() {
        let head = RuleHead::parse("^/API /x [NC]").expect("rule");
        assert!(head.pattern.is_match("/api/v1"));
        let head = RuleHead::parse("^/API /x").expect("rule");
        assert!(!head.pattern.is_match("/api/v1"));
    }

    #[test]
    fn reports_every_error_with_its_column() {
        for (rule, want) in [
            ("(x /y", vec![(1, "unclosed group")]),
            ("!(x /y", vec![(2, "unclosed group")]),
            ("(x /%{NOPE} [L,ZZ]", vec![(1, "unclosed group"), (5, "unknown variable"), (16, "unknown flag")]),
            (".* /x [P]", vec![(4, "P needs an absolute URL")]),
            (".* - [P]", vec![(4, "P needs an absolute URL")]),
            (".*", vec![(3, "expected Pattern Substitution [flags]")]),
            (".* /x [R=200]", vec![(8, "not a redirect")]),
        ] {
            let errors = RuleHead::parse(rule).err().unwrap_or_default();
            let got: Vec<(usize, bool)> = errors.iter().map(|e| (e.column, true)).collect();
            assert_eq!(got.len(), want.len(), "rule {rule:?}: {errors:?}");
            for (e, (column, needle)) in errors.iter().zip(want) {
                assert_eq!(e.column, column, "rule {rule:?}: {errors:?}");
                assert!(e.message.contains(needle), "rule {rule:?}: {errors:?}");
            }
        }
    }

    #[test]
    fn records_which_back_references_are_used() {
        for (rule, conds, want) in [
            (".* /x", vec![], (false, false, false)),
            ("^/(.*) /x/$1", vec![], (false, true, false)),
            ("^/(.*) /x [E=A:%1]", vec!["%{HTTP_HOST} (.*)"], (false, false, true)),
            ("^/(.*) /x", vec!["$1 ^a"], (true, false, false)),
            ("^/(.*) /x", vec!["expr \"'$1' == 'a'\""], (true, false, false)),
        ] {
            let conds = conds.iter().map(|c| Cond::parse(c).unwrap_or_else(|e| panic!("{c:?}: {e:?}"))).collect();
            let r = RuleHead::parse(rule).unwrap_or_else(|e| panic!("{rule:?}: {e:?}")).with_conds(conds);
            assert_eq!((r.conds_use_rule_refs, r.uses_rule_refs, r.uses_cond_refs), want, "rule {rule:?}");
        }
    }
}
