//! Single-threaded wake-up lists (the shard's executor is the only thread touching them).

use std::cell::RefCell;
use std::future::Future;
use std::task::{Poll, Waker};

/// Tasks waiting for a condition that a later state change makes true.
#[derive(Default)]
pub struct WakerSet {
    wakers: RefCell<Vec<Waker>>,
}

impl WakerSet {
    /// Wakes every waiting task (each re-checks its condition).
    pub fn wake_all(&self) {
        let wakers = std::mem::take(&mut *self.wakers.borrow_mut());
        for waker in wakers {
            waker.wake();
        }
    }

    /// Resolves once `condition` holds; re-checked after every `wake_all`.
    pub fn wait_until<'a>(
        &'a self,
        condition: impl Fn() -> bool + 'a,
    ) -> impl Future<Output = ()> + 'a {
        futures::future::poll_fn(move |cx| {
            if condition() {
                return Poll::Ready(());
            }
            let mut wakers = self.wakers.borrow_mut();
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
            Poll::Pending
        })
    }
}
