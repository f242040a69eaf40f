//! The bytes of one connection's responses that are made (or being made) and not yet
//! written: Kafka's muting, pipelined.
//!
//! Kafka reads no further request from a connection while one of its responses waits to
//! be sent, so a client that stops reading its socket makes the broker hold one response.
//! Sluice pipelines (up to `INFLIGHT_REQUESTS_PER_CONNECTION_MAX` requests), so it bounds
//! the bytes instead (`RESPONSE_QUEUED_BYTES_PER_CONNECTION_MAX`):
//! - while the connection holds more than the bound, its reader reads no new request;
//! - a handler that is about to copy bytes into memory for its response (a Fetch reading
//!   cold ranges) first reserves them here, and waits while they do not fit — unless its
//!   request is the oldest whose response is not yet written, which always proceeds (its
//!   response is the next to leave, so waiting for it to make room would never end).
//!
//! So one connection holds at most the bound plus one response (at most
//! `FETCH_RESPONSE_BYTES_MAX` of copied record bytes), however many fetches it pipelines
//! and whether or not it reads. Responses still leave in request order.
//!
//! Lives on one shard (`!Send`); the reader, the writer and the request tasks of one
//! connection share it through `Rc`.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

pub struct ResponseQueue {
    bound: usize,
    held: Cell<usize>,
    /// Sequence number of the oldest request whose response is not yet written.
    next_written: Cell<u64>,
    /// The writer is gone: nothing will be written, nobody should wait.
    closed: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

/// Bytes counted in a [`ResponseQueue`]; given back on drop.
pub struct Held {
    queue: Rc<ResponseQueue>,
    bytes: usize,
}

/// One request's handle on its connection's queue: what a handler reserves through.
pub struct ResponseGate {
    queue: Rc<ResponseQueue>,
    seq: u64,
    reserved: RefCell<Vec<Held>>,
}

impl ResponseQueue {
    pub fn new(bound: usize) -> Rc<ResponseQueue> {
        assert!(bound > 0, "a response bound of zero bytes admits nothing");
        Rc::new(ResponseQueue {
            bound,
            held: Cell::new(0),
            next_written: Cell::new(0),
            closed: Cell::new(false),
            waiters: RefCell::new(Vec::new()),
        })
    }

    pub fn held(&self) -> usize {
        self.held.get()
    }

    /// Counts `bytes` that already exist (a response just made), whether or not they fit.
    pub fn hold(self: &Rc<Self>, bytes: usize) -> Held {
        self.held.set(self.held.get() + bytes);
        Held {
            queue: self.clone(),
            bytes,
        }
    }

    /// The writer has written (or dropped) the response of request `seq`.
    pub fn written(&self, seq: u64) {
        assert_eq!(
            seq,
            self.next_written.get(),
            "responses written out of request order"
        );
        self.next_written.set(seq + 1);
        self.wake_all();
    }

    /// The writer is gone; wakes every waiter for good.
    pub fn close(&self) {
        self.closed.set(true);
        self.wake_all();
    }

    /// Resolves once the connection holds no more than its bound (or is closed): the
    /// reader waits on this before it reads the next request.
    pub fn room_to_read(self: &Rc<Self>) -> impl Future<Output = ()> {
        let queue = self.clone();
        std::future::poll_fn(move |cx| {
            if queue.closed.get() || queue.held.get() <= queue.bound {
                Poll::Ready(())
            } else {
                queue.waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
    }

    fn give_back(&self, bytes: usize) {
        let held = self.held.get();
        assert!(bytes <= held, "response bytes returned more than were held");
        self.held.set(held - bytes);
        self.wake_all();
    }

    fn wake_all(&self) {
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for waker in waiters {
            waker.wake();
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.queue.give_back(self.bytes);
    }
}

impl ResponseGate {
    pub fn new(queue: Rc<ResponseQueue>, seq: u64) -> ResponseGate {
        ResponseGate {
            queue,
            seq,
            reserved: RefCell::new(Vec::new()),
        }
    }

    /// Waits until `bytes` more fit within the connection's bound, or this request is the
    /// oldest unwritten one, and reserves them until the request's response is counted
    /// (see [`ResponseGate::release`]).
    pub fn reserve(&self, bytes: usize) -> Reserve<'_> {
        Reserve { gate: self, bytes }
    }

    /// Gives back what was reserved (the connection counts the response itself instead).
    pub fn release(&self) {
        self.reserved.borrow_mut().clear();
    }
}

/// The future of [`ResponseGate::reserve`].
pub struct Reserve<'a> {
    gate: &'a ResponseGate,
    bytes: usize,
}

impl Future for Reserve<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let q = &self.gate.queue;
        let oldest = q.next_written.get() == self.gate.seq;
        let fits = q.held.get() + self.bytes <= q.bound;
        if q.closed.get() || oldest || fits {
            let held = q.hold(self.bytes);
            self.gate.reserved.borrow_mut().push(held);
            return Poll::Ready(());
        }
        q.waiters.borrow_mut().push(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[test]
    fn the_oldest_request_always_proceeds_and_later_ones_wait_for_room() {
        let queue = ResponseQueue::new(100);
        let first = ResponseGate::new(queue.clone(), 0);
        let second = ResponseGate::new(queue.clone(), 1);
        let third = ResponseGate::new(queue.clone(), 2);
        // A later request takes what fits.
        assert!(second.reserve(80).now_or_never().is_some());
        assert_eq!(queue.held(), 80);
        // Another later one does not fit and waits.
        let mut waiting = Box::pin(third.reserve(50));
        assert!(waiting.as_mut().now_or_never().is_none());
        // The oldest proceeds past the bound.
        assert!(first.reserve(200).now_or_never().is_some());
        assert_eq!(queue.held(), 280);
        assert!(queue.room_to_read().now_or_never().is_none());
        // Its response is counted, then written: its bytes come back.
        let response = queue.hold(200);
        first.release();
        assert_eq!(queue.held(), 280);
        drop(response);
        queue.written(0);
        assert!(queue.room_to_read().now_or_never().is_some());
        // Still 80 + 50 > 100, but request 2 is not the oldest yet.
        assert!(waiting.as_mut().now_or_never().is_none());
        second.release();
        queue.written(1);
        assert!(waiting.now_or_never().is_some());
        assert_eq!(queue.held(), 50);
        third.release();
        assert_eq!(queue.held(), 0);
    }

    #[test]
    fn a_closed_queue_lets_everyone_through() {
        let queue = ResponseQueue::new(10);
        let later = ResponseGate::new(queue.clone(), 5);
        let _big = queue.hold(100);
        let mut waiting = Box::pin(later.reserve(10));
        assert!(waiting.as_mut().now_or_never().is_none());
        queue.close();
        assert!(waiting.now_or_never().is_some());
        assert!(queue.room_to_read().now_or_never().is_some());
    }
}
