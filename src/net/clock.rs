//! Coarse deadlines for the request path. An `async_io::Timer` costs two syscalls each
//! time one is armed (the reactor is notified through an eventfd), and a proxy arms one
//! for nearly every read. A worker instead keeps its pending deadlines in a thread-local
//! table that one ticker task scans every `TICK`; arming a deadline is a table insert.
//! Deadlines therefore fire up to one tick late, which is fine for timeouts measured in
//! hundreds of milliseconds or more. A thread without a ticker (tests, the demo's
//! replicas) falls back to `async_io::Timer`.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use async_io::Timer;

/// How often the ticker looks for expired deadlines.
pub const TICK: Duration = Duration::from_millis(25);

#[derive(Default)]
struct Table {
    slots: Vec<Option<(Instant, Waker)>>,
    free: Vec<usize>,
}

thread_local! {
    static TABLE: RefCell<Table> = RefCell::new(Table::default());
    static TICKING: Cell<bool> = const { Cell::new(false) };
}

/// The ticker of the current thread; spawn it once on the worker's executor.
pub async fn run_ticker() {
    TICKING.with(|t| t.set(true));
    let mut expired = Vec::new();
    loop {
        Timer::after(TICK).await;
        let now = Instant::now();
        TABLE.with(|t| {
            for (deadline, waker) in t.borrow().slots.iter().flatten() {
                if *deadline <= now {
                    expired.push(waker.clone());
                }
            }
        });
        // Wake outside the borrow: a woken future may register again.
        for w in expired.drain(..) {
            w.wake();
        }
    }
}

/// A future that completes at `deadline`.
pub struct Sleep {
    deadline: Instant,
    inner: Inner,
}

enum Inner {
    Table(Option<usize>),
    Timer(Timer),
}

pub fn sleep(limit: Duration) -> Sleep {
    let deadline = Instant::now() + limit;
    let inner = if TICKING.with(Cell::get) { Inner::Table(None) } else { Inner::Timer(Timer::at(deadline)) };
    Sleep { deadline, inner }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = self.deadline;
        match &mut self.inner {
            Inner::Timer(t) => Pin::new(t).poll(cx).map(|_| ()),
            Inner::Table(slot) => {
                if Instant::now() >= deadline {
                    return Poll::Ready(());
                }
                TABLE.with(|t| {
                    let mut t = t.borrow_mut();
                    let entry = Some((deadline, cx.waker().clone()));
                    match *slot {
                        Some(i) => t.slots[i] = entry,
                        None => {
                            let i = match t.free.pop() {
                                Some(i) => {
                                    t.slots[i] = entry;
                                    i
                                }
                                None => {
                                    t.slots.push(entry);
                                    t.slots.len() - 1
                                }
                            };
                            *slot = Some(i);
                        }
                    }
                });
                Poll::Pending
            }
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Inner::Table(Some(i)) = self.inner {
            // `try_with`: a task dropped while the thread exits may outlive the table.
            let _ = TABLE.try_with(|t| {
                let mut t = t.borrow_mut();
                t.slots[i] = None;
                t.free.push(i);
            });
        }
    }
}
