//! A one-shot signal on one thread (the worker's drain): any number of tasks wait on
//! it without allocating once its waiter table has grown, and all wake when it fires.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use super::WakerKey;

#[derive(Default)]
pub struct Signal {
    fired: Cell<bool>,
    waiters: RefCell<Vec<Option<Waker>>>,
    free: RefCell<Vec<usize>>,
}

impl Signal {
    pub fn is_fired(&self) -> bool {
        self.fired.get()
    }

    /// Fires the signal and wakes every waiter.
    pub fn fire(&self) {
        self.fired.set(true);
        let woken: Vec<Waker> = self.waiters.borrow_mut().iter_mut().filter_map(Option::take).collect();
        for w in woken {
            w.wake();
        }
    }

    /// Completes once the signal has fired.
    pub fn wait(&self) -> Wait<&Signal> {
        Wait { signal: self, slot: None, armed: None }
    }

    /// `wait` for a task that holds the signal rather than borrows it.
    pub fn wait_owned(self: &Rc<Self>) -> Wait<Rc<Signal>> {
        Wait { signal: Rc::clone(self), slot: None, armed: None }
    }

    /// Drops the waiter table's free tail (what a burst of waiters left), as the
    /// runtime's tables are compacted. A slot in use is never moved.
    pub fn compact(&self) {
        if self.fired.get() {
            return;
        }
        super::compact_slots(&mut self.waiters.borrow_mut(), &mut self.free.borrow_mut());
    }
}

pub struct Wait<S: Deref<Target = Signal>> {
    signal: S,
    slot: Option<usize>,
    /// The waker the slot holds (see `WakerKey`).
    armed: Option<WakerKey>,
}

impl<S: Deref<Target = Signal> + Unpin> Future for Wait<S> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.fired.get() {
            return Poll::Ready(());
        }
        // Only `fire` empties a slot, and it sets `fired` first.
        let key = WakerKey::of(cx.waker());
        if self.armed == Some(key) {
            return Poll::Pending;
        }
        self.armed = Some(key);
        let mut waiters = self.signal.waiters.borrow_mut();
        match self.slot {
            Some(i) => match &mut waiters[i] {
                Some(w) if w.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            },
            None => {
                let i = match self.signal.free.borrow_mut().pop() {
                    Some(i) => {
                        waiters[i] = Some(cx.waker().clone());
                        i
                    }
                    None => {
                        waiters.push(Some(cx.waker().clone()));
                        waiters.len() - 1
                    }
                };
                drop(waiters);
                self.slot = Some(i);
            }
        }
        Poll::Pending
    }
}

impl<S: Deref<Target = Signal>> Drop for Wait<S> {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            // A slot past the table's end was dropped by `compact` (it was free, since
            // the signal fired and emptied every slot): nothing to give back.
            if let Some(w) = self.signal.waiters.borrow_mut().get_mut(i) {
                *w = None;
                self.signal.free.borrow_mut().push(i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn every_waiter_wakes_once_and_slots_are_reused() {
        let signal = Signal::default();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        for _ in 0..10 {
            let mut w = Box::pin(signal.wait());
            assert!(w.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(signal.waiters.borrow().len(), 1, "a dropped waiter's slot is reused");
        let mut a = Box::pin(signal.wait());
        let mut b = Box::pin(signal.wait());
        assert!(a.as_mut().poll(&mut cx).is_pending());
        assert!(b.as_mut().poll(&mut cx).is_pending());
        signal.fire();
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        assert!(a.as_mut().poll(&mut cx).is_ready());
        assert!(signal.wait().poll_unpin_ready(&mut cx));
    }

    #[test]
    fn compacting_frees_what_a_burst_of_waiters_left_and_keeps_the_live_ones() {
        let signal = Signal::default();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        let mut burst: Vec<_> = (0..10_000).map(|_| Box::pin(signal.wait())).collect();
        burst.iter_mut().for_each(|w| assert!(w.as_mut().poll(&mut cx).is_pending()));
        // The first and the 5,000th stay; the rest end.
        let mut kept = vec![burst.swap_remove(4_999), burst.swap_remove(0)];
        drop(burst);
        signal.compact();
        assert_eq!(signal.waiters.borrow().len(), 5_000, "the table ends at its last live slot");
        assert!(signal.waiters.borrow().capacity() < 16_384, "the burst's capacity is freed");
        kept.pop();
        signal.compact();
        assert_eq!(signal.waiters.borrow().len(), 5_000, "slot 4,999 is still in use");
        // New waiters reuse the lowest free slots.
        let mut new = Box::pin(signal.wait());
        assert!(new.as_mut().poll(&mut cx).is_pending());
        assert_eq!(new.slot, Some(0));
        signal.fire();
        assert_eq!(count.0.load(Ordering::SeqCst), 2, "both live waiters woke");
        assert!(kept[0].as_mut().poll(&mut cx).is_ready());
    }

    #[test]
    fn a_waiter_dropped_after_fire_and_compact_frees_nothing_twice() {
        let signal = Signal::default();
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut w = Box::pin(signal.wait());
        assert!(w.as_mut().poll(&mut cx).is_pending());
        signal.fire();
        signal.compact();
        drop(w);
        assert!(signal.wait().poll_unpin_ready(&mut cx));
    }

    #[test]
    fn a_waiter_polled_by_another_task_wakes_that_task() {
        let signal = Signal::default();
        let (first, second) = (Arc::new(Count(AtomicUsize::new(0))), Arc::new(Count(AtomicUsize::new(0))));
        let (w1, w2) = (Waker::from(Arc::clone(&first)), Waker::from(Arc::clone(&second)));
        let mut wait = Box::pin(signal.wait());
        for waker in [&w1, &w1, &w2, &w2] {
            assert!(wait.as_mut().poll(&mut Context::from_waker(waker)).is_pending());
        }
        signal.fire();
        assert_eq!((first.0.load(Ordering::SeqCst), second.0.load(Ordering::SeqCst)), (0, 1));
    }

    trait ReadyOnce {
        fn poll_unpin_ready(self, cx: &mut Context<'_>) -> bool;
    }
    impl ReadyOnce for Wait<&Signal> {
        fn poll_unpin_ready(mut self, cx: &mut Context<'_>) -> bool {
            Pin::new(&mut self).poll(cx).is_ready()
        }
    }
}
