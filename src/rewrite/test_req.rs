//! Tests only: a request with settable server variables, implementing `RequestVars`
//! the way the proxy does (headers borrowed when there is one line, joined otherwise).

use std::borrow::Cow;

use super::RequestVars;

pub(crate) struct TestReq {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub request_line: String,
    pub remote_addr: String,
    pub server_name: String,
    pub server_port: u16,
    pub https: bool,
}

impl TestReq {
    /// `GET <path>` where `path` is the *decoded* path and `query` the raw query.
    pub fn get(path: &str, query: &str) -> Self {
        let target = if query.is_empty() { path.to_string() } else { format!("{path}?{query}") };
        Self {
            method: "GET".into(),
            path: path.into(),
            query: query.into(),
            headers: vec![("Host".into(), "ws.example.com".into())],
            request_line: format!("GET {} HTTP/1.1", target.escape_debug()),
            remote_addr: "10.0.0.7".into(),
            server_name: "ws.example.com".into(),
            server_port: 443,
            https: true,
        }
    }

    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The WebSocket handshake's `Upgrade` and `Connection` headers, as Firefox sends them.
    pub fn upgrade(self) -> Self {
        self.with("Upgrade", "websocket").with("Connection", "keep-alive, Upgrade")
    }
}

impl RequestVars for TestReq {
    fn method(&self) -> &str {
        &self.method
    }
    fn path(&self) -> &str {
        &self.path
    }
    fn query(&self) -> &str {
        &self.query
    }
    fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        let mut values = self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
        let first = values.next()?;
        let rest: Vec<&str> = values.collect();
        if rest.is_empty() {
            return Some(Cow::Borrowed(first));
        }
        Some(Cow::Owned(std::iter::once(first).chain(rest).collect::<Vec<_>>().join(", ")))
    }
    fn request_line(&self) -> &str {
        &self.request_line
    }
    fn remote_addr(&self) -> &str {
        &self.remote_addr
    }
    fn server_name(&self) -> &str {
        &self.server_name
    }
    fn server_port(&self) -> u16 {
        self.server_port
    }
    fn https(&self) -> bool {
        self.https
    }
}
