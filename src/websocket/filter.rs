//! One direction of a tunnel, read as RFC 6455 frames without touching payloads. The
//! filter follows frame boundaries from the headers alone, so the proxy can:
//! - put a control frame of its own (Ping, Close) between two frames, never inside one;
//! - drop the Pong that answers its own Ping, and everything after it sent a Close;
//! - fail a stream that breaks the framing rules (section 5) before a bad frame
//!   reaches the other side.
//!
//! It works in place on the buffer a read filled: in the usual case (data frames, no
//! frame of the proxy's own) the bytes stay where they are and all of them go on. Only
//! a header or control frame cut by the end of a read is held (at most
//! `MAX_CONTROL_FRAME` bytes) until the rest arrives.

use std::ops::Range;

use super::frame::{
    self, Header, BINARY, CLOSE, CONTINUATION, MAX_CONTROL_FRAME, MAX_CONTROL_PAYLOAD, PING, PONG, TEXT,
};

/// Free bytes `scan` needs in front of the data: a held partial frame goes there.
pub const HEADROOM: usize = MAX_CONTROL_FRAME;
/// Free bytes `scan` needs after the data: the proxy's own frames may go in between.
pub const TAILROOM: usize = 2 * MAX_CONTROL_FRAME;

/// What a scan saw from the source.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The source sent a Close (with its code, if it had one).
    pub close: Option<Option<u16>>,
    /// The source answered the proxy's Ping.
    pub own_pong: bool,
    /// The source broke the framing rules: what it did.
    pub violation: Option<&'static str>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Between frames (possibly with a partial header or control frame held).
    Boundary,
    /// Inside a data frame's payload: `left` bytes to go, forwarded or dropped.
    Payload { left: u64, keep: bool },
    /// The stream broke the rules: nothing more from it is forwarded.
    Failed,
}

pub struct Filter {
    /// Frames from a client must be masked; frames from a server must not be.
    from_client: bool,
    /// The handshake negotiated an extension, which may use the RSV bits.
    extensions: bool,
    state: State,
    /// A fragmented data message is open (continuation frames expected).
    in_message: bool,
    /// A header or control frame cut by the end of a read. Allocated the first time a
    /// frame is cut and kept for the tunnel's life: most tunnels never need it, and an
    /// idle tunnel should not carry its bytes.
    held: Vec<u8>,
    /// The proxy's own frames for the destination, written at the next boundary.
    inject: Vec<u8>,
    /// Once `inject` is written, the destination has been sent a Close: drop the rest.
    seal_after_inject: bool,
    sealed: bool,
    /// A Close went to the destination, the source's or the proxy's own.
    close_passed: bool,
    /// The source's Close is not passed on: the proxy sends the destination its own.
    swallow_close: bool,
    /// The payload of the proxy's Ping awaiting the source's Pong.
    own_ping: Option<Vec<u8>>,
    pub seen: Seen,
}

impl Filter {
    pub fn new(from_client: bool, extensions: bool) -> Self {
        Self {
            from_client,
            extensions,
            state: State::Boundary,
            in_message: false,
            held: Vec::new(),
            inject: Vec::new(),
            seal_after_inject: false,
            sealed: false,
            close_passed: false,
            swallow_close: false,
            own_ping: None,
            seen: Seen::default(),
        }
    }

    /// Queues a frame of the proxy's own for the destination. `close`: it is a Close,
    /// after which nothing more from the source is forwarded.
    pub fn queue(&mut self, frame: &[u8], close: bool) {
        if self.close_passed || self.seal_after_inject || self.inject.len() + frame.len() > TAILROOM {
            return;
        }
        self.inject.extend_from_slice(frame);
        self.seal_after_inject = close;
    }

    /// From now on the source's Close is noted but not passed on.
    pub fn swallow_close(&mut self) {
        self.swallow_close = true;
    }

    /// The source's Pong with this payload answers the proxy's Ping: it is dropped.
    pub fn expect_pong(&mut self, payload: &[u8]) {
        self.own_ping = Some(payload.to_vec());
    }

    /// `seen` has something the tunnel must act on.
    #[inline]
    pub fn has_news(&self) -> bool {
        self.seen.close.is_some() || self.seen.own_pong || self.seen.violation.is_some()
    }

    /// Frames of the proxy's own wait for a boundary.
    pub fn has_injection(&self) -> bool {
        !self.inject.is_empty()
    }

    /// A Close has gone (or is queued to go) to the destination.
    pub fn close_passed(&self) -> bool {
        self.close_passed || self.seal_after_inject
    }

    /// Queued frames, if the stream is between frames so they can go now (the source
    /// is quiet; otherwise `scan` puts them in at the next boundary).
    pub fn take_injection(&mut self) -> Option<Vec<u8>> {
        if self.inject.is_empty() || matches!(self.state, State::Payload { .. }) {
            return None;
        }
        self.after_inject();
        Some(std::mem::take(&mut self.inject))
    }

    fn after_inject(&mut self) {
        if std::mem::take(&mut self.seal_after_inject) {
            self.sealed = true;
            self.close_passed = true;
        }
    }

    /// Filters `buf[start..end]`, just read from the source, in place. `buf[..start]`
    /// must have `HEADROOM` free bytes and `buf[end..]` `TAILROOM`. Returns where in
    /// `buf` the bytes for the destination now are.
    #[inline(always)]
    pub fn scan(&mut self, buf: &mut [u8], start: usize, end: usize) -> Range<usize> {
        if self.held.is_empty() && self.inject.is_empty() && !self.sealed {
            match self.skim(&buf[start..end]) {
                Some(()) => return start..end,
                None => return self.scan_from(buf, start, start, end),
            }
        }
        let r = start - self.held.len();
        buf[r..start].copy_from_slice(&self.held);
        self.held.clear();
        self.scan_from(buf, r, r, end)
    }

    /// The usual case, cheaply: data frames that keep every rule, nothing held, nothing
    /// to drop or put in. Walks `data` frame by frame; `Some` when it all goes on as
    /// it is (the state then follows the end of `data`), `None` at the first frame it
    /// does not handle, with the state left as it was: the full scan starts over.
    #[inline(always)]
    fn skim(&mut self, data: &[u8]) -> Option<()> {
        let mut at = 0usize;
        let mut in_message = self.in_message;
        match self.state {
            State::Payload { left, keep: true } => {
                if left >= data.len() as u64 {
                    self.state = State::Payload { left: left - data.len() as u64, keep: true };
                    return Some(());
                }
                at = left as usize;
            }
            State::Boundary => {}
            _ => return None,
        }
        let mask_bit = if self.from_client { 0x80 } else { 0 };
        while at < data.len() {
            let (&b0, &b1) = (data.get(at)?, data.get(at + 1)?);
            let opcode = b0 & 0x0F;
            let data_frame = match opcode {
                CONTINUATION => in_message,
                TEXT | BINARY => !in_message,
                _ => false,
            };
            if !data_frame || (b0 & 0x70 != 0 && !self.extensions) || b1 & 0x80 != mask_bit {
                return None;
            }
            let (payload, len_bytes) = match b1 & 0x7F {
                127 => return None,
                126 => (u16::from_be_bytes([*data.get(at + 2)?, *data.get(at + 3)?]) as usize, 2),
                n => (n as usize, 0),
            };
            let header = 2 + len_bytes + if self.from_client { 4 } else { 0 };
            if at + header > data.len() {
                return None;
            }
            // A message stays open until a frame with FIN ends it.
            in_message = b0 & 0x80 == 0;
            at += header + payload;
        }
        self.in_message = in_message;
        self.state = match at - data.len() {
            0 => State::Boundary,
            left => State::Payload { left: left as u64, keep: true },
        };
        Some(())
    }

    /// The full scan from `r` (where the held bytes, if any, now start) to `end`, with
    /// the output so far ending at `w`.
    #[inline(never)]
    fn scan_from(&mut self, buf: &mut [u8], out: usize, r: usize, end: usize) -> Range<usize> {
        let (mut r, mut end) = (r, end);
        let mut w = r;
        loop {
            match self.state {
                State::Payload { left, keep } => {
                    let take = left.min((end - r) as u64) as usize;
                    if keep {
                        move_down(buf, r..r + take, w);
                        w += take;
                    }
                    r += take;
                    if take as u64 == left {
                        self.state = State::Boundary;
                    } else {
                        self.state = State::Payload { left: left - take as u64, keep };
                        break;
                    }
                }
                State::Failed => {
                    self.insert_injection(buf, &mut w, &mut r, &mut end);
                    break;
                }
                State::Boundary => {
                    self.insert_injection(buf, &mut w, &mut r, &mut end);
                    if r == end {
                        break;
                    }
                    let Some(h) = frame::parse_header(&buf[r..end]) else {
                        self.hold(&buf[r..end]);
                        break;
                    };
                    if let Err(why) = self.check(&h) {
                        self.seen.violation = Some(why);
                        self.state = State::Failed;
                        continue;
                    }
                    if h.is_control() {
                        let len = h.len + h.payload_len as usize;
                        if end - r < len {
                            self.hold(&buf[r..end]);
                            break;
                        }
                        if self.judge_control(&h, &buf[r + h.len..r + len]) {
                            move_down(buf, r..r + len, w);
                            w += len;
                        }
                        r += len;
                    } else {
                        if h.opcode != CONTINUATION {
                            self.in_message = !h.fin;
                        } else if h.fin {
                            self.in_message = false;
                        }
                        let keep = !self.sealed;
                        if keep {
                            move_down(buf, r..r + h.len, w);
                            w += h.len;
                        }
                        r += h.len;
                        self.state = State::Payload { left: h.payload_len, keep };
                    }
                }
            }
        }
        out..w
    }

    fn hold(&mut self, rest: &[u8]) {
        debug_assert!(rest.len() <= MAX_CONTROL_FRAME);
        if self.held.capacity() == 0 {
            self.held.reserve_exact(MAX_CONTROL_FRAME);
        }
        self.held.clear();
        self.held.extend_from_slice(rest);
    }

    /// Puts the queued frames at `w`, moving the unread bytes on if they are in the way.
    fn insert_injection(&mut self, buf: &mut [u8], w: &mut usize, r: &mut usize, end: &mut usize) {
        if self.inject.is_empty() {
            return;
        }
        let k = self.inject.len();
        if *r - *w < k {
            let shift = k - (*r - *w);
            buf.copy_within(*r..*end, *r + shift);
            *r += shift;
            *end += shift;
        }
        buf[*w..*w + k].copy_from_slice(&self.inject);
        *w += k;
        self.inject.clear();
        self.after_inject();
    }

    /// The rules of RFC 6455 section 5 that a header alone can break.
    fn check(&self, h: &Header) -> Result<(), &'static str> {
        if h.rsv != 0 && !self.extensions {
            return Err("reserved bits set without a negotiated extension");
        }
        if !matches!(h.opcode, CONTINUATION | TEXT | BINARY | CLOSE | PING | PONG) {
            return Err("reserved opcode");
        }
        if self.from_client && h.mask.is_none() {
            return Err("unmasked frame from the client");
        }
        if !self.from_client && h.mask.is_some() {
            return Err("masked frame from the backend");
        }
        if h.payload_len >> 63 != 0 {
            return Err("frame length over 2^63");
        }
        if h.is_control() {
            if !h.fin {
                return Err("fragmented control frame");
            }
            if h.payload_len > MAX_CONTROL_PAYLOAD as u64 {
                return Err("control frame over 125 bytes");
            }
            if h.opcode == CLOSE && h.payload_len == 1 {
                return Err("Close frame with a 1-byte payload");
            }
        } else if h.opcode == CONTINUATION && !self.in_message {
            return Err("continuation frame outside a fragmented message");
        } else if h.opcode != CONTINUATION && self.in_message {
            return Err("new message inside a fragmented message");
        }
        Ok(())
    }

    /// Notes a whole control frame; whether it goes on to the destination.
    fn judge_control(&mut self, h: &Header, payload: &[u8]) -> bool {
        let mut plain = [0u8; MAX_CONTROL_PAYLOAD];
        let plain = &mut plain[..payload.len()];
        plain.copy_from_slice(payload);
        if let Some(m) = h.mask {
            frame::apply_mask(plain, m);
        }
        match h.opcode {
            CLOSE => {
                self.seen.close = Some(frame::close_code(plain));
                let keep = !self.sealed && !self.close_passed && !self.swallow_close;
                self.close_passed |= keep;
                keep
            }
            PONG if self.own_ping.as_deref() == Some(plain) => {
                self.own_ping = None;
                self.seen.own_pong = true;
                false
            }
            _ => !self.sealed,
        }
    }
}

/// Moves `from` to start at `to` (≤ its start); nothing to do in the usual case, where
/// nothing was dropped before it.
fn move_down(buf: &mut [u8], from: Range<usize>, to: usize) {
    if from.start != to {
        buf.copy_within(from, to);
    }
}

#[cfg(test)]
mod tests {
    use super::super::frame::{write_close, write_control};
    use super::*;

    const MASK: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

    /// A data frame from a client (masked).
    fn data(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n < 65536 => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&MASK);
        let start = f.len();
        f.extend_from_slice(payload);
        frame::apply_mask(&mut f[start..], MASK);
        f
    }

    fn control(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        write_control(&mut f, opcode, payload, Some(MASK));
        f
    }

    /// Feeds `input` to `filter` in reads of `chunk` bytes; returns what went on.
    fn run(filter: &mut Filter, input: &[u8], chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in input.chunks(chunk.max(1)) {
            let mut buf = vec![0u8; HEADROOM + piece.len() + TAILROOM];
            buf[HEADROOM..HEADROOM + piece.len()].copy_from_slice(piece);
            let range = filter.scan(&mut buf, HEADROOM, HEADROOM + piece.len());
            out.extend_from_slice(&buf[range]);
        }
        out
    }

    #[test]
    fn valid_streams_pass_byte_for_byte_however_they_are_cut() {
        let fragmented = [
            data(TEXT, false, b"Hel"),
            control(PING, b"mid-message"),
            data(CONTINUATION, false, b"lo, "),
            control(PONG, b""),
            data(CONTINUATION, true, b"world"),
        ]
        .concat();
        let big = data(BINARY, true, &vec![7u8; 70_000]);
        let close = {
            let mut f = Vec::new();
            write_close(&mut f, 1000, "bye", Some(MASK));
            f
        };
        let streams: [(&str, Vec<u8>); 4] = [
            ("fragmented with control frames between", fragmented),
            ("64-bit length", big),
            ("empty frames", [data(TEXT, true, b""), data(BINARY, false, b""), data(CONTINUATION, true, b"")].concat()),
            ("close", close),
        ];
        for (what, stream) in &streams {
            for chunk in [1, 2, 3, 7, 64, 1000, usize::MAX] {
                let mut f = Filter::new(true, false);
                let out = run(&mut f, stream, chunk.min(stream.len()));
                assert_eq!(&out, stream, "{what}, reads of {chunk}");
                assert_eq!(f.seen.violation, None, "{what}");
            }
        }
    }

    #[test]
    fn framing_violations_are_caught_before_the_bad_frame_goes_on() {
        let ok = data(TEXT, true, b"fine");
        for (what, bad, from_client, want) in [
            ("unmasked client frame", vec![0x81, 0x01, b'x'], true, "unmasked frame from the client"),
            ("masked backend frame", data(TEXT, true, b"x"), false, "masked frame from the backend"),
            ("reserved opcode 3", data(0x3, true, b"x"), true, "reserved opcode"),
            ("reserved opcode 0xB", control(0xB, b""), true, "reserved opcode"),
            (
                "RSV1 without extension",
                {
                    let mut f = data(TEXT, true, b"x");
                    f[0] |= 0x40;
                    f
                },
                true,
                "reserved bits set without a negotiated extension",
            ),
            (
                "fragmented ping",
                {
                    let mut f = control(PING, b"x");
                    f[0] &= 0x7F;
                    f
                },
                true,
                "fragmented control frame",
            ),
            (
                "ping of 126 bytes",
                {
                    let mut f = vec![0x89, 0x80 | 126, 0, 126];
                    f.extend_from_slice(&MASK);
                    f.extend_from_slice(&[0; 126]);
                    f
                },
                true,
                "control frame over 125 bytes",
            ),
            ("close with 1 byte", control(CLOSE, b"x"), true, "Close frame with a 1-byte payload"),
            (
                "lone continuation",
                data(CONTINUATION, true, b"x"),
                true,
                "continuation frame outside a fragmented message",
            ),
            ("text inside a message", data(TEXT, true, b"b"), true, "new message inside a fragmented message"),
            (
                "length top bit",
                {
                    let mut f = vec![0x82, 0x80 | 127];
                    f.extend_from_slice(&u64::MAX.to_be_bytes());
                    f.extend_from_slice(&MASK);
                    f
                },
                true,
                "frame length over 2^63",
            ),
        ] {
            let first = match (from_client, what) {
                (true, "text inside a message") => data(TEXT, false, b"a"),
                (true, _) => ok.clone(),
                (false, _) => vec![0x81, 0x04, b'f', b'i', b'n', b'e'],
            };
            let stream = [first.clone(), bad.clone(), first.clone()].concat();
            for chunk in [1, 5, usize::MAX] {
                let mut f = Filter::new(from_client, false);
                let out = run(&mut f, &stream, chunk.min(stream.len()));
                assert_eq!(f.seen.violation, Some(want), "{what}, reads of {chunk}");
                assert!(
                    out.len() <= stream.len() - bad.len() - first.len(),
                    "{what}: nothing after the bad frame goes on"
                );
                assert!(out.starts_with(&first), "{what}: what came before goes on");
            }
        }
    }

    #[test]
    fn reserved_bits_pass_when_an_extension_was_negotiated() {
        let mut f = data(BINARY, true, b"deflated");
        f[0] |= 0x40;
        let mut filter = Filter::new(true, true);
        assert_eq!(run(&mut filter, &f, usize::MAX), f);
        assert_eq!(filter.seen.violation, None);
    }

    #[test]
    fn the_proxys_frames_go_in_between_frames_never_inside_one() {
        let a = data(BINARY, true, &[1u8; 300]);
        let b = data(TEXT, true, b"next");
        let stream = [a.clone(), b.clone()].concat();
        let ping = control(PING, b"sidecar");
        for chunk in [1, 10, 299, usize::MAX] {
            let mut f = Filter::new(true, false);
            // Queued while the stream is inside the first frame.
            let mut out = run(&mut f, &stream[..100], chunk.min(100));
            f.queue(&ping, false);
            assert_eq!(f.take_injection(), None, "mid-frame: nothing goes now");
            out.extend(run(&mut f, &stream[100..], chunk.min(stream.len() - 100)));
            assert_eq!(out, [a.clone(), ping.clone(), b.clone()].concat(), "reads of {chunk}");
        }
        // Between frames with a quiet source, the frame goes at once.
        let mut f = Filter::new(true, false);
        run(&mut f, &a, usize::MAX);
        f.queue(&ping, false);
        assert_eq!(f.take_injection(), Some(ping.clone()));
    }

    #[test]
    fn after_the_proxys_close_the_source_is_dropped_but_its_close_is_seen() {
        let mut close = Vec::new();
        write_close(&mut close, 1001, "going away", Some(MASK));
        let mut reply = Vec::new();
        write_close(&mut reply, 1001, "", Some(MASK));
        let mut f = Filter::new(true, false);
        f.queue(&close, true);
        assert!(f.close_passed());
        let out = run(&mut f, &[data(TEXT, true, b"late"), reply].concat(), 3);
        assert_eq!(out, close, "only the proxy's Close goes on");
        assert_eq!(f.seen.close, Some(Some(1001)));
        f.queue(&control(PING, b"x"), false);
        assert_eq!(f.take_injection(), None, "nothing after a Close");
    }

    #[test]
    fn the_pong_to_the_proxys_ping_is_dropped_other_pongs_pass() {
        let mine = control(PONG, b"sidecar-12345678");
        let theirs = control(PONG, b"app");
        for chunk in [1, 4, usize::MAX] {
            let mut f = Filter::new(true, false);
            f.expect_pong(b"sidecar-12345678");
            let out = run(&mut f, &[theirs.clone(), mine.clone(), mine.clone()].concat(), chunk);
            assert_eq!(out, [theirs.clone(), mine.clone()].concat(), "reads of {chunk}: a second copy is not ours");
            assert!(f.seen.own_pong);
        }
    }

    #[test]
    fn a_peers_close_goes_on_once() {
        let mut close = Vec::new();
        write_close(&mut close, 1000, "", None);
        let mut f = Filter::new(false, false);
        assert_eq!(run(&mut f, &close, usize::MAX), close);
        assert!(f.close_passed());
        assert_eq!(f.seen.close, Some(Some(1000)));
    }
}
