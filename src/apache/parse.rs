//! PURE. Apache httpd config syntax: lines with `\` continuation, `#` comments,
//! directives with quoted arguments, and `<Section args>` … `</Section>` blocks, each
//! remembering its line number, so every warning can name the Apache line.

/// One directive, or a section with its children.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub line: usize,
    pub name: String,
    /// The arguments exactly as written after the name (quotes kept), for directives
    /// whose argument string sidecar passes on as-is (RewriteCond, RewriteRule).
    pub raw_args: String,
    /// The arguments split as Apache splits them (quotes removed).
    pub args: Vec<String>,
    /// `Some` for a `<Section>`.
    pub children: Option<Vec<Node>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

/// Splits an argument string: whitespace separates, `"…"` or `'…'` groups, `\` escapes
/// the next character inside quotes.
pub fn split_args(s: &str) -> Result<Vec<String>, String> {
    let mut args = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else { return Ok(args) };
        let mut arg = String::new();
        if first == '"' || first == '\'' {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(format!("unterminated {first} quote")),
                    Some('\\') => {
                        if let Some(c) = chars.next() {
                            if c != first && c != '\\' {
                                arg.push('\\');
                            }
                            arg.push(c);
                        }
                    }
                    Some(c) if c == first => break,
                    Some(c) => arg.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                arg.push(c);
                chars.next();
            }
        }
        args.push(arg);
    }
}

/// Parses a whole file into a tree of nodes.
pub fn parse_config(text: &str) -> Result<Vec<Node>, ParseError> {
    // Join continuation lines, keeping the number of the first physical line.
    let mut logical: Vec<(usize, String)> = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let (start, mut acc) = pending.take().unwrap_or((line_no, String::new()));
        match raw.strip_suffix('\\') {
            Some(head) => {
                acc.push_str(head);
                acc.push(' ');
                pending = Some((start, acc));
            }
            None => {
                acc.push_str(raw);
                logical.push((start, acc));
            }
        }
    }
    if let Some(p) = pending {
        logical.push(p);
    }
    let mut stack: Vec<(Node, Vec<Node>)> = Vec::new();
    let mut top: Vec<Node> = Vec::new();
    for (line, text) in logical {
        let t = text.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if let Some(close) = t.strip_prefix("</") {
            let name = close.trim_end_matches('>').trim();
            let Some((mut node, children)) = stack.pop() else {
                return Err(ParseError { line, message: format!("</{name}> without an opening <{name}>") });
            };
            if !node.name.eq_ignore_ascii_case(name) {
                return Err(ParseError {
                    line,
                    message: format!("</{name}> closes <{}> opened on line {}", node.name, node.line),
                });
            }
            node.children = Some(children);
            match stack.last_mut() {
                Some((_, siblings)) => siblings.push(node),
                None => top.push(node),
            }
            continue;
        }
        if let Some(open) = t.strip_prefix('<') {
            let inner = open
                .strip_suffix('>')
                .ok_or(ParseError { line, message: "section line without a closing '>'".into() })?;
            let (name, raw_args) = inner.split_once(char::is_whitespace).unwrap_or((inner, ""));
            let args = split_args(raw_args).map_err(|message| ParseError { line, message })?;
            let node =
                Node { line, name: name.to_string(), raw_args: raw_args.trim().to_string(), args, children: None };
            stack.push((node, Vec::new()));
            continue;
        }
        let (name, raw_args) = t.split_once(char::is_whitespace).unwrap_or((t, ""));
        let args = split_args(raw_args).map_err(|message| ParseError { line, message })?;
        let node = Node { line, name: name.to_string(), raw_args: raw_args.trim().to_string(), args, children: None };
        match stack.last_mut() {
            Some((_, siblings)) => siblings.push(node),
            None => top.push(node),
        }
    }
    if let Some((node, _)) = stack.pop() {
        return Err(ParseError { line: node.line, message: format!("<{}> is never closed", node.name) });
    }
    Ok(top)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_arguments() {
        for (input, want) in [
            (".* \"wss://h%{REQUEST_URI}\" [P,L]", vec![".*", "wss://h%{REQUEST_URI}", "[P,L]"]),
            ("%{HTTP:Upgrade}   websocket [NC]", vec!["%{HTTP:Upgrade}", "websocket", "[NC]"]),
            ("'a b' \"c \\\" d\"", vec!["a b", "c \" d"]),
            ("", vec![]),
        ] {
            assert_eq!(split_args(input), Ok(want.iter().map(|s| s.to_string()).collect()), "input {input:?}");
        }
        assert!(split_args("\"open").is_err());
    }

    #[test]
    fn parses_sections_with_lines() {
        let text = "# c\nListen 443\n<VirtualHost *:443>\n  ServerName a \\\n    b\n  <Proxy balancer://x>\n    BalancerMember http://h:1\n  </Proxy>\n</VirtualHost>\n";
        let tree = parse_config(text).expect("valid");
        assert_eq!(tree.len(), 2);
        assert_eq!((tree[0].line, tree[0].name.as_str()), (2, "Listen"));
        let vhost = tree[1].children.as_ref().expect("section");
        assert_eq!((vhost[0].line, vhost[0].args.clone()), (4, vec!["a".to_string(), "b".to_string()]));
        let proxy = vhost[1].children.as_ref().expect("section");
        assert_eq!((proxy[0].line, proxy[0].name.as_str()), (7, "BalancerMember"));
        assert!(parse_config("<VirtualHost *:80>\n").is_err());
        assert!(parse_config("</Proxy>\n").is_err());
    }
}
