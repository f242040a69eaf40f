//! `GlommioRuntime`: openraft's `AsyncRuntime` on a glommio executor (single-threaded feature).
//!
//! Raft runs on shard 0's executor, like every other piece of that shard: tasks are
//! `glommio::spawn_local`, timers are glommio timers, and the channels and mutex are
//! single-threaded (`Rc`/`RefCell`; no waker crosses threads). Everything here lives on the
//! core that created it.
//!
//! The channels are written here rather than taken from futures-channel because openraft's
//! contract asks for what futures-channel lacks: a bounded mpsc whose capacity is exactly its
//! buffer (futures adds one slot per sender) with weak senders, and a watch channel.

use std::cell::{Ref, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures::FutureExt;
use openraft::rt::watch::{RecvError, SendError as WatchSendError};
use openraft::rt::{
    AsyncRuntime, Mpsc, MpscReceiver, MpscSender, MpscWeakSender, Mutex, Oneshot, OneshotSender,
    OptionalSend, OptionalSync, SendError, TryRecvError, Watch, WatchReceiver, WatchSender,
};

use crate::limits;

/// openraft's runtime on the current thread's glommio executor.
///
/// `new`/`block_on` (tests, openraft's conformance suite) build their own small executor;
/// in the broker Raft is started from inside shard 0's executor and only the associated
/// functions (`spawn`, `sleep`, channels) are used.
pub struct GlommioRuntime {
    executor: glommio::LocalExecutor,
}

impl fmt::Debug for GlommioRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GlommioRuntime")
            .field("executor", &self.executor.id())
            .finish()
    }
}

/// Builds a glommio executor small enough for the machine's 8 MiB locked-memory limit
/// (`limits::EXECUTOR_IO_MEMORY_BYTES`, `limits::EXECUTOR_RING_DEPTH`), not pinned to a core.
pub fn small_executor() -> Result<glommio::LocalExecutor, glommio::GlommioError<()>> {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(limits::EXECUTOR_IO_MEMORY_BYTES)
        .ring_depth(limits::EXECUTOR_RING_DEPTH)
        .make()
}

/// Why a spawned task gave no output.
#[derive(Debug)]
pub enum JoinError {
    /// The task panicked (the panic is caught so that openraft can report it as fatal).
    Panicked(String),
    /// The executor dropped the task before it finished.
    Cancelled,
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Panicked(msg) => write!(f, "task panicked: {msg}"),
            JoinError::Cancelled => write!(f, "task cancelled"),
        }
    }
}

type PanicPayload = Box<dyn std::any::Any + Send>;

fn panic_message(payload: &PanicPayload) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic".to_string()
    }
}

/// A detached glommio task's handle: dropping it does not cancel the task (tokio's semantics,
/// which openraft expects).
pub struct JoinHandle<T> {
    inner: glommio::task::JoinHandle<Result<T, PanicPayload>>,
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.inner).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => Poll::Ready(Err(JoinError::Cancelled)),
            Poll::Ready(Some(Ok(value))) => Poll::Ready(Ok(value)),
            Poll::Ready(Some(Err(payload))) => {
                Poll::Ready(Err(JoinError::Panicked(panic_message(&payload))))
            }
        }
    }
}

/// A glommio timer resolving to `()`.
pub struct Sleep {
    timer: glommio::timer::Timer,
}

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.timer).poll(cx).map(|_| ())
    }
}

/// The deadline of a [`Timeout`] passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "deadline elapsed")
    }
}

/// A future bounded by a glommio timer: the future is polled first, so one that is ready at
/// the deadline still wins.
pub struct Timeout<R, F> {
    future: Pin<Box<F>>,
    sleep: Sleep,
    _output: std::marker::PhantomData<fn() -> R>,
}

impl<R, F: Future<Output = R>> Future for Timeout<R, F> {
    type Output = Result<R, Elapsed>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(value) = self.future.as_mut().poll(cx) {
            return Poll::Ready(Ok(value));
        }
        match Pin::new(&mut self.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRuntime for GlommioRuntime {
    type JoinError = JoinError;
    type JoinHandle<T: OptionalSend + 'static> = JoinHandle<T>;
    type Sleep = Sleep;
    type Instant = Instant;
    type TimeoutError = Elapsed;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = Timeout<R, T>;
    type ThreadLocalRng = rand010::rngs::ThreadRng;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        let inner = glommio::spawn_local(AssertUnwindSafe(future).catch_unwind()).detach();
        JoinHandle { inner }
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        Sleep {
            timer: glommio::timer::Timer::new(duration),
        }
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        Self::sleep(deadline.saturating_duration_since(Instant::now()))
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        Timeout {
            future: Box::pin(future),
            sleep: Self::sleep(duration),
            _output: std::marker::PhantomData,
        }
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        Self::timeout(deadline.saturating_duration_since(Instant::now()), future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        matches!(join_error, JoinError::Panicked(_))
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        rand010::rng()
    }

    type Mpsc = LocalMpsc;
    type Watch = LocalWatch;
    type Oneshot = LocalOneshot;
    type Mutex<T: OptionalSend + 'static> = LocalMutex<T>;

    /// A fresh small executor (tests only: the broker runs Raft on shard 0's). `threads` is
    /// ignored: glommio runs one thread per executor.
    fn new(_threads: usize) -> Self {
        match small_executor() {
            Ok(executor) => GlommioRuntime { executor },
            // Test-only constructor with no way to return an error (openraft's signature).
            Err(err) => panic!("cannot create a glommio executor: {err}"),
        }
    }

    fn block_on<F, T>(&mut self, future: F) -> T
    where
        F: Future<Output = T>,
    {
        self.executor.run(future)
    }
}

// ---------------------------------------------------------------------------------------------
// mpsc: bounded, capacity exactly `buffer`, with weak senders.

struct MpscShared<T> {
    queue: VecDeque<T>,
    capacity: usize,
    senders: usize,
    receiver_alive: bool,
    receiver_waker: Option<Waker>,
    sender_wakers: Vec<Waker>,
}

impl<T> MpscShared<T> {
    fn wake_senders(&mut self) {
        for waker in self.sender_wakers.drain(..) {
            waker.wake();
        }
    }
    fn wake_receiver(&mut self) {
        if let Some(waker) = self.receiver_waker.take() {
            waker.wake();
        }
    }
}

/// openraft's bounded mpsc on one thread.
pub struct LocalMpsc;

pub struct MpscTx<T> {
    shared: Rc<RefCell<MpscShared<T>>>,
}

pub struct MpscRx<T> {
    shared: Rc<RefCell<MpscShared<T>>>,
}

pub struct MpscWeakTx<T> {
    shared: Weak<RefCell<MpscShared<T>>>,
}

impl Mpsc for LocalMpsc {
    type Sender<T: OptionalSend> = MpscTx<T>;
    type Receiver<T: OptionalSend> = MpscRx<T>;
    type WeakSender<T: OptionalSend> = MpscWeakTx<T>;

    fn channel<T: OptionalSend>(buffer: usize) -> (MpscTx<T>, MpscRx<T>) {
        let shared = Rc::new(RefCell::new(MpscShared {
            queue: VecDeque::new(),
            capacity: buffer.max(1),
            senders: 1,
            receiver_alive: true,
            receiver_waker: None,
            sender_wakers: Vec::new(),
        }));
        (
            MpscTx {
                shared: shared.clone(),
            },
            MpscRx { shared },
        )
    }
}

impl<T> Clone for MpscTx<T> {
    fn clone(&self) -> Self {
        self.shared.borrow_mut().senders += 1;
        MpscTx {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for MpscTx<T> {
    fn drop(&mut self) {
        let mut shared = self.shared.borrow_mut();
        shared.senders -= 1;
        if shared.senders == 0 {
            shared.wake_receiver();
        }
    }
}

impl<T: OptionalSend> MpscSender<LocalMpsc, T> for MpscTx<T> {
    fn send(&self, msg: T) -> impl Future<Output = Result<(), SendError<T>>> {
        let mut msg = Some(msg);
        futures::future::poll_fn(move |cx| {
            let mut shared = self.shared.borrow_mut();
            let Some(value) = msg.take() else {
                // Polled after completion: nothing left to send.
                return Poll::Pending;
            };
            if !shared.receiver_alive {
                return Poll::Ready(Err(SendError(value)));
            }
            if shared.queue.len() < shared.capacity {
                shared.queue.push_back(value);
                shared.wake_receiver();
                return Poll::Ready(Ok(()));
            }
            msg = Some(value);
            if !shared.sender_wakers.iter().any(|w| w.will_wake(cx.waker())) {
                shared.sender_wakers.push(cx.waker().clone());
            }
            Poll::Pending
        })
    }

    fn downgrade(&self) -> MpscWeakTx<T> {
        MpscWeakTx {
            shared: Rc::downgrade(&self.shared),
        }
    }
}

impl<T> Clone for MpscWeakTx<T> {
    fn clone(&self) -> Self {
        MpscWeakTx {
            shared: self.shared.clone(),
        }
    }
}

impl<T: OptionalSend> MpscWeakSender<LocalMpsc, T> for MpscWeakTx<T> {
    fn upgrade(&self) -> Option<MpscTx<T>> {
        let shared = self.shared.upgrade()?;
        let mut inner = shared.borrow_mut();
        if inner.senders == 0 {
            return None;
        }
        inner.senders += 1;
        drop(inner);
        Some(MpscTx { shared })
    }
}

impl<T> Drop for MpscRx<T> {
    fn drop(&mut self) {
        let mut shared = self.shared.borrow_mut();
        shared.receiver_alive = false;
        shared.wake_senders();
    }
}

impl<T: OptionalSend> MpscReceiver<T> for MpscRx<T> {
    fn recv(&mut self) -> impl Future<Output = Option<T>> {
        futures::future::poll_fn(move |cx| {
            let mut shared = self.shared.borrow_mut();
            if let Some(value) = shared.queue.pop_front() {
                shared.wake_senders();
                return Poll::Ready(Some(value));
            }
            if shared.senders == 0 {
                return Poll::Ready(None);
            }
            shared.receiver_waker = Some(cx.waker().clone());
            Poll::Pending
        })
    }

    fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let mut shared = self.shared.borrow_mut();
        if let Some(value) = shared.queue.pop_front() {
            shared.wake_senders();
            return Ok(value);
        }
        if shared.senders == 0 {
            Err(TryRecvError::Disconnected)
        } else {
            Err(TryRecvError::Empty)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// watch: the last value, a version, and the wakers of receivers waiting for a newer one.

struct WatchShared<T> {
    value: T,
    version: u64,
    senders: usize,
    receivers: usize,
    wakers: Vec<Waker>,
}

impl<T> WatchShared<T> {
    fn bump(&mut self) {
        self.version += 1;
        for waker in self.wakers.drain(..) {
            waker.wake();
        }
    }
}

/// openraft's watch channel on one thread.
pub struct LocalWatch;

pub struct WatchTx<T> {
    shared: Rc<RefCell<WatchShared<T>>>,
}

pub struct WatchRx<T> {
    shared: Rc<RefCell<WatchShared<T>>>,
    seen: u64,
}

impl Watch for LocalWatch {
    type Sender<T: OptionalSend + OptionalSync> = WatchTx<T>;
    type Receiver<T: OptionalSend + OptionalSync> = WatchRx<T>;
    type Ref<'a, T: OptionalSend + 'a> = Ref<'a, T>;

    fn channel<T: OptionalSend + OptionalSync>(init: T) -> (WatchTx<T>, WatchRx<T>) {
        let shared = Rc::new(RefCell::new(WatchShared {
            value: init,
            version: 0,
            senders: 1,
            receivers: 1,
            wakers: Vec::new(),
        }));
        (
            WatchTx {
                shared: shared.clone(),
            },
            WatchRx { shared, seen: 0 },
        )
    }
}

impl<T> Clone for WatchTx<T> {
    fn clone(&self) -> Self {
        self.shared.borrow_mut().senders += 1;
        WatchTx {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for WatchTx<T> {
    fn drop(&mut self) {
        let mut shared = self.shared.borrow_mut();
        shared.senders -= 1;
        if shared.senders == 0 {
            for waker in shared.wakers.drain(..) {
                waker.wake();
            }
        }
    }
}

impl<T: OptionalSend + OptionalSync> WatchSender<LocalWatch, T> for WatchTx<T> {
    fn send(&self, value: T) -> Result<(), WatchSendError<T>> {
        let mut shared = self.shared.borrow_mut();
        if shared.receivers == 0 {
            return Err(WatchSendError(value));
        }
        shared.value = value;
        shared.bump();
        Ok(())
    }

    fn send_if_modified<F>(&self, modify: F) -> bool
    where
        F: FnOnce(&mut T) -> bool,
    {
        let mut shared = self.shared.borrow_mut();
        let modified = modify(&mut shared.value);
        if modified {
            shared.bump();
        }
        modified
    }

    fn borrow_watched(&self) -> Ref<'_, T> {
        Ref::map(self.shared.borrow(), |s| &s.value)
    }

    fn subscribe(&self) -> WatchRx<T> {
        let mut shared = self.shared.borrow_mut();
        shared.receivers += 1;
        let seen = shared.version;
        drop(shared);
        WatchRx {
            shared: self.shared.clone(),
            seen,
        }
    }
}

impl<T> Clone for WatchRx<T> {
    fn clone(&self) -> Self {
        self.shared.borrow_mut().receivers += 1;
        WatchRx {
            shared: self.shared.clone(),
            seen: self.seen,
        }
    }
}

impl<T> Drop for WatchRx<T> {
    fn drop(&mut self) {
        self.shared.borrow_mut().receivers -= 1;
    }
}

impl<T: OptionalSend + OptionalSync> WatchReceiver<LocalWatch, T> for WatchRx<T> {
    async fn changed(&mut self) -> Result<(), RecvError> {
        futures::future::poll_fn(|cx| {
            let mut shared = self.shared.borrow_mut();
            if shared.version != self.seen {
                self.seen = shared.version;
                return Poll::Ready(Ok(()));
            }
            if shared.senders == 0 {
                return Poll::Ready(Err(RecvError(())));
            }
            if !shared.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                shared.wakers.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    fn borrow_watched(&self) -> Ref<'_, T> {
        Ref::map(self.shared.borrow(), |s| &s.value)
    }

    fn borrow_and_update(&mut self) -> Ref<'_, T> {
        let shared = self.shared.borrow();
        self.seen = shared.version;
        Ref::map(shared, |s| &s.value)
    }
}

// ---------------------------------------------------------------------------------------------
// oneshot and mutex: futures' own, which are correct on one thread.

/// openraft's oneshot: futures-channel's.
pub struct LocalOneshot;

pub struct OneshotTx<T>(futures::channel::oneshot::Sender<T>);

impl Oneshot for LocalOneshot {
    type Sender<T: OptionalSend> = OneshotTx<T>;
    type Receiver<T: OptionalSend> = futures::channel::oneshot::Receiver<T>;
    type ReceiverError = futures::channel::oneshot::Canceled;

    fn channel<T: OptionalSend>() -> (OneshotTx<T>, futures::channel::oneshot::Receiver<T>) {
        let (tx, rx) = futures::channel::oneshot::channel();
        (OneshotTx(tx), rx)
    }
}

impl<T: OptionalSend> OneshotSender<T> for OneshotTx<T> {
    fn send(self, t: T) -> Result<(), T> {
        self.0.send(t)
    }
}

/// openraft's async mutex: `futures::lock::Mutex`. openraft takes it only around its own
/// short critical sections (no request queues behind it), so its lack of strict FIFO order
/// does not starve anyone here.
pub struct LocalMutex<T>(futures::lock::Mutex<T>);

impl<T: OptionalSend + 'static> Mutex<T> for LocalMutex<T> {
    type Guard<'a>
        = futures::lock::MutexGuard<'a, T>
    where
        Self: 'a;

    fn new(value: T) -> Self {
        LocalMutex(futures::lock::Mutex::new(value))
    }

    fn lock(&self) -> impl Future<Output = Self::Guard<'_>> {
        self.0.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// openraft's own conformance suite for runtimes (issue 10: "openraft's own runtime test
    /// suite passes on the glommio runtime implementation").
    #[test]
    fn openraft_runtime_suite_passes() {
        openraft::rt::testing::Suite::<GlommioRuntime>::test_all();
    }
}
