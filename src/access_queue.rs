//! The way access lines reach stdout without a worker ever waiting for it: workers put
//! finished lines in a bounded queue, one writer thread writes them out. When stdout
//! stalls (a log shipper that stopped reading, a full pipe) the queue fills and further
//! lines are dropped, counted in `sidecar_access_log_dropped_total`, and a warning says
//! so, throttled. Losing log lines is the lesser harm: the alternative is every worker
//! blocked on the stdout lock and no request served at all.
//!
//! The writer hands each written line's buffer back (`line_buffer`), so a worker
//! writes its next line into memory it used before instead of allocating it.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Lines held while stdout is slow: about 1 MiB at 250 bytes a line, a tenth of a
/// second of a busy proxy's lines, long enough to ride out a reader's hiccup.
const QUEUE_LINES: usize = 4096;
/// Written lines' buffers waiting to be reused: enough for every worker's next few
/// lines (64 KiB at 256 bytes a line).
const SPARE_LINES: usize = 256;
/// A buffer that grew past this for one long line is freed, not kept.
const SPARE_LINE_BYTES: usize = 4096;

enum Item {
    Line(String),
    /// Answered once every line queued before it is written and flushed.
    Flush(SyncSender<()>),
}

pub struct AccessQueue {
    dropped: Arc<AtomicU64>,
    /// The writer thread and its queue, started with the first line: a sidecar that
    /// has logged nothing yet (`access_log = "off"`, or no request so far) holds
    /// neither the thread nor the queue's slots (128 KiB, all written when made).
    writer: OnceLock<Writer>,
}

struct Writer {
    tx: SyncSender<Item>,
    /// Buffers of written lines, from the writer back to the workers.
    spare: async_channel::Receiver<String>,
}

impl AccessQueue {
    /// `dropped` counts lines that found the queue full.
    pub fn new(dropped: Arc<AtomicU64>) -> AccessQueue {
        AccessQueue { dropped, writer: OnceLock::new() }
    }

    fn writer(&self) -> &Writer {
        self.writer.get_or_init(|| {
            let (tx, rx) = sync_channel(QUEUE_LINES);
            let (spare_tx, spare) = async_channel::bounded(SPARE_LINES);
            let spawned = std::thread::Builder::new()
                .name("sidecar-access-log".into())
                .spawn(move || write_lines(&rx, &spare_tx));
            if let Err(e) = spawned {
                // Without the thread every line finds the queue full and is counted.
                log::error!("cannot start the access log writer: {e}");
            }
            Writer { tx, spare }
        })
    }

    /// An empty buffer to write a line into: a written line's, or a new one.
    pub fn line_buffer(&self) -> String {
        self.writer().spare.try_recv().unwrap_or_default()
    }

    /// Queues one line (without its newline); drops it when the queue is full.
    pub fn push(&self, line: String) {
        match self.writer().tx.try_send(Item::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Relaxed);
                crate::throttle::warn(
                    "access log lines dropped: stdout is not taking them (counted in sidecar_access_log_dropped_total)",
                );
            }
        }
    }

    /// Waits at most `limit` for every queued line to be written (before exit).
    pub fn flush(&self, limit: Duration) {
        let Some(writer) = self.writer.get() else { return };
        let end = Instant::now() + limit;
        let (ack_tx, ack_rx) = sync_channel(1);
        let mut item = Item::Flush(ack_tx);
        loop {
            match writer.tx.try_send(item) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return,
                Err(TrySendError::Full(back)) if Instant::now() < end => {
                    item = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(TrySendError::Full(_)) => return,
            }
        }
        let _ = ack_rx.recv_timeout(end.saturating_duration_since(Instant::now()));
    }
}

/// The writer thread: lines in order, flushed whenever the queue runs empty. Each
/// line's buffer goes back to the workers once written.
fn write_lines(rx: &Receiver<Item>, spare: &async_channel::Sender<String>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
    loop {
        let item = match rx.try_recv() {
            Ok(item) => item,
            Err(_) => {
                let _ = out.flush();
                match rx.recv() {
                    Ok(item) => item,
                    Err(_) => return,
                }
            }
        };
        match item {
            Item::Line(mut line) => {
                let _ = out.write_all(line.as_bytes());
                let _ = out.write_all(b"\n");
                if line.capacity() <= SPARE_LINE_BYTES {
                    line.clear();
                    let _ = spare.try_send(line);
                }
            }
            Item::Flush(ack) => {
                let _ = out.flush();
                let _ = ack.try_send(());
            }
        }
    }
}
