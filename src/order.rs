//! A FIFO ticket queue: a place is taken synchronously, the turn is awaited later.
//!
//! Order must be decided before the first `.await` (STYLE: "Order is decided before the first
//! `.await`"). A lock that queues its waiter only when its future is first polled lets a request
//! that arrived later, but whose task ran first, overtake one that arrived earlier. Here the
//! place is taken by [`OrderQueue::take`], a plain function call, at the moment the order is
//! known (a request read from its connection, a message taken off the mesh); the holder then
//! awaits [`Ticket::turn`] however long it needs first (validation, routing), and the turns
//! come strictly in the order the tickets were taken. Dropping a ticket — after its turn, before
//! it, or without ever awaiting it — gives the turn to the next one.
//!
//! Users: each connection (the order in which state-changing requests reach their owners), each
//! partition log's append queue (the order in which appends take their offsets), and the log's
//! other fair locks (flush, checkpoint, delete): a caller that releases and at once asks again
//! queues behind everyone already waiting, which neither `futures::lock::Mutex` nor glommio
//! 0.9's `Semaphore` guarantees (the semaphore wakes its oldest waiter but leaves the units
//! free for a new caller that finds the wait list empty).
//!
//! Lives on one core (`Rc`); never sent across shards.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// A FIFO of tickets. Cheap to clone (shares the queue).
#[derive(Clone, Default)]
pub struct OrderQueue {
    inner: Rc<RefCell<Inner>>,
}

#[derive(Default)]
struct Inner {
    /// The next ticket to hand out.
    next: u64,
    /// The ticket whose turn it is (every ticket below it is finished).
    head: u64,
    /// Tickets above `head` already dropped; bounded by the tickets outstanding.
    finished: BTreeSet<u64>,
    /// Tasks waiting for their turn, by ticket.
    waiting: BTreeMap<u64, Waker>,
}

/// A place in an [`OrderQueue`]. The turn passes on when it is dropped.
pub struct Ticket {
    inner: Rc<RefCell<Inner>>,
    id: u64,
}

impl OrderQueue {
    pub fn new() -> OrderQueue {
        OrderQueue::default()
    }

    /// Takes the next place, now: this is the moment that decides the order.
    pub fn take(&self) -> Ticket {
        let mut inner = self.inner.borrow_mut();
        let id = inner.next;
        inner.next += 1;
        Ticket {
            inner: self.inner.clone(),
            id,
        }
    }

    /// Takes a place and waits for its turn: a fair (FIFO) lock. The returned ticket is the guard.
    pub async fn lock(&self) -> Ticket {
        let ticket = self.take();
        ticket.turn().await;
        ticket
    }

    /// Whether a ticket is out: held by the holder of the turn, or waiting for it. Inside the
    /// turn (the lock held) this is always true; for assertions.
    pub fn is_locked(&self) -> bool {
        self.outstanding() > 0
    }

    /// Tickets handed out and not yet dropped.
    pub fn outstanding(&self) -> usize {
        let inner = self.inner.borrow();
        (inner.next - inner.head) as usize - inner.finished.len()
    }
}

impl Ticket {
    /// Resolves when every ticket taken before this one has been dropped.
    pub fn turn(&self) -> Turn<'_> {
        Turn { ticket: self }
    }

    fn is_turn(&self) -> bool {
        self.inner.borrow().head == self.id
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut inner = self.inner.borrow_mut();
        inner.waiting.remove(&self.id);
        if inner.head != self.id {
            inner.finished.insert(self.id);
            return;
        }
        inner.head += 1;
        loop {
            let head = inner.head;
            if !inner.finished.remove(&head) {
                break;
            }
            inner.head += 1;
        }
        let head = inner.head;
        if let Some(waker) = inner.waiting.remove(&head) {
            drop(inner);
            waker.wake();
        }
    }
}

/// The future of [`Ticket::turn`].
pub struct Turn<'a> {
    ticket: &'a Ticket,
}

impl Future for Turn<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.ticket.is_turn() {
            return Poll::Ready(());
        }
        self.ticket
            .inner
            .borrow_mut()
            .waiting
            .insert(self.ticket.id, cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[test]
    fn turns_follow_the_order_tickets_were_taken() {
        let q = OrderQueue::new();
        let a = q.take();
        let b = q.take();
        let c = q.take();
        assert!(a.turn().now_or_never().is_some());
        assert!(b.turn().now_or_never().is_none());
        assert!(c.turn().now_or_never().is_none());
        // c finishes before its turn (a cancelled request): b still waits for a.
        drop(c);
        assert!(b.turn().now_or_never().is_none());
        drop(a);
        assert!(b.turn().now_or_never().is_some());
        let d = q.take();
        assert!(d.turn().now_or_never().is_none());
        drop(b);
        // c was already finished, so the turn skips it.
        assert!(d.turn().now_or_never().is_some());
        assert_eq!(q.outstanding(), 1);
        drop(d);
        assert_eq!(q.outstanding(), 0);
    }

    #[test]
    fn a_waiting_task_is_woken_when_its_turn_comes() {
        let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(|| async {
                let q = OrderQueue::new();
                let log = Rc::new(RefCell::new(Vec::new()));
                let first = q.take();
                let tickets: Vec<Ticket> = (0..5).map(|_| q.take()).collect();
                // Spawned in reverse order: the turns still come in ticket order.
                let mut tasks = Vec::new();
                for (i, t) in tickets.into_iter().enumerate().rev() {
                    let log = log.clone();
                    tasks.push(glommio::spawn_local(async move {
                        t.turn().await;
                        glommio::yield_if_needed().await;
                        log.borrow_mut().push(i);
                        drop(t);
                    }));
                }
                glommio::executor().yield_task_queue_now().await;
                drop(first);
                for t in tasks {
                    t.await;
                }
                let seen = log.borrow().clone();
                seen
            })
            .expect("executor");
        assert_eq!(ex.join().expect("join"), vec![0, 1, 2, 3, 4]);
    }
}
