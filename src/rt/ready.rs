//! What the kernel last said one registered socket can do, kept as flags so a read or
//! a write is attempted only when it can make progress. Sockets are registered
//! edge-triggered: the kernel reports a change once, so a flag stays set until a
//! syscall shows the socket drained (EAGAIN, or a short read/write) and is set again by
//! the next edge. End-of-file and errors are sticky: once seen, every later call
//! returns at once, so they never clear the flag they set.

use std::io;

use rustix::event::epoll::EventFlags;

#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Ready(u8);

impl Ready {
    pub const EMPTY: Ready = Ready(0);
    pub const READABLE: Ready = Ready(1);
    pub const WRITABLE: Ready = Ready(2);
    /// The peer closed its write half: reads return end-of-file without blocking.
    pub const READ_CLOSED: Ready = Ready(4);
    /// The connection is gone both ways (EPOLLHUP).
    pub const WRITE_CLOSED: Ready = Ready(8);
    pub const ERROR: Ready = Ready(16);

    pub const fn contains(self, other: Ready) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn intersects(self, other: Ready) -> bool {
        self.0 & other.0 != 0
    }

    #[must_use]
    pub const fn with(self, other: Ready) -> Ready {
        Ready(self.0 | other.0)
    }

    #[must_use]
    pub const fn without(self, other: Ready) -> Ready {
        Ready(self.0 & !other.0)
    }

    /// The flags an epoll event sets. A hang-up or an error makes both directions
    /// "ready": the next call reports it instead of waiting for an edge that never comes.
    pub fn from_epoll(flags: EventFlags) -> Ready {
        let mut r = Ready::EMPTY;
        if flags.intersects(EventFlags::IN | EventFlags::PRI) {
            r = r.with(Ready::READABLE);
        }
        if flags.contains(EventFlags::OUT) {
            r = r.with(Ready::WRITABLE);
        }
        if flags.contains(EventFlags::RDHUP) {
            r = r.with(Ready::READABLE).with(Ready::READ_CLOSED);
        }
        if flags.contains(EventFlags::HUP) {
            r = r.with(Ready(Ready::READABLE.0 | Ready::WRITABLE.0 | Ready::READ_CLOSED.0 | Ready::WRITE_CLOSED.0));
        }
        if flags.contains(EventFlags::ERR) {
            r = r.with(Ready(Ready::READABLE.0 | Ready::WRITABLE.0 | Ready::ERROR.0));
        }
        r
    }

    /// The flags after a read of `asked` bytes returned `result`. A short read emptied
    /// the receive queue (bytes that arrive later raise a new edge), so the next read
    /// waits for that edge instead of returning EAGAIN.
    #[must_use]
    pub fn after_read(self, result: &io::Result<usize>, asked: usize) -> Ready {
        let drained = match result {
            Ok(n) => *n > 0 && *n < asked,
            Err(e) => e.kind() == io::ErrorKind::WouldBlock,
        };
        if drained && !self.intersects(Ready::READ_CLOSED.with(Ready::ERROR)) {
            self.without(Ready::READABLE)
        } else {
            self
        }
    }

    /// The flags after a write of `offered` bytes returned `result`: a short write
    /// filled the send buffer, and the edge that frees it sets the flag again.
    #[must_use]
    pub fn after_write(self, result: &io::Result<usize>, offered: usize) -> Ready {
        let full = match result {
            Ok(n) => *n < offered,
            Err(e) => e.kind() == io::ErrorKind::WouldBlock,
        };
        if full && !self.intersects(Ready::WRITE_CLOSED.with(Ready::ERROR)) {
            self.without(Ready::WRITABLE)
        } else {
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn would_block() -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }

    #[test]
    fn epoll_flags_map_to_readiness() {
        let rw = Ready::READABLE.with(Ready::WRITABLE);
        let cases: &[(EventFlags, Ready)] = &[
            (EventFlags::empty(), Ready::EMPTY),
            (EventFlags::IN, Ready::READABLE),
            (EventFlags::OUT, Ready::WRITABLE),
            (EventFlags::IN | EventFlags::OUT, rw),
            (EventFlags::IN | EventFlags::RDHUP, Ready::READABLE.with(Ready::READ_CLOSED)),
            (EventFlags::HUP, rw.with(Ready::READ_CLOSED).with(Ready::WRITE_CLOSED)),
            (EventFlags::ERR, rw.with(Ready::ERROR)),
        ];
        for (flags, want) in cases {
            assert_eq!(Ready::from_epoll(*flags), *want, "{flags:?}");
        }
    }

    #[test]
    fn reads_clear_the_flag_only_when_the_queue_is_drained() {
        let r = Ready::READABLE.with(Ready::WRITABLE);
        let cases: &[(io::Result<usize>, usize, bool)] = &[
            (Ok(4096), 4096, true),                                   // a full read: more may wait
            (Ok(100), 4096, false),                                   // short: drained
            (Ok(0), 4096, true),                                      // end-of-file stays readable
            (would_block(), 4096, false),                             // EAGAIN
            (Err(io::ErrorKind::ConnectionReset.into()), 4096, true), // errors are reported again
            (Err(io::ErrorKind::Interrupted.into()), 4096, true),
        ];
        for (result, asked, readable) in cases {
            let after = r.after_read(result, *asked);
            assert_eq!(after.contains(Ready::READABLE), *readable, "{result:?} of {asked}");
            assert!(after.contains(Ready::WRITABLE), "a read never touches the write flag");
        }
    }

    #[test]
    fn end_of_file_and_errors_are_sticky() {
        for sticky in [Ready::READ_CLOSED, Ready::ERROR] {
            let r = Ready::READABLE.with(sticky);
            assert!(r.after_read(&Ok(10), 4096).contains(Ready::READABLE));
            assert!(r.after_read(&would_block(), 4096).contains(Ready::READABLE));
        }
        let w = Ready::WRITABLE.with(Ready::WRITE_CLOSED);
        assert!(w.after_write(&would_block(), 10).contains(Ready::WRITABLE));
    }

    #[test]
    fn writes_clear_the_flag_when_the_buffer_fills() {
        let w = Ready::WRITABLE;
        assert!(w.after_write(&Ok(10), 10).contains(Ready::WRITABLE));
        assert!(!w.after_write(&Ok(3), 10).contains(Ready::WRITABLE));
        assert!(!w.after_write(&would_block(), 10).contains(Ready::WRITABLE));
        assert!(w.after_write(&Err(io::ErrorKind::BrokenPipe.into()), 10).contains(Ready::WRITABLE));
    }
}
