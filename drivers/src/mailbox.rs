//! Bounded single-producer, single-consumer mailboxes between shards.
//!
//! A message moves ownership (buffers included) from one shard to another without copying its
//! payload. The queue is a fixed-size lock-free ring; a full mailbox makes the sender wait (back
//! pressure), an empty one makes the receiver wait. Wake-ups cross threads through the
//! receiving reactor's eventfd.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use crossbeam::queue::ArrayQueue;

use crate::atomic_waker::AtomicWaker;

struct Shared<T> {
    queue: ArrayQueue<T>,
    receiver_waker: AtomicWaker,
    sender_waker: AtomicWaker,
    sender_alive: AtomicBool,
    receiver_alive: AtomicBool,
}

/// Sending half (one producer).
pub struct MailboxSender<T> {
    shared: Arc<Shared<T>>,
}

/// Receiving half (one consumer).
pub struct MailboxReceiver<T> {
    shared: Arc<Shared<T>>,
}

/// Creates a mailbox holding at most `capacity` messages.
///
/// # Panics
/// When `capacity` is 0.
#[must_use]
pub fn mailbox<T: std::marker::Send>(capacity: usize) -> (MailboxSender<T>, MailboxReceiver<T>) {
    let shared = Arc::new(Shared {
        queue: ArrayQueue::new(capacity),
        receiver_waker: AtomicWaker::default(),
        sender_waker: AtomicWaker::default(),
        sender_alive: AtomicBool::new(true),
        receiver_alive: AtomicBool::new(true),
    });
    (MailboxSender { shared: Arc::clone(&shared) }, MailboxReceiver { shared })
}

/// Why a send failed: the receiver is gone. The message comes back.
#[derive(Debug)]
pub struct Closed<T>(pub T);

impl<T> MailboxSender<T> {
    /// Sends without waiting; gives the message back when full or closed.
    ///
    /// # Errors
    /// `Err((msg, closed))` where `closed` tells whether the receiver is gone.
    pub fn try_send(&self, msg: T) -> Result<(), (T, bool)> {
        if !self.shared.receiver_alive.load(Ordering::Acquire) {
            return Err((msg, true));
        }
        match self.shared.queue.push(msg) {
            Ok(()) => {
                self.shared.receiver_waker.wake();
                Ok(())
            }
            Err(msg) => Err((msg, false)),
        }
    }

    /// Sends, waiting while the mailbox is full.
    pub fn send(&self, msg: T) -> Send<'_, T> {
        Send { sender: self, msg: Some(msg) }
    }
}

/// Future of [`MailboxSender::send`].
pub struct Send<'a, T> {
    sender: &'a MailboxSender<T>,
    msg: Option<T>,
}

impl<T> Unpin for Send<'_, T> {}

impl<T> Future for Send<'_, T> {
    type Output = Result<(), Closed<T>>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(msg) = self.msg.take() else { return Poll::Ready(Ok(())) };
        match self.sender.try_send(msg) {
            Ok(()) => Poll::Ready(Ok(())),
            Err((msg, true)) => Poll::Ready(Err(Closed(msg))),
            Err((msg, false)) => {
                self.sender.shared.sender_waker.register(cx.waker());
                // Re-check after registering so a pop in between is not missed.
                match self.sender.try_send(msg) {
                    Ok(()) => Poll::Ready(Ok(())),
                    Err((msg, true)) => Poll::Ready(Err(Closed(msg))),
                    Err((msg, false)) => {
                        self.msg = Some(msg);
                        Poll::Pending
                    }
                }
            }
        }
    }
}

impl<T> Drop for MailboxSender<T> {
    fn drop(&mut self) {
        self.shared.sender_alive.store(false, Ordering::Release);
        self.shared.receiver_waker.wake();
    }
}

impl<T> MailboxReceiver<T> {
    /// Takes a message without waiting.
    pub fn try_recv(&self) -> Option<T> {
        let msg = self.shared.queue.pop();
        if msg.is_some() {
            self.shared.sender_waker.wake();
        }
        msg
    }

    /// Waits for the next message; `None` once the sender is gone and the queue is empty.
    pub fn recv(&self) -> Recv<'_, T> {
        Recv { receiver: self }
    }

    /// Messages waiting.
    #[must_use]
    pub fn len(&self) -> usize {
        self.shared.queue.len()
    }

    /// True when no message waits.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.shared.queue.is_empty()
    }
}

impl<T> Drop for MailboxReceiver<T> {
    fn drop(&mut self) {
        self.shared.receiver_alive.store(false, Ordering::Release);
        self.shared.sender_waker.wake();
    }
}

/// Future of [`MailboxReceiver::recv`].
pub struct Recv<'a, T> {
    receiver: &'a MailboxReceiver<T>,
}

impl<T> Future for Recv<'_, T> {
    type Output = Option<T>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        if let Some(msg) = self.receiver.try_recv() {
            return Poll::Ready(Some(msg));
        }
        self.receiver.shared.receiver_waker.register(cx.waker());
        if let Some(msg) = self.receiver.try_recv() {
            return Poll::Ready(Some(msg));
        }
        if !self.receiver.shared.sender_alive.load(Ordering::Acquire) {
            return Poll::Ready(self.receiver.try_recv());
        }
        Poll::Pending
    }
}
