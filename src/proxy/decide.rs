//! Where a request goes: rewrite rules first (RewriteEngine runs before ProxyPass, as
//! in Apache), then the `[[proxy]]` table. The result names a target from config only;
//! nothing in the request can name a host (no open proxy: docs/security.md, section 0).

use std::borrow::Cow;
use std::cell::OnceCell;

use crate::config::Config;
use crate::h1::head::RequestHead;
use crate::h1::upgrade::Upgrade;
use crate::rewrite::{Decision, NoTrace, RequestVars, Trace};
use crate::route::{normalize_target, normalize_target_into, upstream_target_into, NormRef, PathError, RouteLabel};
use crate::target::Target;
use crate::websocket::Keepalive;

use super::error::ProxyError;
use super::ClientInfo;

/// A request's destination: borrowed from the config and from the request's
/// `RouteBufs`, so routing a request allocates nothing (a `P` rule's target, built by
/// the rewrite engine, is the exception).
#[derive(Debug)]
pub struct Destination<'a> {
    pub target: Cow<'a, Target>,
    /// Path and query to send, before a balancer member's own path is put in front.
    pub upstream_target: &'a str,
    pub preserve_host: bool,
    /// Forward as a WebSocket handshake and tunnel after a valid 101.
    pub websocket: bool,
    /// `proxy[i]` or `rewrite[i]`, for the access line.
    pub label: RouteLabel,
    /// The client-facing prefix of the route, for ProxyPassReverse.
    pub reverse: bool,
    /// Keepalive Pings for the tunnel, if one opens.
    pub keepalive: Keepalive,
}

/// What to do with a request.
#[derive(Debug)]
pub enum Decided<'a> {
    Forward(Destination<'a>),
    /// Answer locally: a redirect from an `R` rule.
    Redirect {
        status: u16,
        location: String,
        label: RouteLabel,
    },
    /// `OPTIONS *`: nothing to forward.
    OptionsStar,
}

/// Where a request's routing writes: its normalised path and its upstream target.
/// It lives in the request's `Scratch`, reused from one request to the next, so
/// routing allocates nothing.
#[derive(Debug, Default)]
pub struct RouteBufs {
    path: String,
    upstream: String,
}

impl RouteBufs {
    /// Bytes of heap held for reuse.
    pub fn capacity_bytes(&self) -> usize {
        self.path.capacity() + self.upstream.capacity()
    }
}

/// The server variables of one request, computed only when a rule asks.
struct Vars<'a> {
    head: &'a RequestHead,
    path: NormRef<'a>,
    info: &'a ClientInfo,
    server_name: &'a str,
    decoded: OnceCell<String>,
    request_line: OnceCell<String>,
    remote: OnceCell<String>,
}

impl RequestVars for Vars<'_> {
    fn method(&self) -> &str {
        &self.head.method
    }
    fn path(&self) -> &str {
        self.decoded.get_or_init(|| self.path.decoded())
    }
    fn query(&self) -> &str {
        self.path.query.unwrap_or("")
    }
    fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        let mut values = self.head.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v);
        let first = values.next()?;
        let mut joined: Option<Vec<u8>> = None;
        for more in values {
            let j = joined.get_or_insert_with(|| first.to_vec());
            j.extend_from_slice(b", ");
            j.extend_from_slice(more);
        }
        Some(match joined {
            None => String::from_utf8_lossy(first),
            Some(j) => Cow::Owned(String::from_utf8_lossy(&j).into_owned()),
        })
    }
    fn request_line(&self) -> &str {
        self.request_line.get_or_init(|| self.head.request_line())
    }
    fn remote_addr(&self) -> &str {
        self.remote.get_or_init(|| self.info.peer_ip.clone())
    }
    fn server_name(&self) -> &str {
        self.server_name
    }
    fn server_port(&self) -> u16 {
        self.info.local.port()
    }
    fn https(&self) -> bool {
        self.info.https
    }
}

fn path_error(e: PathError) -> ProxyError {
    match e {
        PathError::Malformed(why) => ProxyError::BadRequest(why),
        PathError::EncodedSlash => ProxyError::NoRoute("encoded slash in path (Apache AllowEncodedSlashes Off)"),
    }
}

pub fn decide<'a>(
    config: &'a Config,
    head: &RequestHead,
    info: &ClientInfo,
    upgrade: Upgrade,
    bufs: &'a mut RouteBufs,
) -> Result<Decided<'a>, ProxyError> {
    decide_traced(config, head, info, upgrade, bufs, &mut NoTrace)
}

/// `decide`, telling `trace` what the rewrite rules did (`sidecar check --explain`).
pub fn decide_traced<'a>(
    config: &'a Config,
    head: &RequestHead,
    info: &ClientInfo,
    upgrade: Upgrade,
    bufs: &'a mut RouteBufs,
    trace: &mut impl Trace,
) -> Result<Decided<'a>, ProxyError> {
    if head.target == "*" {
        return Ok(Decided::OptionsStar);
    }
    let RouteBufs { path, upstream } = bufs;
    let norm = normalize_target_into(&head.target, path).map_err(path_error)?;
    let server_name = config.server_name.as_deref().or(head.host()).unwrap_or("");
    let vars = Vars {
        head,
        path: norm,
        info,
        server_name,
        decoded: OnceCell::new(),
        request_line: OnceCell::new(),
        remote: OnceCell::new(),
    };
    let websocket = upgrade == Upgrade::WebSocket;
    let rewritten;
    let norm = match config.rules.evaluate_traced(&vars, trace) {
        Decision::Pass => norm,
        Decision::Rewritten { path_and_query, .. } => {
            rewritten = normalize_target(&path_and_query).map_err(path_error)?;
            rewritten.as_ref()
        }
        Decision::Proxy { target, rule } => {
            upstream.clear();
            upstream.push_str(match &target {
                Target::Url(u) => &u.path,
                Target::Balancer { path, .. } => path,
            });
            return Ok(Decided::Forward(Destination {
                target: Cow::Owned(target),
                upstream_target: upstream,
                preserve_host: false,
                websocket,
                label: RouteLabel::Rewrite(rule),
                // ProxyPassReverse applies to every proxied response, as in Apache: the
                // table only maps URLs of configured backends.
                reverse: true,
                keepalive: config.ws_keepalive,
            }));
        }
        Decision::Redirect { status, location, rule } => {
            return Ok(Decided::Redirect { status, location, label: RouteLabel::Rewrite(rule) })
        }
        Decision::Forbidden { .. } => return Err(ProxyError::Forbidden),
        Decision::Gone { .. } => return Err(ProxyError::Gone),
        Decision::Refused { .. } => return Err(ProxyError::BadRequest("rewrite result is not a valid request target")),
    };
    let route = config.routes.find(norm.path).ok_or(ProxyError::NoRoute("no [[proxy]] path matches"))?;
    let base_path = match &route.target {
        Target::Url(u) => u.path.as_str(),
        Target::Balancer { path, .. } => path.as_str(),
    };
    upstream_target_into(&route.prefix, base_path, norm, upstream);
    Ok(Decided::Forward(Destination {
        target: Cow::Borrowed(&route.target),
        upstream_target: upstream,
        preserve_host: route.preserve_host,
        websocket: websocket && route.upgrade,
        label: RouteLabel::Proxy(route.index),
        reverse: route.reverse,
        keepalive: route.keepalive.unwrap_or(config.ws_keepalive),
    }))
}
