//! The budget of request bytes a shard holds in memory (`queued.max.request.bytes`
//! divided by the number of shards; per shard, so no atomic crosses cores).
//!
//! A connection takes a frame's size from the budget *before* it allocates the
//! frame, and while the budget is short it stops reading its socket. The permit
//! travels with the request and returns the bytes when the request's handler has
//! finished: by then the frame's bytes have been copied where they live on (a
//! Produce's batches into the owner's append buffer, on whichever shard) or dropped.
//!
//! Grants are not first-come-first-served: a frame that fits is granted even when a
//! larger one waits, so a few huge frames cannot hold back every small request. A
//! frame larger than the whole budget takes all of it and runs alone; no frame
//! waits for bytes that can never be freed, so there is no deadlock.
//!
//! A connection's read buffer is counted here too, where it fits when the connection
//! opens (`try_hold`); those bytes are held for the connection's life, so they do not
//! count against the rule that a frame runs when no other frame holds bytes (else a
//! frame larger than what the buffers leave free would wait for ever).
//!
//! Lives on one shard (`!Send`); connections of that shard share it through `Rc`.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

pub struct RequestBudget {
    capacity: usize,
    /// Bytes of frames.
    in_use: Cell<usize>,
    /// Bytes of connections' read buffers.
    buffers: Cell<usize>,
    /// Waiting acquisitions by arrival, woken in that order when bytes come back.
    waiters: RefCell<BTreeMap<u64, Waker>>,
    next_waiter: Cell<u64>,
}

/// Bytes taken from a [`RequestBudget`]; given back on drop.
pub struct BudgetPermit {
    budget: Rc<RequestBudget>,
    bytes: usize,
    /// A read buffer's bytes (see [`RequestBudget::try_hold`]), not a frame's.
    buffer: bool,
}

impl RequestBudget {
    pub fn new(capacity: usize) -> Rc<RequestBudget> {
        assert!(
            capacity > 0,
            "a request budget of zero bytes admits nothing"
        );
        Rc::new(RequestBudget {
            capacity,
            in_use: Cell::new(0),
            buffers: Cell::new(0),
            waiters: RefCell::new(BTreeMap::new()),
            next_waiter: Cell::new(0),
        })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes held, frames and read buffers.
    pub fn in_use(&self) -> usize {
        self.in_use.get() + self.buffers.get()
    }

    /// Takes `bytes` for a connection's read buffer if they fit now; `None` otherwise
    /// (the connection then reads through a smaller buffer, outside the budget).
    pub fn try_hold(self: &Rc<Self>, bytes: usize) -> Option<BudgetPermit> {
        if self.in_use() + bytes > self.capacity {
            return None;
        }
        self.buffers.set(self.buffers.get() + bytes);
        Some(BudgetPermit {
            budget: self.clone(),
            bytes,
            buffer: true,
        })
    }

    /// Waits until `bytes` (at most the whole budget) can be taken, and takes them.
    pub fn acquire(self: &Rc<Self>, bytes: usize) -> Acquire {
        Acquire {
            budget: self.clone(),
            bytes: bytes.min(self.capacity),
            waiter: None,
        }
    }

    /// Takes `bytes` if they fit now, or if nothing is in use (a frame larger than
    /// what is free would otherwise wait for ever when the budget is busy).
    fn try_take(&self, bytes: usize) -> bool {
        let used = self.in_use.get();
        if used != 0 && self.in_use() + bytes > self.capacity {
            return false;
        }
        self.in_use.set(used + bytes);
        assert!(
            self.in_use.get() <= self.capacity,
            "request budget overdrawn"
        );
        true
    }

    fn give_back(&self, bytes: usize, buffer: bool) {
        let cell = if buffer { &self.buffers } else { &self.in_use };
        let used = cell.get();
        assert!(bytes <= used, "request budget returned more than was taken");
        cell.set(used - bytes);
        // Wake every waiter (in arrival order): each takes what fits when polled.
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for (_, waker) in waiters {
            waker.wake();
        }
    }
}

impl BudgetPermit {
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for BudgetPermit {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes, self.buffer);
    }
}

/// The future of [`RequestBudget::acquire`].
pub struct Acquire {
    budget: Rc<RequestBudget>,
    bytes: usize,
    waiter: Option<u64>,
}

impl Future for Acquire {
    type Output = BudgetPermit;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<BudgetPermit> {
        if self.budget.try_take(self.bytes) {
            if let Some(id) = self.waiter.take() {
                self.budget.waiters.borrow_mut().remove(&id);
            }
            return Poll::Ready(BudgetPermit {
                budget: self.budget.clone(),
                bytes: self.bytes,
                buffer: false,
            });
        }
        // Keep this waiter's place (its id) across polls.
        let id = match self.waiter {
            Some(id) => id,
            None => {
                let id = self.budget.next_waiter.get();
                self.budget.next_waiter.set(id.wrapping_add(1));
                self.waiter = Some(id);
                id
            }
        };
        self.budget
            .waiters
            .borrow_mut()
            .insert(id, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Acquire {
    fn drop(&mut self) {
        if let Some(id) = self.waiter.take() {
            self.budget.waiters.borrow_mut().remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[test]
    fn small_frames_pass_a_waiting_large_one_and_large_ones_run_alone() {
        let budget = RequestBudget::new(100);
        let a = budget.acquire(60).now_or_never().unwrap();
        assert_eq!(budget.in_use(), 60);
        // 50 does not fit next to 60; 30 does.
        let mut big = Box::pin(budget.acquire(50));
        assert!(big.as_mut().now_or_never().is_none());
        let b = budget.acquire(30).now_or_never().unwrap();
        assert_eq!(budget.in_use(), 90);
        drop(a);
        let big = big.now_or_never().unwrap();
        assert_eq!(budget.in_use(), 80);
        drop((b, big));
        assert_eq!(budget.in_use(), 0);
        // Larger than the whole budget: clamped, granted when alone.
        let huge = budget.acquire(1_000).now_or_never().unwrap();
        assert_eq!(huge.bytes(), 100);
        assert!(budget.acquire(1).now_or_never().is_none());
        drop(huge);
        assert!(budget.waiters.borrow().is_empty());
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn read_buffers_take_what_fits_and_never_keep_a_frame_waiting_for_ever() {
        let budget = RequestBudget::new(100);
        let a = budget.try_hold(40).unwrap();
        let b = budget.try_hold(40).unwrap();
        assert!(budget.try_hold(40).is_none());
        assert_eq!(budget.in_use(), 80);
        // Frames share what the buffers leave...
        let small = budget.acquire(20).now_or_never().unwrap();
        assert!(budget.acquire(10).now_or_never().is_none());
        drop(small);
        // ...and a frame larger than that runs when no other frame holds bytes.
        let big = budget.acquire(90).now_or_never().unwrap();
        assert_eq!(budget.in_use(), 170);
        assert!(budget.try_hold(1).is_none());
        drop((a, b, big));
        assert_eq!(budget.in_use(), 0);
    }
}
