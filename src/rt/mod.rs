//! The per-worker runtime that runs the request path: one thread, one epoll instance,
//! one run queue, no helper thread.
//!
//! - Sockets are registered once, edge-triggered, for reading and writing (`io.rs`).
//!   Each keeps what the kernel last reported as flags (`ready.rs`), so a read or a
//!   write is tried only when it can make progress and then repeated until the socket
//!   is drained: no EAGAIN reads, no per-wait `epoll_ctl`.
//! - Tasks are `async-task` tasks on a thread-local queue. A waker used on the
//!   worker's own thread (every wake-up on the request path) pushes onto that queue;
//!   one used from another thread (a config reload, the drain signal, a hostname
//!   resolved on the `blocking` pool) goes through a locked queue and an eventfd that
//!   ends the worker's wait.
//! - Deadlines live in a table (`timers.rs`) whose earliest entry is the wait's
//!   timeout: an idle worker sleeps in `epoll_wait` until its next deadline.
//! - The clock is read once per wake-up (`now`).
//! - What a request needs for its duration (the box its future runs in, the buffers it
//!   parses and writes into) is reused from the worker's last requests (`reuse.rs`).
//!
//! The poller is rustix's epoll, the same calls the `polling` crate makes: `polling`
//! re-arms a timerfd and its notifier with two `epoll_ctl` calls, a `timerfd_settime`
//! and an eventfd `read` on every wait (four syscalls that buy nothing here), and its
//! `add` is an `unsafe fn`, which this crate forbids. Linux only, like SO_REUSEPORT
//! spreading.
//!
//! async-io, async-executor and blocking remain where nothing is on the request path:
//! the demo's built-in replicas, hostname resolution (getaddrinfo blocks, so it runs on
//! the `blocking` crate's pool) and the integration tests' clients.

mod io;
mod ready;
mod reuse;
mod signal;
pub(crate) mod timers;

pub use io::{connect, Io};
pub use ready::Ready;
pub use reuse::{FreeList, FuturePool};
pub use signal::{Signal, Wait};

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::os::fd::OwnedFd;
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use async_task::{Runnable, Task};
use rustix::event::epoll::{self, EventData, EventFlags};
use rustix::event::{eventfd, EventfdFlags, Timespec};

use io::Sources;
use timers::Timers;

/// Tasks run between two looks at the poller, so a busy queue cannot starve I/O.
const RUN_BUDGET: usize = 256;
/// Events taken per `epoll_wait`.
const EVENTS: usize = 256;
/// Runnable tasks the run queue has room for without growing.
const QUEUE_CAPACITY: usize = 1024;
/// The epoll key of the cross-thread wake-up eventfd.
const NOTIFY_KEY: u64 = u64::MAX;

/// The state of the runtime on the current thread.
pub(crate) struct Core {
    epoll: OwnedFd,
    remote: Arc<Remote>,
    queue: RefCell<VecDeque<Runnable>>,
    sources: RefCell<Sources>,
    timers: RefCell<Timers<Waker>>,
    now: Cell<Instant>,
    /// Wakers collected while dispatching events, woken after the borrow ends.
    woken: RefCell<Vec<Waker>>,
}

/// What another thread needs to wake this worker.
struct Remote {
    id: usize,
    eventfd: OwnedFd,
    queue: Mutex<Vec<Runnable>>,
    notified: AtomicBool,
}

impl Remote {
    fn push(&self, runnable: Runnable) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).push(runnable);
        if !self.notified.swap(true, Ordering::AcqRel) {
            let _ = rustix::io::write(&self.eventfd, &1u64.to_ne_bytes());
        }
    }
}

thread_local! {
    static CORE: RefCell<Option<Rc<Core>>> = const { RefCell::new(None) };
    /// The id of the runtime running on this thread (0: none).
    static CURRENT: Cell<usize> = const { Cell::new(0) };
}

/// Calls `f` with this thread's runtime, if one is running.
pub(crate) fn with_core<R>(f: impl FnOnce(&Core) -> R) -> Option<R> {
    CORE.try_with(|c| c.borrow().as_ref().map(|core| f(core))).ok().flatten()
}

/// The time of the current wake-up (read once per wake-up); the real clock on a
/// thread without a runtime.
pub fn now() -> Instant {
    with_core(|c| c.now.get()).unwrap_or_else(Instant::now)
}

/// Whether a runtime runs on this thread.
pub fn is_running() -> bool {
    CURRENT.with(Cell::get) != 0
}

/// Gives back what this thread's runtime grew to during a burst of connections: the
/// socket and deadline tables lose their free tail slots, the run queue and the wake-up
/// list their spare capacity. Called when the worker is quiet (its pool prune), so the
/// few live entries move to small allocations and the allocator can return the space
/// the burst used (a long-lived table at the top of the heap would keep all of it).
pub fn compact() {
    let _ = with_core(|core| {
        core.sources.borrow_mut().compact();
        core.timers.borrow_mut().compact();
        let mut queue = core.queue.borrow_mut();
        if queue.capacity() > QUEUE_CAPACITY && queue.len() <= QUEUE_CAPACITY {
            let mut fresh = VecDeque::with_capacity(QUEUE_CAPACITY);
            fresh.extend(queue.drain(..));
            *queue = fresh;
        }
        if let Ok(mut woken) = core.woken.try_borrow_mut() {
            if woken.capacity() > EVENTS {
                *woken = moved(&mut woken, EVENTS);
            }
        }
    });
}

/// A slot table (`slots` by key, `free` keys to reuse) without its free tail: the
/// slots after the last live one are dropped, with their keys, and capacity beyond
/// twice what is left is released. The free keys are reused lowest first from then
/// on, so the table stays short.
pub(crate) fn compact_slots<T>(slots: &mut Vec<Option<T>>, free: &mut Vec<usize>) {
    let live = slots.iter().rposition(Option::is_some).map_or(0, |i| i + 1);
    if live == slots.len() && slots.capacity() <= 2 * live.max(SLOTS_KEPT) {
        return;
    }
    slots.truncate(live);
    free.retain(|&k| k < live);
    free.sort_unstable_by(|a, b| b.cmp(a));
    if slots.capacity() > 2 * live.max(SLOTS_KEPT) {
        *slots = moved(slots, 2 * live.max(SLOTS_KEPT));
    }
    if free.capacity() > 2 * free.len().max(SLOTS_KEPT) {
        *free = moved(free, 2 * free.len().max(SLOTS_KEPT));
    }
}

/// `v`'s items in a new allocation of `capacity`. Not `shrink_to`: the C allocator
/// shrinks a block where it stands, and a block left high in the heap keeps the
/// allocator from giving back everything freed below it.
fn moved<T>(v: &mut Vec<T>, capacity: usize) -> Vec<T> {
    let mut fresh = Vec::with_capacity(capacity.max(v.len()));
    fresh.append(v);
    fresh
}

/// Which waker a table entry was armed with: a future polled again by the same task
/// finds its entry still armed and skips the table (the hot path polls each pending
/// deadline and signal once per wake-up). Compared as `Waker::will_wake` compares.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct WakerKey(usize, usize);

impl WakerKey {
    pub fn of(waker: &Waker) -> Self {
        Self(waker.data() as usize, std::ptr::from_ref(waker.vtable()) as usize)
    }
}

/// Slots a compacted table keeps room for.
const SLOTS_KEPT: usize = 64;

/// Spawns `future` on this thread's runtime.
///
/// # Panics
/// Outside a runtime: a programming error, never input-driven.
pub fn spawn<F>(future: F) -> Task<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let remote = with_core(|c| Arc::clone(&c.remote)).expect("rt::spawn outside a runtime");
    let schedule = move |runnable: Runnable| {
        if CURRENT.try_with(Cell::get).ok() == Some(remote.id) {
            // The request path: a plain push, no lock, no syscall.
            let _ = CORE.try_with(|c| {
                if let Some(core) = c.borrow().as_ref() {
                    core.queue.borrow_mut().push_back(runnable);
                }
            });
        } else {
            remote.push(runnable);
        }
    };
    // A panicking task ends alone (its locals dropped, the panic logged by the hook);
    // the worker and its other connections go on. Awaiting its handle re-raises it.
    let (runnable, task) = async_task::Builder::new().propagate_panic(true).spawn_local(|()| future, schedule);
    runnable.schedule();
    task
}

/// Runs `future` and every task it spawns on the current thread until `future`
/// completes. Tasks still pending then are dropped with the runtime.
pub fn block_on<F>(future: F) -> std::io::Result<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    static IDS: AtomicUsize = AtomicUsize::new(1);
    let id = IDS.fetch_add(1, Ordering::Relaxed);
    let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
    let efd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
    epoll::add(&epoll, &efd, EventData::new_u64(NOTIFY_KEY), EventFlags::IN | EventFlags::ET)?;
    let remote = Arc::new(Remote { id, eventfd: efd, queue: Mutex::new(Vec::new()), notified: AtomicBool::new(false) });
    let core = Rc::new(Core {
        epoll,
        remote,
        queue: RefCell::new(VecDeque::with_capacity(QUEUE_CAPACITY)),
        sources: RefCell::new(Sources::default()),
        timers: RefCell::new(Timers::default()),
        now: Cell::new(Instant::now()),
        woken: RefCell::new(Vec::with_capacity(EVENTS)),
    });
    let previous = CORE.with(|c| c.borrow_mut().replace(Rc::clone(&core)));
    CURRENT.with(|c| c.set(id));
    let result = run(&core, future);
    CURRENT.with(|c| c.set(0));
    // Dropping the core drops the queued tasks; their sockets unregister themselves.
    let core_now = CORE.with(|c| std::mem::replace(&mut *c.borrow_mut(), previous));
    drop(core_now);
    result
}

fn run<F>(core: &Core, future: F) -> std::io::Result<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let mut main = pin!(spawn(future));
    let mut events: Vec<epoll::Event> = Vec::with_capacity(EVENTS);
    loop {
        let mut ran = 0;
        while ran < RUN_BUDGET {
            let next = core.queue.borrow_mut().pop_front();
            match next {
                Some(runnable) => {
                    runnable.run();
                    ran += 1;
                }
                None => break,
            }
        }
        if main.is_finished() {
            let mut cx = Context::from_waker(Waker::noop());
            if let Poll::Ready(out) = main.as_mut().poll(&mut cx) {
                return Ok(out);
            }
        }
        let timeout = if !core.queue.borrow().is_empty() {
            Some(Duration::ZERO)
        } else {
            core.timers.borrow().next().map(|at| at.saturating_duration_since(core.now.get()))
        };
        events.clear();
        let timeout = timeout.map(round_up_to_millis);
        match epoll::wait(&core.epoll, rustix::buffer::spare_capacity(&mut events), timeout.as_ref()) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        core.now.set(Instant::now());
        core.dispatch(&events);
    }
}

/// epoll's timeout is in milliseconds; rounding down would wake before a deadline and
/// spin until it passes.
fn round_up_to_millis(d: Duration) -> Timespec {
    let ms = d.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i64;
    Timespec { tv_sec: ms / 1000, tv_nsec: (ms % 1000) * 1_000_000 }
}

impl Core {
    /// The time of the current wake-up.
    pub fn now(&self) -> Instant {
        self.now.get()
    }

    /// The worker's deadline table.
    pub fn timers(&self) -> std::cell::RefMut<'_, Timers<Waker>> {
        self.timers.borrow_mut()
    }

    /// Records what the kernel reported, then wakes the tasks waiting on it and the
    /// deadlines that passed.
    fn dispatch(&self, events: &[epoll::Event]) {
        let mut woken = std::mem::take(&mut *self.woken.borrow_mut());
        {
            let sources = self.sources.borrow();
            for event in events {
                let key = event.data.u64();
                if key == NOTIFY_KEY {
                    self.take_remote();
                    continue;
                }
                sources.report(key as usize, Ready::from_epoll(event.flags), &mut woken);
            }
        }
        self.timers.borrow_mut().expire(self.now.get(), |w| woken.push(w));
        for w in woken.drain(..) {
            w.wake();
        }
        *self.woken.borrow_mut() = woken;
    }

    fn take_remote(&self) {
        let mut counter = [0u8; 8];
        let _ = rustix::io::read(&self.remote.eventfd, &mut counter);
        self.remote.notified.store(false, Ordering::Release);
        let taken = std::mem::take(&mut *self.remote.queue.lock().unwrap_or_else(|e| e.into_inner()));
        self.queue.borrow_mut().extend(taken);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_round_up_to_whole_milliseconds() {
        let cases =
            [(0, 0), (1, 1_000_000), (999_999, 1_000_000), (1_000_000, 1_000_000), (1_500_000_000, 1_500_000_000)];
        for (nanos, want) in cases {
            let t = round_up_to_millis(Duration::from_nanos(nanos));
            assert_eq!(t.tv_sec as u128 * 1_000_000_000 + t.tv_nsec as u128, want, "{nanos} ns");
        }
    }

    #[test]
    fn compacting_drops_the_free_tail_and_its_keys() {
        // (live keys, table length) → length after, free keys after.
        let cases: [(&[usize], usize, usize, &[usize]); 4] = [
            (&[], 1000, 0, &[]),
            (&[0, 5], 1000, 6, &[1, 2, 3, 4]),
            (&[999], 1000, 1000, &[]),
            (&[3], 4, 4, &[0, 1, 2]),
        ];
        for (live, len, want_len, want_free) in cases {
            let mut slots: Vec<Option<u8>> = (0..len).map(|k| live.contains(&k).then_some(1)).collect();
            let mut free: Vec<usize> = (0..len).filter(|k| !live.contains(k)).rev().collect();
            compact_slots(&mut slots, &mut free);
            assert_eq!(slots.len(), want_len, "live {live:?} of {len}");
            free.sort_unstable();
            if want_len < len {
                assert_eq!(free, want_free, "live {live:?} of {len}");
            }
            assert!(slots.capacity() <= 2 * want_len.max(SLOTS_KEPT), "capacity {} kept", slots.capacity());
            assert!(live.iter().all(|&k| slots[k].is_some()), "a live slot moved");
        }
    }

    #[test]
    fn tasks_timers_and_sockets_run_on_one_thread() {
        use futures_lite::{AsyncReadExt, AsyncWriteExt};
        let out = block_on(async {
            let started = now();
            crate::net::clock::sleep(Duration::from_millis(20)).await;
            let slept = now().duration_since(started);
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.set_nonblocking(true).expect("nonblocking");
            let addr = listener.local_addr().expect("addr");
            let listener = Io::new(listener, Ready::EMPTY).expect("register");
            let server = spawn(async move {
                let (mut s, _) = listener.accept().await.expect("accept");
                let mut buf = [0u8; 5];
                s.read_exact(&mut buf).await.expect("read");
                s.write_all(&buf).await.expect("write");
            });
            let mut c = connect(addr).await.expect("connect");
            c.write_all(b"hello").await.expect("write");
            let mut back = [0u8; 5];
            c.read_exact(&mut back).await.expect("read");
            server.await;
            (slept, back)
        })
        .expect("runtime");
        assert!(out.0 >= Duration::from_millis(20), "slept {:?}", out.0);
        assert_eq!(&out.1, b"hello");
    }
}
