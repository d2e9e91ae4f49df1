//! The way access lines reach stdout without a worker ever waiting for it: workers
//! write finished lines into one shared text buffer, one writer thread takes the whole
//! buffer (swapping in the one it wrote last) and writes it out. When stdout stalls (a
//! log shipper that stopped reading, a full pipe) the lines waiting reach a bound and
//! further lines are dropped, counted in `sidecar_access_log_dropped_total`, and a
//! warning says so, throttled. Losing log lines is the lesser harm: the alternative is
//! every worker blocked on the stdout lock and no request served at all.
//!
//! Lines are written straight into the shared buffer, so a line costs no allocation,
//! however far the writer lags: the buffers only grow, by doubling, when more lines
//! wait at once than ever before, and go back to a small size once written.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Lines held while stdout is slow (waiting, or being written): about 1 MiB at 250
/// bytes a line, a tenth of a second of a busy proxy's lines, long enough to ride out
/// a reader's hiccup.
const QUEUE_LINES: u64 = 4096;
/// A buffer that grew past this for a burst of lines is made this small again once
/// written.
const KEPT_BYTES: usize = 64 * 1024;

pub struct AccessQueue {
    dropped: Arc<AtomicU64>,
    /// The writer thread and what it shares with the workers, started with the first
    /// line: a sidecar that has logged nothing yet (`access_log = "off"`, or no
    /// request so far) holds neither. `None` if the thread could not start.
    writer: OnceLock<Option<Arc<Shared>>>,
}

/// What the workers and the writer thread share.
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Lines are waiting (for the writer).
    waiting: Condvar,
    /// A batch was written (for `flush`).
    written: Condvar,
}

#[derive(Default)]
struct State {
    /// Lines not yet taken by the writer, each ending in a newline.
    pending: String,
    /// Lines queued and not yet written (in `pending` or in the writer's hands).
    held: u64,
    /// Bytes ever queued, and ever written: `flush` waits for the second to reach
    /// what the first was when it was called.
    queued_bytes: u64,
    written_bytes: u64,
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.state.lock().unwrap_or_else(|e| e.into_inner())
}

impl AccessQueue {
    /// `dropped` counts lines that found the queue full.
    pub fn new(dropped: Arc<AtomicU64>) -> AccessQueue {
        AccessQueue { dropped, writer: OnceLock::new() }
    }

    fn shared(&self) -> Option<&Arc<Shared>> {
        self.writer
            .get_or_init(|| {
                let shared = Arc::new(Shared::default());
                let theirs = Arc::clone(&shared);
                let spawned =
                    std::thread::Builder::new().name("sidecar-access-log".into()).spawn(move || write_lines(&theirs));
                match spawned {
                    Ok(_) => Some(shared),
                    Err(e) => {
                        // Every line is then dropped and counted: nothing would write it.
                        log::error!("cannot start the access log writer: {e}");
                        None
                    }
                }
            })
            .as_ref()
    }

    /// Queues the line `write` appends (without its newline) to the text it is given;
    /// `write` returning false queues nothing. Drops the line when the queue is full.
    pub fn push_with(&self, write: impl FnOnce(&mut String) -> bool) {
        let queued = self.shared().and_then(|shared| {
            let mut state = lock(shared);
            if state.held >= QUEUE_LINES {
                return None;
            }
            let start = state.pending.len();
            if !write(&mut state.pending) {
                state.pending.truncate(start);
                return Some(());
            }
            state.pending.push('\n');
            state.held += 1;
            state.queued_bytes += (state.pending.len() - start) as u64;
            if start == 0 {
                shared.waiting.notify_one();
            }
            Some(())
        });
        if queued.is_none() {
            self.dropped.fetch_add(1, Relaxed);
            crate::throttle::warn(
                "access log lines dropped: stdout is not taking them (counted in sidecar_access_log_dropped_total)",
            );
        }
    }

    /// Waits at most `limit` for every queued line to be written (before exit).
    pub fn flush(&self, limit: Duration) {
        let Some(Some(shared)) = self.writer.get() else { return };
        let end = Instant::now() + limit;
        let mut state = lock(shared);
        let target = state.queued_bytes;
        while state.written_bytes < target {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            state = shared.written.wait_timeout(state, left).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

/// The writer thread: takes every line waiting at once, writes them in order, and
/// gives its emptied buffer to the workers for the next lines.
fn write_lines(shared: &Shared) {
    let mut batch = String::new();
    loop {
        let lines = {
            let mut state = lock(shared);
            while state.pending.is_empty() {
                state = shared.waiting.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            std::mem::swap(&mut state.pending, &mut batch);
            // The lines held are the batch's: the last batch's were let go when written.
            state.held
        };
        // A failed write (stdout closed) loses these lines, as it would lose any.
        let _ = std::io::stdout().lock().write_all(batch.as_bytes());
        let bytes = batch.len() as u64;
        batch.clear();
        if batch.capacity() > KEPT_BYTES {
            batch.shrink_to(KEPT_BYTES);
        }
        let mut state = lock(shared);
        // Lines queued since the swap stay held.
        state.held -= lines;
        state.written_bytes += bytes;
        shared.written.notify_all();
    }
}
