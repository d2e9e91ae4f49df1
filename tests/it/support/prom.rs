//! A strict reader for the Prometheus text exposition format (0.0.4): every line that
//! is not blank or a comment must be `name{label="value",...} value [timestamp]`.

use std::collections::BTreeMap;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Every sample of a `/metrics` body, or the first line that is not valid.
pub fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.is_empty() || line.starts_with('#') {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let kind = rest.split_whitespace().nth(1).unwrap_or("");
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                    return Err(format!("line {}: bad TYPE {line:?}", n + 1));
                }
            }
            continue;
        }
        out.push(sample(line).map_err(|e| format!("line {}: {e}: {line:?}", n + 1))?);
    }
    Ok(out)
}

fn is_name_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':'
}

/// One sample line.
pub fn sample(line: &str) -> Result<Sample, String> {
    let b = line.as_bytes();
    let mut i = 0;
    if !b.first().copied().is_some_and(is_name_start) {
        return Err("metric name must start with [a-zA-Z_:]".into());
    }
    while i < b.len() && (is_name_start(b[i]) || b[i].is_ascii_digit()) {
        i += 1;
    }
    let name = line[..i].to_string();
    let mut labels = BTreeMap::new();
    if b.get(i) == Some(&b'{') {
        i += 1;
        loop {
            if b.get(i) == Some(&b'}') {
                i += 1;
                break;
            }
            let start = i;
            if !b.get(i).copied().is_some_and(|c| c.is_ascii_alphabetic() || c == b'_') {
                return Err(format!("bad label name at {i}"));
            }
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let key = line[start..i].to_string();
            if b.get(i) != Some(&b'=') || b.get(i + 1) != Some(&b'"') {
                return Err(format!("expected =\" after label {key}"));
            }
            i += 2;
            let mut value = String::new();
            loop {
                match b.get(i) {
                    None => return Err("unterminated label value".into()),
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') => {
                        match b.get(i + 1) {
                            Some(b'\\') => value.push('\\'),
                            Some(b'"') => value.push('"'),
                            Some(b'n') => value.push('\n'),
                            _ => return Err("bad escape in a label value".into()),
                        }
                        i += 2;
                    }
                    Some(b'\n') => return Err("newline in a label value".into()),
                    Some(_) => {
                        let c = line[i..].chars().next().ok_or("bad utf-8")?;
                        value.push(c);
                        i += c.len_utf8();
                    }
                }
            }
            if labels.insert(key.clone(), value).is_some() {
                return Err(format!("label {key} twice"));
            }
            match b.get(i) {
                Some(b',') => i += 1,
                Some(b'}') => {}
                _ => return Err(format!("expected , or }} at {i}")),
            }
        }
    }
    if b.get(i) != Some(&b' ') {
        return Err("expected one space before the value".into());
    }
    let rest: Vec<&str> = line[i + 1..].split(' ').collect();
    let value = match rest.as_slice() {
        [v] | [v, _] => *v,
        _ => return Err("expected `value [timestamp]`".into()),
    };
    if let [_, ts] = rest.as_slice() {
        ts.parse::<i64>().map_err(|_| format!("bad timestamp {ts:?}"))?;
    }
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse::<f64>().map_err(|_| format!("bad value {v:?}"))?,
    };
    Ok(Sample { name, labels, value })
}

/// The value of the sample `name` whose labels include every `(key, value)` of `want`;
/// the sum when several match; `None` when none does.
pub fn value(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    let hits: Vec<f64> = samples
        .iter()
        .filter(|s| s.name == name && want.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .map(|s| s.value)
        .collect();
    (!hits.is_empty()).then(|| hits.iter().sum())
}
