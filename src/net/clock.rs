//! Deadlines for the request path. On a worker they are entries in the runtime's
//! deadline table (`rt`): arming one is a table write, no syscall, and the worker's
//! `epoll_wait` ends at the earliest. A deadline is measured from the time of the
//! current wake-up (`rt::now`), read once per wake-up. A thread without the runtime
//! (the demo's replicas, tests) falls back to `async_io::Timer`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_io::Timer;

use crate::rt::{self, WakerKey};

/// The time of the current wake-up.
pub fn now() -> Instant {
    rt::now()
}

/// How long ago `t` was, as of the current wake-up.
pub fn since(t: Instant) -> Duration {
    now().saturating_duration_since(t)
}

/// A future that completes at its deadline.
pub struct Sleep {
    at: Instant,
    inner: Inner,
    /// The deadline and waker its table entry holds (see `rt::WakerKey`).
    armed: Option<(Instant, WakerKey)>,
}

enum Inner {
    /// The runtime's table, with the slot once armed.
    Table(Option<usize>),
    /// Boxed: only code off the runtime uses it, and every tunnel holds a `Sleep`.
    Timer(Box<Timer>),
}

/// Completes `limit` after the current wake-up.
pub fn sleep(limit: Duration) -> Sleep {
    sleep_until(rt::now() + limit)
}

/// Completes at `at`.
pub fn sleep_until(at: Instant) -> Sleep {
    let inner = if rt::is_running() { Inner::Table(None) } else { Inner::Timer(Box::new(Timer::at(at))) };
    Sleep { at, inner, armed: None }
}

impl Sleep {
    /// Moves the deadline (it may already have passed); the next poll arms it.
    pub fn set_at(&mut self, at: Instant) {
        self.at = at;
        if let Inner::Timer(t) = &mut self.inner {
            t.set_at(at);
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Sleep { at, inner, armed } = &mut *self;
        let at = *at;
        match inner {
            Inner::Timer(t) => Pin::new(t).poll(cx).map(|_| ()),
            Inner::Table(slot) => rt::with_core(|core| {
                if core.now() >= at {
                    return Poll::Ready(());
                }
                // Entries fire only once `now` reaches them, so one armed for `at` with
                // this waker is still armed.
                let key = WakerKey::of(cx.waker());
                if slot.is_some() && *armed == Some((at, key)) {
                    return Poll::Pending;
                }
                *armed = Some((at, key));
                let mut timers = core.timers();
                match *slot {
                    None => *slot = Some(timers.insert(at, cx.waker().clone())),
                    Some(id) => {
                        let armed = timers.waker(id).is_some_and(|(w, t)| t == at && w.will_wake(cx.waker()));
                        if !armed {
                            timers.arm(id, at, cx.waker().clone());
                        }
                    }
                }
                Poll::Pending
            })
            // The runtime is gone (the thread is ending): the deadline has no meaning left.
            .unwrap_or(Poll::Ready(())),
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Inner::Table(Some(id)) = self.inner {
            let _ = rt::with_core(|core| core.timers().remove(id));
        }
    }
}
