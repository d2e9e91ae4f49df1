//! One request from its head to its access line: the config snapshot it is routed
//! with, where it stands (body read, response begun), the balancer lease, the access
//! record and the counters it adds to the metrics. Everything the request path learns
//! is written here, and `finish` reports it all at once. Also `Scratch`, the buffers a
//! request parses and writes into, which its worker hands from one request to the next.

use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use crate::access_log::{AccessFormat, AccessRecord};
use crate::config::Config;
use crate::h1::answer::Answer;
use crate::h1::framing::Framing;
use crate::h1::head::{RequestHead, ResponseHead, Version};
use crate::h1::headers::{write_response_head, ClientConnection};
use crate::net::clock;
use crate::net::stream::Conn;
use crate::net::stream::READ_BYTES;
use crate::route::reverse_url;
use crate::server::Worker;

use super::decide::{Destination, RouteBufs};
use super::error::{ProxyError, CLIENT_CLOSED_STATUS};
use super::lease::Lease;
use super::ClientInfo;

/// Where the request stands, so an error is answered correctly.
pub(crate) struct Progress {
    /// The request body has been read completely from the client (or there was none).
    pub body_done: bool,
    /// Bytes of the response have reached the client: no error page can follow.
    pub responded: bool,
    /// A `100 Continue` went to the client.
    pub sent_continue: bool,
}

/// Counters a request adds to the metrics when it finishes.
#[derive(Default)]
pub(crate) struct Counts {
    /// Request body bytes sent to a backend.
    pub body_in: u64,
    pub connect_errors: u64,
    pub pooled: u64,
    pub fresh: u64,
}

/// What a request parses and writes into, handed by its worker from one request to the
/// next (`Worker::take_scratch`), so that a request allocates no buffer once its
/// worker has served a few. Boxed: a request holds a pointer to it, and a tunnel none.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    /// The request head is parsed here; `Request::new` moves it to `Request::head`
    /// and `finish` moves it back.
    pub head: RequestHead,
    /// The backend's response head.
    pub response: ResponseHead,
    pub route: RouteBufs,
    /// A balanced request's tried members, and the URL of the member it is on.
    pub tried: Vec<usize>,
    pub member: Option<crate::target::Url>,
    /// Heads sidecar writes, with the first body bytes, and the body copy's buffer.
    pub out: Vec<u8>,
    /// The strings an access record held (request line, Referer, User-Agent,
    /// replica), for the next request's record.
    texts: Vec<String>,
}

impl Scratch {
    /// More than this in buffers is freed rather than kept: a body relayed with its
    /// length grows `out` to about two reads' worth and is kept; an unusually large
    /// head or a re-chunked body costs its request an allocation instead of holding
    /// memory in the worker.
    const KEPT_BYTES: usize = 2 * READ_BYTES + 1024;

    /// Whether the buffers are small enough to keep for the next request.
    pub fn worth_keeping(&self) -> bool {
        let bytes = self.head.capacity_bytes()
            + self.response.capacity_bytes()
            + self.route.capacity_bytes()
            + self.tried.capacity() * std::mem::size_of::<usize>()
            + self.member.as_ref().map_or(0, |u| u.host.capacity() + u.path.capacity())
            + self.out.capacity()
            + self.texts.iter().map(String::capacity).sum::<usize>();
        bytes <= Self::KEPT_BYTES
    }

    /// A string for an access record, holding what `write` puts in it: an earlier
    /// record's, or a new one.
    fn text(&mut self, write: impl FnOnce(&mut String)) -> String {
        let mut text = self.texts.pop().unwrap_or_default();
        text.clear();
        write(&mut text);
        text
    }

    /// Keeps a record's string for `text`.
    fn keep_text(&mut self, text: String) {
        if self.texts.len() < Self::KEPT_TEXTS {
            self.texts.push(text);
        }
    }

    /// As many strings as a record holds.
    const KEPT_TEXTS: usize = 4;
}

pub(crate) struct Request {
    pub worker: Rc<Worker>,
    pub info: Rc<ClientInfo>,
    /// The config the request is routed with, kept to its end even if a reload lands.
    pub config: Arc<Config>,
    pub head: RequestHead,
    /// How the request body is framed; set once the head is checked.
    pub framing: Framing,
    /// When the request head started arriving.
    pub started: Instant,
    pub progress: Progress,
    /// The member the request (or, after a 101, the tunnel) counts against.
    pub lease: Option<Lease>,
    pub record: AccessRecord,
    pub counts: Counts,
    /// `None` once given back (a tunnel needs none); `scratch()` gets a new one.
    scratch: Option<Box<Scratch>>,
}

impl Request {
    /// `config` is the snapshot the head was read under; the request keeps it. The head
    /// is the one parsed into `scratch`.
    pub fn new(
        worker: Rc<Worker>,
        info: Rc<ClientInfo>,
        config: Arc<Config>,
        mut scratch: Box<Scratch>,
        started: Instant,
    ) -> Self {
        let head = std::mem::take(&mut scratch.head);
        let mut record = AccessRecord { peer: Some(info.peer), ..Default::default() };
        // What only an access line shows is copied out of the head only for one, into
        // strings an earlier record used.
        if config.access_log != AccessFormat::Off {
            record.request_line = Some(scratch.text(|s| head.write_request_line(s)));
            let mut header = |name| {
                let value = head.headers.get(name)?;
                Some(scratch.text(|s| s.push_str(&String::from_utf8_lossy(value))))
            };
            record.referer = header("Referer");
            record.user_agent = header("User-Agent");
        }
        Self {
            worker,
            info,
            config,
            head,
            framing: Framing::None,
            started,
            progress: Progress { body_done: true, responded: false, sent_continue: false },
            lease: None,
            record,
            counts: Counts::default(),
            scratch: Some(scratch),
        }
    }

    /// The request's buffers (see `Scratch`). A caller takes a buffer out with
    /// `mem::take` for as long as it writes into it and puts it back: one that is not
    /// put back (an error path) is only allocated again.
    pub fn scratch(&mut self) -> &mut Scratch {
        self.scratch.get_or_insert_with(Box::default)
    }

    /// Gives the buffers back to the worker, with the head: a tunnel needs neither for
    /// its hours, and the worker's next request reuses them.
    pub fn release_scratch(&mut self) {
        if let Some(mut scratch) = self.scratch.take() {
            scratch.head = std::mem::take(&mut self.head);
            self.worker.give_scratch(scratch);
        }
    }

    /// Notes the replica an attempt went to, for the access line: its name is
    /// written only when a line will be.
    pub fn note_replica(&mut self, url: &crate::target::Url) {
        if self.config.access_log != AccessFormat::Off {
            let scratch = self.scratch.get_or_insert_with(Box::default);
            let origin = scratch.text(|s| url.write_origin(s));
            if let Some(earlier) = self.record.replica.replace(origin) {
                scratch.keep_text(earlier);
            }
        }
    }

    /// Whether the client connection must close after what is being answered now: the
    /// client asked for it (`Connection: close`, HTTP/1.0 without keep-alive), its body
    /// was not read to the end, a response already began, or the worker is draining.
    pub fn must_close(&self) -> bool {
        !self.head.wants_keep_alive()
            || !self.progress.body_done
            || self.progress.responded
            || self.worker.is_draining()
    }

    /// Answers `e` to the client, if it can still be answered, and records it. Returns
    /// whether the connection must close.
    pub async fn answer_error(&mut self, client: &mut Conn, e: &ProxyError) -> bool {
        self.record.reason = Some(e.to_string());
        if let (ProxyError::ClientClosed, false) = (e, self.progress.responded) {
            self.record.status = CLIENT_CLOSED_STATUS;
        }
        let close = e.closes_connection() || self.must_close();
        if let (Some(answer), false) = (e.answer(), self.progress.responded) {
            self.record.status = answer.status;
            let _ = client.write_flush(&answer.close(close).to_bytes()).await;
        }
        close
    }

    /// Writes a response sidecar made up itself (a redirect, `OPTIONS *`). Returns
    /// whether the connection must close.
    pub async fn answer(&mut self, client: &mut Conn, answer: Answer<'_>) -> Result<bool, ProxyError> {
        let close = self.must_close();
        self.record.status = answer.status;
        client.write_flush(&answer.close(close).to_bytes()).await.map_err(ProxyError::ClientGone)?;
        Ok(close)
    }

    /// Writes a backend's response head as this request's client gets it: hop-by-hop
    /// headers dropped, sidecar's framing, `Via`, and ProxyPassReverse when `dest`
    /// asks for it.
    pub fn write_client_head(
        &self,
        res: &ResponseHead,
        dest: &Destination,
        version: Version,
        framing: Framing,
        connection: ClientConnection,
        out: &mut Vec<u8>,
    ) {
        let reverse = |v: &[u8]| match dest.reverse {
            true => reverse_url(v, &self.config.reverse, &self.front_origin()),
            false => None,
        };
        write_response_head(res, version, framing, connection, self.config.via_pseudonym(), &reverse, out);
    }

    /// The client-facing `scheme://host` that ProxyPassReverse writes (Apache uses the
    /// request's Host unless `UseCanonicalName On`).
    fn front_origin(&self) -> String {
        let scheme = if self.info.https { "https" } else { "http" };
        match self.head.host().or(self.config.server_name.as_deref()) {
            Some(host) => format!("{scheme}://{host}"),
            None => format!("{scheme}://{}", self.info.local),
        }
    }

    /// The end of the request: its access line and its counters.
    pub fn finish(mut self) {
        report(&self.worker, &self.config, self.started, &mut self.record, &self.counts);
        // The record's strings go back with the buffers.
        if let Some(scratch) = self.scratch.as_mut() {
            let r = &mut self.record;
            for text in [&mut r.request_line, &mut r.referer, &mut r.user_agent, &mut r.replica] {
                if let Some(text) = text.take() {
                    scratch.keep_text(text);
                }
            }
        }
        self.release_scratch();
    }

    /// What is left of the request once its head and buffers go back to the worker
    /// (a tunnel needs neither for its hours).
    pub fn into_end(mut self) -> RequestEnd {
        self.release_scratch();
        let Request { worker, config, started, lease, record, counts, .. } = self;
        RequestEnd { worker, config, started, lease, record, counts }
    }
}

/// A request reduced to what its access line and counters need, and its lease: what
/// a tunnel holds from its 101 to its end.
pub(crate) struct RequestEnd {
    pub worker: Rc<Worker>,
    pub config: Arc<Config>,
    started: Instant,
    pub lease: Option<Lease>,
    pub record: AccessRecord,
    counts: Counts,
}

impl RequestEnd {
    /// The access line and the counters.
    pub fn finish(mut self) {
        report(&self.worker, &self.config, self.started, &mut self.record, &self.counts);
    }
}

/// A request's access line, and its counts added to the metrics.
fn report(worker: &Worker, config: &Config, started: Instant, record: &mut AccessRecord, c: &Counts) {
    record.elapsed = clock::since(started);
    log_access(worker, config, record);
    let m = worker.metrics();
    let (tunnel_up, tunnel_down) = record.tunnel.unwrap_or((0, 0));
    for (counter, n) in [
        (&m.bytes_in, c.body_in + tunnel_up),
        (&m.bytes_out, record.bytes.unwrap_or(0) + tunnel_down),
        (&m.connect_errors, c.connect_errors),
        (&m.pool_reused, c.pooled),
        (&m.pool_new, c.fresh),
    ] {
        if n > 0 {
            counter.fetch_add(n, Relaxed);
        }
    }
}

/// One access line and one request counted, for a request or a tunnel that ended, and
/// for a request that never got as far as a `Request` (a bad head, a timeout).
pub(crate) fn log_access(worker: &Worker, config: &Config, record: &AccessRecord) {
    if config.access_log != AccessFormat::Off {
        // Queued, never written here: a stalled stdout must not stop the worker.
        let now = std::time::SystemTime::now();
        worker.shared().access_log.push_with(|line| record.write_line(config.access_log, now, line));
    }
    worker.metrics().request(record.route, record.status, record.elapsed);
}
