//! PURE. Apache RewriteCond / RewriteRule argument strings → tokens with columns,
//! flags, and templates (`%{VAR}`, `$N`, `%N`). Everything that can be wrong with a
//! rule is found here, at load, with the column where it starts.

use std::fmt;

/// A token and the 1-based column where it starts in its string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub text: String,
    pub column: usize,
}

/// Splits arguments as Apache does: whitespace separates, `"…"` groups, `\` escapes
/// the next character.
pub fn tokenize(s: &str) -> Result<Vec<Token>, (usize, String)> {
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].1.is_whitespace() {
            i += 1;
            continue;
        }
        let column = s[..chars[i].0].chars().count() + 1;
        let mut text = String::new();
        let quote = matches!(chars[i].1, '"' | '\'').then_some(chars[i].1);
        if quote.is_some() {
            i += 1;
        }
        let mut closed = quote.is_none();
        while i < chars.len() {
            let c = chars[i].1;
            if Some(c) == quote {
                closed = true;
                i += 1;
                break;
            }
            if quote.is_none() && c.is_whitespace() {
                break;
            }
            if c == '\\' && i + 1 < chars.len() {
                // `\` escapes a quote or a space; elsewhere it stays (it is regex syntax).
                let next = chars[i + 1].1;
                if Some(next) == quote || next.is_whitespace() || next == '"' {
                    text.push(next);
                    i += 2;
                    continue;
                }
            }
            text.push(c);
            i += 1;
        }
        if !closed {
            return Err((column, "unterminated quote".to_string()));
        }
        out.push(Token { text, column });
    }
    Ok(out)
}

/// A server variable (`%{NAME}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Var {
    Header(String),
    RequestUri,
    RequestMethod,
    QueryString,
    TheRequest,
    RemoteAddr,
    ServerName,
    ServerPort,
    Https,
    RequestScheme,
    Env(String),
}

impl Var {
    fn parse(name: &str) -> Option<Var> {
        if let Some(h) = name.strip_prefix("HTTP:") {
            return Some(Var::Header(h.to_string()));
        }
        if let Some(e) = name.strip_prefix("ENV:") {
            return Some(Var::Env(e.to_string()));
        }
        Some(match name {
            "HTTP_HOST" => Var::Header("Host".into()),
            "HTTP_USER_AGENT" => Var::Header("User-Agent".into()),
            "HTTP_REFERER" => Var::Header("Referer".into()),
            "HTTP_COOKIE" => Var::Header("Cookie".into()),
            "HTTP_ACCEPT" => Var::Header("Accept".into()),
            "HTTP_CONNECTION" => Var::Header("Connection".into()),
            "HTTP_UPGRADE" => Var::Header("Upgrade".into()),
            "REQUEST_URI" => Var::RequestUri,
            "REQUEST_METHOD" => Var::RequestMethod,
            "QUERY_STRING" => Var::QueryString,
            "THE_REQUEST" => Var::TheRequest,
            "REMOTE_ADDR" => Var::RemoteAddr,
            "SERVER_NAME" => Var::ServerName,
            "SERVER_PORT" => Var::ServerPort,
            "HTTPS" => Var::Https,
            "REQUEST_SCHEME" => Var::RequestScheme,
            _ => return None,
        })
    }
}

impl fmt::Display for Var {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Var::Header(h) => write!(f, "%{{HTTP:{h}}}"),
            Var::Env(e) => write!(f, "%{{ENV:{e}}}"),
            other => write!(f, "%{{{other:?}}}"),
        }
    }
}

/// One piece of a test string or substitution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    Literal(String),
    Var(Var),
    /// `$N`: group N of the rule's pattern.
    RuleRef(usize),
    /// `%N`: group N of the last matched condition.
    CondRef(usize),
}

/// A parsed template.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Template {
    pub parts: Vec<Part>,
}

impl Template {
    /// Parses `%{VAR}`, `$N`, `%N` and literal text; `column` is where `s` starts.
    pub fn parse(s: &str, column: usize) -> Result<Template, (usize, String)> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let bytes = s.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let c = bytes[i];
            let next = bytes.get(i + 1).copied();
            match (c, next) {
                (b'\\', Some(n)) if matches!(n, b'$' | b'%' | b'\\') => {
                    lit.push(n as char);
                    i += 2;
                }
                (b'%', Some(b'{')) => {
                    let end = s[i..].find('}').ok_or((column + i, "%{ without a closing }".to_string()))?;
                    let name = &s[i + 2..i + end];
                    let var = Var::parse(name).ok_or((column + i, format!("unknown variable %{{{name}}}")))?;
                    if !lit.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Var(var));
                    i += end + 1;
                }
                (b'$' | b'%', Some(d)) if d.is_ascii_digit() => {
                    if !lit.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut lit)));
                    }
                    let n = usize::from(d - b'0');
                    parts.push(if c == b'$' { Part::RuleRef(n) } else { Part::CondRef(n) });
                    i += 2;
                }
                _ => {
                    let ch = s[i..].chars().next().unwrap_or('?');
                    lit.push(ch);
                    i += ch.len_utf8();
                }
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Literal(lit));
        }
        Ok(Template { parts })
    }

    /// Whether the template is one variable (looked up without building a string).
    pub fn single_var(&self) -> Option<&Var> {
        match self.parts.as_slice() {
            [Part::Var(v)] => Some(v),
            _ => None,
        }
    }

    pub fn uses_cond_refs(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::CondRef(_)))
    }

    pub fn uses_rule_refs(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::RuleRef(_)))
    }
}

/// A flag's upper-case name and its `=value`.
pub type Flag = (String, Option<String>);

/// The flags of a `[…]` token.
pub fn parse_flags(token: &Token) -> Result<Vec<Flag>, (usize, String)> {
    let inner = token
        .text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .ok_or((token.column, format!("expected flags in brackets such as [NC], found {:?}", token.text)))?;
    let mut out = Vec::new();
    for flag in inner.split(',') {
        let flag = flag.trim();
        if flag.is_empty() {
            continue;
        }
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().to_string())),
            None => (flag, None),
        };
        out.push((name.to_ascii_uppercase(), value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizes_like_apache() {
        let toks = |s: &str| tokenize(s).map(|t| t.into_iter().map(|t| (t.text, t.column)).collect::<Vec<_>>());
        assert_eq!(
            toks(".* \"wss://localhost:3000%{REQUEST_URI}\" [P,L]"),
            Ok(vec![(".*".into(), 1), ("wss://localhost:3000%{REQUEST_URI}".into(), 4), ("[P,L]".into(), 41)])
        );
        assert_eq!(toks("%{HTTP:Upgrade}  websocket [NC]").map(|t| t.len()), Ok(3));
        assert_eq!(toks("^a\\ b$ x"), Ok(vec![("^a b$".into(), 1), ("x".into(), 8)]));
        assert_eq!(toks("^\\d+$ -"), Ok(vec![("^\\d+$".into(), 1), ("-".into(), 7)]));
        assert!(toks("\"open").is_err());
    }

    #[test]
    fn parses_templates() {
        use Part::*;
        for (input, want) in [
            ("wss://h%{REQUEST_URI}", Ok(vec![Literal("wss://h".into()), Var(super::Var::RequestUri)])),
            ("/x/$1?q=%2", Ok(vec![Literal("/x/".into()), RuleRef(1), Literal("?q=".into()), CondRef(2)])),
            ("%{HTTP:Upgrade}", Ok(vec![Var(super::Var::Header("Upgrade".into()))])),
            ("${HTTP:Upgrade}", Ok(vec![Literal("${HTTP:Upgrade}".into())])),
            ("100\\%", Ok(vec![Literal("100%".into())])),
            ("%{NOPE}", Err(1)),
            ("a%{REQUEST_URI", Err(2)),
        ] {
            assert_eq!(Template::parse(input, 1).map(|t| t.parts).map_err(|e| e.0), want, "input {input:?}");
        }
    }
}
