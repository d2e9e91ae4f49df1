//! Memory a worker hands from one request to the next instead of allocating it per
//! request: `FreeList<T>`, values given back when a request ends (the buffers it
//! parsed and wrote into, a connection's first read buffer), and `FuturePool`, the
//! boxes a request's future runs in.
//!
//! Both are bounded and shrink when the worker is quiet: `trim` (every few seconds,
//! with the backend pool's prune) frees what went unused since its last call, its
//! low-water mark, so a steady load keeps what it uses and a burst leaves nothing
//! behind. A value or a box that is not given back (a panic, an error path) is simply
//! freed: reuse saves allocations, it never decides what is correct.

use std::any::Any;
use std::cell::{Cell, OnceCell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Values kept for reuse, at most `kept` of them, newest on top.
pub struct FreeList<T> {
    items: RefCell<Vec<T>>,
    /// The fewest items waiting since the last `trim`: those were not needed.
    low: Cell<usize>,
    kept: usize,
}

impl<T> FreeList<T> {
    pub const fn new(kept: usize) -> Self {
        Self { items: RefCell::new(Vec::new()), low: Cell::new(0), kept }
    }

    /// The value given back last, if any.
    pub fn take(&self) -> Option<T> {
        let mut items = self.items.borrow_mut();
        let item = items.pop()?;
        self.low.set(self.low.get().min(items.len()));
        Some(item)
    }

    /// Keeps `item` for `take`, or frees it when `kept` values already wait. Returns
    /// whether it was kept.
    pub fn give(&self, item: T) -> bool {
        let mut items = self.items.borrow_mut();
        let keep = items.len() < self.kept;
        if keep {
            items.push(item);
        }
        keep
    }

    /// Frees the values that waited unused since the last call (the oldest first), and
    /// says how many.
    pub fn trim(&self) -> usize {
        let mut items = self.items.borrow_mut();
        let unused = self.low.get().min(items.len());
        items.drain(..unused);
        if items.is_empty() {
            *items = Vec::new();
        }
        self.low.set(items.len());
        unused
    }

    /// Values waiting.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.items.borrow().len()
    }
}

/// A future's box, empty between runs.
type Slot<F> = Pin<Box<Option<F>>>;

/// Boxes for one kind of future that runs often and briefly: a connection's request.
/// The connection's task keeps only a pointer while the request runs, so an idle
/// connection stays small, and the box is reused by the worker's next request instead
/// of allocated for it.
///
/// The future's type is an `async fn`'s, which cannot be named: the list is stored
/// type-erased and found again by downcasting. A second type would find no list and
/// get a fresh box per run, correct but not reused.
pub struct FuturePool {
    kept: usize,
    slots: OnceCell<Box<dyn Slots>>,
}

/// A `FreeList` of one future type's boxes, as the pool stores it.
trait Slots {
    fn as_any(&self) -> &dyn Any;
    fn trim(&self);
    #[cfg(test)]
    fn len(&self) -> usize;
}

impl<F: 'static> Slots for FreeList<Slot<F>> {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn trim(&self) {
        FreeList::trim(self);
    }
    #[cfg(test)]
    fn len(&self) -> usize {
        FreeList::len(self)
    }
}

impl FuturePool {
    pub const fn new(kept: usize) -> Self {
        Self { kept, slots: OnceCell::new() }
    }

    /// The future `make` returns, made in a reused box (a fresh one when none waits).
    /// Awaiting the result runs it; the box goes back to the pool when it completes or
    /// is dropped. The future is made here rather than passed in: a future is as large
    /// as its largest state, even before it starts, and each move copies all of it.
    pub fn run<F: Future + 'static>(&self, make: impl FnOnce() -> F) -> Pooled<'_, F> {
        let list = self.slots.get_or_init(|| Box::new(FreeList::<Slot<F>>::new(self.kept)));
        let list = list.as_any().downcast_ref::<FreeList<Slot<F>>>();
        let mut slot = list.and_then(FreeList::take).unwrap_or_else(|| Box::pin(None));
        slot.as_mut().set(Some(make()));
        Pooled { list, slot: Some(slot) }
    }

    /// Frees the boxes that went unused since the last call.
    pub fn trim(&self) {
        if let Some(slots) = self.slots.get() {
            slots.trim();
        }
    }

    /// Boxes waiting.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.slots.get().map_or(0, |s| s.len())
    }
}

/// A future running in a box from a `FuturePool`.
pub struct Pooled<'p, F: Future + 'static> {
    list: Option<&'p FreeList<Slot<F>>>,
    /// `None` once the future completed and its box went back.
    slot: Option<Slot<F>>,
}

impl<F: Future + 'static> Pooled<'_, F> {
    /// Drops the future in its box and gives the box back.
    fn recycle(&mut self) {
        if let Some(mut slot) = self.slot.take() {
            slot.as_mut().set(None);
            if let Some(list) = self.list {
                let _ = list.give(slot);
            }
        }
    }
}

impl<F: Future + 'static> Future for Pooled<'_, F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        let Some(future) = this.slot.as_mut().and_then(|s| s.as_mut().as_pin_mut()) else {
            // Polled again after completing: there is nothing left to run.
            return Poll::Pending;
        };
        let out = std::task::ready!(future.poll(cx));
        this.recycle();
        Poll::Ready(out)
    }
}

impl<F: Future + 'static> Drop for Pooled<'_, F> {
    fn drop(&mut self) {
        self.recycle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;
    use std::task::Waker;

    #[test]
    fn a_free_list_keeps_what_a_steady_load_uses_and_frees_the_rest() {
        let list = FreeList::new(4);
        for i in 0..6 {
            list.give(i);
        }
        assert_eq!(list.len(), 4, "bounded");
        list.trim();
        assert_eq!(list.len(), 4, "nothing was taken since the (empty) last trim");
        let a = list.take();
        let b = list.take();
        assert_eq!((a, b), (Some(3), Some(2)), "newest first");
        list.give(9);
        list.trim();
        assert_eq!(list.len(), 1, "two waited untouched all period: they go, the one in use stays");
        list.trim();
        assert_eq!(list.len(), 0, "a quiet period frees the rest");
        assert_eq!(list.take(), None);
    }

    /// A future that completes on its second poll and counts its drops.
    fn second_poll(drops: &Rc<Cell<usize>>) -> impl Future<Output = u32> + 'static {
        struct Guard(Rc<Cell<usize>>);
        impl Drop for Guard {
            fn drop(&mut self) {
                self.0.set(self.0.get() + 1);
            }
        }
        let guard = Guard(Rc::clone(drops));
        let mut polled = false;
        std::future::poll_fn(move |cx| {
            let _keep = &guard;
            if std::mem::replace(&mut polled, true) {
                Poll::Ready(7)
            } else {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        })
    }

    #[test]
    fn a_pooled_future_runs_in_a_reused_box_and_is_dropped_when_done_or_abandoned() {
        fn run(pool: &FuturePool, drops: &Rc<Cell<usize>>) -> *const () {
            let mut pooled = pool.run(|| second_poll(drops));
            let at = pooled.slot.as_ref().map_or(std::ptr::null(), |s| &**s as *const _ as *const ());
            let mut cx = Context::from_waker(Waker::noop());
            assert!(Pin::new(&mut pooled).poll(&mut cx).is_pending());
            assert_eq!(Pin::new(&mut pooled).poll(&mut cx), Poll::Ready(7));
            at
        }
        let pool = FuturePool::new(2);
        let drops = Rc::new(Cell::new(0));
        let first = run(&pool, &drops);
        assert_eq!((drops.get(), pool.len()), (1, 1), "the future is dropped at completion, its box kept");
        let second = run(&pool, &drops);
        assert_eq!(first, second, "the next run reuses the box");
        // Dropped before completing (its connection went away): dropped, box kept.
        let abandoned = pool.run(|| second_poll(&drops));
        drop(abandoned);
        assert_eq!((drops.get(), pool.len()), (3, 1));
        pool.trim();
        pool.trim();
        assert_eq!(pool.len(), 0, "unused boxes are freed");
    }
}
