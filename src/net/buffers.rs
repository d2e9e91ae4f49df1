//! Read buffers and what they cost: `Counted`, a connection's buffer counted in
//! process-wide gauges while it holds memory; the per-worker pool of released
//! first-size buffers, which shrinks when the worker is quiet; and the gauges
//! `/metrics` exports (`sidecar_buffer_bytes`, `sidecar_buffer_pool_bytes`).
//!
//! A connection borrows a buffer only while bytes move: an idle keep-alive
//! connection, a pooled backend connection and an idle tunnel hold none, so these
//! gauges fall back to the pools' size when traffic stops.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};

/// Bytes in buffers owned by connections and tunnels right now.
static HELD: AtomicI64 = AtomicI64::new(0);
/// Bytes in buffers kept by the workers for reuse (pools and each worker's tunnel
/// read buffer).
static POOLED: AtomicI64 = AtomicI64::new(0);

/// Bytes held by connections and tunnels.
pub fn held_bytes() -> i64 {
    HELD.load(Relaxed)
}

/// Bytes kept by the workers for reuse.
pub fn pooled_bytes() -> i64 {
    POOLED.load(Relaxed)
}

/// Counts a worker's own long-lived buffer (the tunnels' shared read buffer, the TLS
/// scratch buffers) as pooled.
pub fn count_pooled(bytes: usize) {
    POOLED.fetch_add(bytes as i64, Relaxed);
}

/// A buffer a worker's connections share, one call at a time (a thread-local `slot`).
pub type WorkerBuffer = std::thread::LocalKey<std::cell::Cell<Vec<u8>>>;

/// Lends the worker's buffer in `slot` to `f`, made or grown (zeroed, counted as
/// pooled) to at least `len` bytes. It is taken out for the call and put back, so it
/// is never lent twice: a call nested in `f` would get a new one.
pub fn with_worker_buffer<R>(slot: &'static WorkerBuffer, len: usize, f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    let mut buf = slot.with(std::cell::Cell::take);
    if buf.len() < len {
        let before = buf.capacity();
        buf.resize(len, 0);
        count_pooled(buf.capacity() - before);
    }
    let result = f(&mut buf);
    slot.with(|s| s.set(buf));
    result
}

/// A buffer counted in `held_bytes` for its capacity, from allocation to drop.
#[derive(Default)]
pub struct Counted(Vec<u8>);

impl Counted {
    /// Puts `buf` in, returning what was there; the gauge follows the capacities.
    pub fn replace(&mut self, buf: Vec<u8>) -> Vec<u8> {
        adjust(buf.capacity(), self.0.capacity());
        std::mem::replace(&mut self.0, buf)
    }

    /// `Vec::resize` with zeros, counted.
    pub fn resize(&mut self, len: usize) {
        let before = self.0.capacity();
        self.0.resize(len, 0);
        adjust(self.0.capacity(), before);
    }

    /// Takes the buffer out, leaving none.
    pub fn take(&mut self) -> Vec<u8> {
        self.replace(Vec::new())
    }

    /// `Vec::extend_from_slice`, counted.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        let before = self.0.capacity();
        self.0.extend_from_slice(bytes);
        adjust(self.0.capacity(), before);
    }
}

fn adjust(now: usize, before: usize) {
    if now != before {
        HELD.fetch_add(now as i64 - before as i64, Relaxed);
    }
}

impl Deref for Counted {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl DerefMut for Counted {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        adjust(0, self.0.capacity());
    }
}

/// Released connection buffers, kept per worker thread for the next request: those
/// of the first size (`SPARE_BYTES`), which a keep-alive request takes and gives back
/// instead of allocating and zeroing 4 KiB, and those of the worker's large body reads
/// (`LargeRead`). Bounded (`KEPT`, `LARGE_READS`), and `trim` frees what went unused
/// since the last call, so a burst leaves nothing behind.
pub mod spare {
    use std::cell::Cell;

    use super::*;
    use crate::rt::FreeList;

    /// The size of the buffers kept: a connection's first buffer.
    pub const SPARE_BYTES: usize = 4 * 1024;
    /// At most this many buffers wait (256 KiB per worker).
    const KEPT: usize = 64;
    /// Bytes a body relayed as it came in reads at a time when its worker can spare the
    /// buffer: a 64 KiB body then takes one read and one write instead of four of each.
    pub const LARGE_READ_BYTES: usize = 64 * 1024;
    /// At most this many connections of a worker hold a `LARGE_READ_BYTES` buffer at
    /// once (a bound for `sidecar check`'s worst case); the others read `READ_BYTES` at
    /// a time. The buffers kept for the next body are taken first, so those lent and
    /// those kept are never more than this together.
    pub const LARGE_READS: usize = 16;

    thread_local! {
        static SPARE: FreeList<Vec<u8>> = const { FreeList::new(KEPT) };
        static LARGE: FreeList<Vec<u8>> = const { FreeList::new(LARGE_READS) };
        /// Large reads lent now.
        static LARGE_IN_USE: Cell<usize> = const { Cell::new(0) };
    }

    /// One of the worker's `LARGE_READS`: lent with its buffer, given back when dropped.
    pub struct LargeRead(());

    impl LargeRead {
        /// A large read and its buffer (one kept, already zeroed, or a new one), if the
        /// worker has one to spare.
        pub fn lend() -> Option<(LargeRead, Vec<u8>)> {
            LARGE_IN_USE.with(|n| {
                if n.get() >= LARGE_READS {
                    return None;
                }
                n.set(n.get() + 1);
                let buf = match LARGE.try_with(FreeList::take).ok().flatten() {
                    Some(buf) => {
                        POOLED.fetch_sub(LARGE_READ_BYTES as i64, Relaxed);
                        buf
                    }
                    None => vec![0; LARGE_READ_BYTES],
                };
                Some((LargeRead(()), buf))
            })
        }

        /// Gives the read back, and its buffer to be kept for the next one.
        pub fn give_back(self, buf: Vec<u8>) {
            keep(buf, LARGE_READ_BYTES, &LARGE);
        }
    }

    impl Drop for LargeRead {
        fn drop(&mut self) {
            let _ = LARGE_IN_USE.try_with(|n| n.set(n.get() - 1));
        }
    }

    /// A buffer with its first size already zeroed, or an empty one.
    pub fn take() -> Vec<u8> {
        match SPARE.try_with(FreeList::take).ok().flatten() {
            Some(buf) => {
                POOLED.fetch_sub(SPARE_BYTES as i64, Relaxed);
                buf
            }
            None => Vec::new(),
        }
    }

    /// Keeps `buf` for `take` if it has the first size; frees it otherwise.
    pub fn give(buf: Vec<u8>) {
        keep(buf, SPARE_BYTES, &SPARE);
    }

    fn keep(buf: Vec<u8>, size: usize, list: &'static std::thread::LocalKey<FreeList<Vec<u8>>>) {
        if buf.len() == size && buf.capacity() == size && list.try_with(|s| s.give(buf)) == Ok(true) {
            POOLED.fetch_add(size as i64, Relaxed);
        }
    }

    /// Frees the buffers that waited unused since the last call (the pool's low-water
    /// mark): a steady load keeps what it uses, a quiet worker ends with none.
    pub fn trim() {
        if let Ok(freed) = SPARE.try_with(FreeList::trim) {
            POOLED.fetch_sub((freed * SPARE_BYTES) as i64, Relaxed);
        }
        if let Ok(freed) = LARGE.try_with(FreeList::trim) {
            POOLED.fetch_sub((freed * LARGE_READ_BYTES) as i64, Relaxed);
        }
    }

    /// Buffers waiting on this thread.
    #[cfg(test)]
    pub fn len() -> usize {
        SPARE.with(FreeList::len)
    }

    /// Large buffers waiting on this thread.
    #[cfg(test)]
    pub fn large_len() -> usize {
        LARGE.with(FreeList::len)
    }

    /// Large reads lent on this thread.
    #[cfg(test)]
    pub fn large_in_use() -> usize {
        LARGE_IN_USE.with(Cell::get)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_shrinks_to_what_was_used_between_two_trims() {
        // On a thread of its own: the pool and its low-water mark are per thread.
        std::thread::spawn(|| {
            let first = || vec![0u8; spare::SPARE_BYTES];
            for _ in 0..10 {
                spare::give(first());
            }
            spare::give(vec![0u8; 100]);
            assert_eq!(spare::len(), 10, "only first-size buffers are kept");
            spare::trim();
            // Nothing was taken since the pool was (empty) at its last trim: the mark
            // starts at 0, so the first trim keeps everything given since.
            assert_eq!(spare::len(), 10);
            // Three in use at the busiest moment of the next period: seven were idle.
            let taken: Vec<_> = (0..3).map(|_| spare::take()).collect();
            taken.into_iter().for_each(spare::give);
            spare::trim();
            assert_eq!(spare::len(), 3);
            // A quiet period frees the rest.
            spare::trim();
            assert_eq!(spare::len(), 0);
            assert!(spare::take().is_empty(), "an empty pool hands out an empty buffer");
        })
        .join()
        .expect("pool thread");
    }

    #[test]
    fn a_worker_lends_at_most_its_large_reads_and_gets_them_back() {
        use spare::{LargeRead, LARGE_READS};
        // A thread of its own: the count is per worker thread.
        std::thread::spawn(|| {
            let mut lent: Vec<_> = (0..LARGE_READS).map(|_| LargeRead::lend()).collect();
            assert!(lent.iter().all(Option::is_some), "{LARGE_READS} to lend");
            assert!(LargeRead::lend().is_none(), "all lent");
            lent.pop();
            assert!(LargeRead::lend().is_some(), "one given back is lent again");
            lent.clear();
            assert_eq!(spare::large_in_use(), 0, "every one given back");
        })
        .join()
        .expect("test thread");
    }

    #[test]
    fn large_buffers_are_kept_up_to_the_large_reads_and_trimmed_alike() {
        use spare::{LargeRead, LARGE_READS, LARGE_READ_BYTES};
        std::thread::spawn(|| {
            let lent: Vec<_> = (0..LARGE_READS).filter_map(|_| LargeRead::lend()).collect();
            for (read, _) in lent {
                read.give_back(vec![7u8; LARGE_READ_BYTES]);
            }
            assert_eq!(spare::large_len(), LARGE_READS, "every one kept, up to the worker's large reads");
            let (read, _) = LargeRead::lend().expect("a read to lend");
            read.give_back(vec![0u8; spare::SPARE_BYTES]);
            assert_eq!(spare::large_len(), LARGE_READS - 1, "of the large size only");
            let (read, buf) = LargeRead::lend().expect("a read to lend");
            assert_eq!(buf, vec![7u8; LARGE_READ_BYTES], "a kept buffer is lent");
            read.give_back(buf);
            spare::trim();
            spare::trim();
            assert_eq!(spare::large_len(), 0, "a quiet period frees them");
            let (_, buf) = LargeRead::lend().expect("a read to lend");
            assert_eq!(buf.len(), LARGE_READ_BYTES, "an empty pool makes a new one");
        })
        .join()
        .expect("pool thread");
    }

    #[test]
    fn a_counted_buffer_is_in_the_gauge_until_dropped() {
        // Other tests move the process-wide gauge too: compare with a large margin.
        let before = held_bytes();
        let mut b = Counted::default();
        b.resize(1 << 20);
        assert!(held_bytes() - before >= (1 << 20) - (64 << 10), "grown");
        let v = b.take();
        assert!(held_bytes() - before < (1 << 20) - (64 << 10), "taken out");
        b.replace(v);
        assert!(held_bytes() - before >= (1 << 20) - (64 << 10), "put back");
        drop(b);
        assert!(held_bytes() - before < (1 << 20) - (64 << 10), "dropped");
    }
}
