//! A fair (FIFO) async lock with hand-off, for one shard's executor (`!Send`).
//!
//! On release the lock passes directly to the oldest waiter, so a task that releases and at
//! once asks again queues behind everyone already waiting. Neither `futures::lock::Mutex`
//! (no fairness at all) nor glommio 0.9's `Semaphore` does this: the semaphore wakes its
//! oldest waiter but leaves the units free, and a new caller that finds the wait list empty
//! takes them first. With the flusher re-locking a hot partition's `flush_lock`, both starve
//! checkpoints (test: `fault_tests::checkpoints_progress_on_a_hot_partition`).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
pub struct FifoLock {
    state: RefCell<LockState>,
}

#[derive(Default)]
struct LockState {
    held: bool,
    waiters: VecDeque<Rc<Slot>>,
}

#[derive(Default)]
struct Slot {
    granted: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

/// Holds the lock; dropping it hands the lock to the oldest waiter.
pub struct FifoGuard<'a> {
    lock: &'a FifoLock,
}

impl Drop for FifoGuard<'_> {
    fn drop(&mut self) {
        self.lock.release();
    }
}

impl FifoLock {
    /// Resolves when the lock is held, after every earlier caller had its turn.
    pub fn lock(&self) -> Acquire<'_> {
        Acquire {
            lock: self,
            slot: None,
            done: false,
        }
    }

    /// Whether the lock is held now.
    pub fn is_locked(&self) -> bool {
        self.state.borrow().held
    }

    fn release(&self) {
        let mut state = self.state.borrow_mut();
        assert!(state.held, "release of a FifoLock that is not held");
        match state.waiters.pop_front() {
            // Still held: now by the oldest waiter.
            Some(next) => {
                next.granted.set(true);
                if let Some(waker) = next.waker.borrow_mut().take() {
                    waker.wake();
                }
            }
            None => state.held = false,
        }
    }
}

/// The future of [`FifoLock::lock`]. Dropped while waiting, it leaves the queue; dropped
/// after the lock was handed to it, it hands the lock on.
pub struct Acquire<'a> {
    lock: &'a FifoLock,
    slot: Option<Rc<Slot>>,
    done: bool,
}

impl<'a> Future for Acquire<'a> {
    type Output = FifoGuard<'a>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<FifoGuard<'a>> {
        let lock = self.lock;
        match self.slot.clone() {
            None => {
                let mut state = lock.state.borrow_mut();
                if !state.held && state.waiters.is_empty() {
                    state.held = true;
                    self.done = true;
                    return Poll::Ready(FifoGuard { lock });
                }
                let slot = Rc::new(Slot::default());
                *slot.waker.borrow_mut() = Some(cx.waker().clone());
                state.waiters.push_back(slot.clone());
                self.slot = Some(slot);
                Poll::Pending
            }
            Some(slot) if slot.granted.get() => {
                self.slot = None;
                self.done = true;
                Poll::Ready(FifoGuard { lock })
            }
            Some(slot) => {
                *slot.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Drop for Acquire<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let Some(slot) = self.slot.take() else {
            return;
        };
        if slot.granted.get() {
            self.lock.release();
        } else {
            let mut state = self.lock.state.borrow_mut();
            state.waiters.retain(|s| !Rc::ptr_eq(s, &slot));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_util::run;

    #[test]
    fn waiters_get_the_lock_in_arrival_order_and_no_one_barges() {
        run(|| async {
            let lock = Rc::new(FifoLock::default());
            let order = Rc::new(RefCell::new(Vec::new()));
            let first = lock.lock().await;
            let tasks: Vec<_> = (0..3)
                .map(|i| {
                    let (lock, order) = (lock.clone(), order.clone());
                    glommio::spawn_local(async move {
                        let _guard = lock.lock().await;
                        order.borrow_mut().push(i);
                    })
                })
                .collect();
            futures_lite::future::yield_now().await;
            drop(first);
            // Released and asked again at once: queued behind the three waiters.
            let again = lock.lock().await;
            order.borrow_mut().push(99);
            drop(again);
            for task in tasks {
                task.await;
            }
            assert_eq!(*order.borrow(), vec![0, 1, 2, 99]);
            assert!(!lock.is_locked());
        });
    }

    #[test]
    fn a_dropped_waiter_leaves_the_queue_or_hands_the_lock_on() {
        run(|| async {
            let lock = FifoLock::default();
            let guard = lock.lock().await;
            let mut waiting = Box::pin(lock.lock());
            let waker = futures::task::noop_waker();
            let mut cx = Context::from_waker(&waker);
            assert!(waiting.as_mut().poll(&mut cx).is_pending());
            drop(guard); // handed to `waiting`, which never polls again
            drop(waiting);
            assert!(!lock.is_locked(), "handed on when dropped");
            let _guard = lock.lock().await;
            let mut queued = Box::pin(lock.lock());
            assert!(queued.as_mut().poll(&mut cx).is_pending());
            drop(queued);
            assert!(lock.state.borrow().waiters.is_empty());
        });
    }
}
