//! The outgoing side of a connection: an ordered queue of PDUs drained by one writer task.
//!
//! The login phase and command tasks enqueue complete PDUs on a [`Sender`]; the transport's
//! writer ([`Transport::run_writer`]) drains the [`Outbox`] in order. Over TCP it packs every
//! header (and small data such as sense or text) into one arena buffer and sends the whole
//! batch — headers, arena pieces and the data segments of Data-In PDUs, referenced in the
//! volume's own buffers without copying — with one vectored send
//! ([`crate::transport::tcp`]). Every data segment copied into a batch (small data: sense,
//! text, ping data, a rejected header) is counted on `CopyPath::IscsiSend`.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::ops::Range;
use std::rc::Rc;
use std::task::{Poll, Waker};

use drivers::buffer::{IoBuf, SharedBuf};
use drivers::error::IoError;

use crate::pdu::Bhs;
use crate::transport::Transport;

/// Data that follows a header.
pub enum OutData {
    /// No data segment.
    None,
    /// Small owned data (sense, text, ping data, rejected header), copied into the arena (a
    /// copy counted on `CopyPath::IscsiSend`).
    Bytes(Vec<u8>),
    /// A range of a data buffer, sent in place.
    Buf(IoBuf, Range<usize>),
}

/// One item of the queue.
pub enum OutItem {
    /// A single PDU.
    Pdu(Bhs, OutData),
    /// Several PDUs whose data segments are ranges of the concatenation of `segments` (a
    /// Data-In sequence), plus an optional trailing PDU (the SCSI Response when status is not
    /// collapsed). A PDU may span several segments; each is sent in place.
    DataIn {
        segments: Vec<SharedBuf>,
        pdus: Vec<(Bhs, Range<usize>)>,
        trailer: Option<(Bhs, Vec<u8>)>,
    },
    /// Switch digests for every item after this one (the end of login).
    SetDigests(Digests),
    /// Close the connection once everything before this item is sent.
    Close,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<OutItem>,
    writer: Option<Waker>,
    closed: bool,
}

/// Handle used by the connection to queue PDUs.
#[derive(Clone)]
pub struct Sender {
    outbox: Rc<RefCell<Queue>>,
}

/// The writer's end of the queue.
pub struct Outbox {
    queue: Rc<RefCell<Queue>>,
}

impl Outbox {
    /// Waits until the queue holds an item.
    pub async fn ready(&self) {
        std::future::poll_fn(|cx| {
            let mut q = self.queue.borrow_mut();
            if q.items.is_empty() {
                q.writer = Some(cx.waker().clone());
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
    }

    /// Takes the first item when `fits` accepts it.
    pub fn pop_if(&self, fits: impl FnOnce(&OutItem) -> bool) -> Option<OutItem> {
        let mut q = self.queue.borrow_mut();
        if q.items.front().is_some_and(fits) {
            q.items.pop_front()
        } else {
            None
        }
    }

    /// Puts an item back at the front (it is sent with the next batch).
    pub fn push_front(&self, item: OutItem) {
        self.queue.borrow_mut().items.push_front(item);
    }

    /// The writer stopped: nothing more is queued; with `drop_queued`, what is queued goes.
    pub fn close(&self, drop_queued: bool) {
        let mut q = self.queue.borrow_mut();
        q.closed = true;
        if drop_queued {
            q.items.clear();
        }
    }
}

impl Sender {
    /// Queues an item; dropped silently when the connection is closing.
    pub fn push(&self, item: OutItem) {
        let mut ob = self.outbox.borrow_mut();
        if ob.closed {
            return;
        }
        ob.items.push_back(item);
        if let Some(w) = ob.writer.take() {
            w.wake();
        }
    }

    /// True once the writer stopped.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.outbox.borrow().closed
    }

    /// Stops accepting items and wakes the writer.
    pub fn close(&self) {
        self.push(OutItem::Close);
    }
}

/// Digest settings negotiated for the full-feature phase.
#[derive(Debug, Clone, Copy, Default)]
pub struct Digests {
    /// CRC32C header digest.
    pub header: bool,
    /// CRC32C data digest.
    pub data: bool,
}

/// Creates the queue and the writer future that drains it through `transport`.
pub fn writer<T: Transport>(
    transport: &T,
) -> (Sender, impl std::future::Future<Output = Result<(), IoError>> + 'static) {
    let queue = Rc::new(RefCell::new(Queue::default()));
    let sender = Sender { outbox: Rc::clone(&queue) };
    let fut = transport.clone().run_writer(Outbox { queue });
    (sender, fut)
}
