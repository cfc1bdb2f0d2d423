//! The outgoing side of a connection: an ordered queue of PDUs drained by one writer task.
//!
//! Command tasks enqueue complete PDUs; the writer packs every header (and small data such as
//! sense or text) into one arena buffer and sends the whole batch — headers, arena pieces and
//! the data segments of Data-In PDUs, referenced in the volume's own buffers without copying —
//! with one vectored send. Every data segment copied into a batch (small data: sense, text,
//! ping data, a rejected header) is counted on [`CopyPath::IscsiSend`].

use std::cell::RefCell;
use std::collections::VecDeque;
use std::ops::{Deref, Range};
use std::os::fd::RawFd;
use std::rc::Rc;
use std::task::{Poll, Waker};

use drivers::buffer::{IoBuf, SharedBuf, StableBytes};
use drivers::error::IoError;
use drivers::ops::{self, Segment};
use engine::copy_stats::{self, CopyPath};

use crate::digest;
use crate::pdu::{padded_len, Bhs, BHS_LEN};

/// Data that follows a header.
pub enum OutData {
    /// No data segment.
    None,
    /// Small owned data (sense, text, ping data, rejected header), copied into the arena (a
    /// copy counted on [`CopyPath::IscsiSend`]).
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
struct Outbox {
    queue: VecDeque<OutItem>,
    writer: Option<Waker>,
    closed: bool,
}

/// Handle used by the connection to queue PDUs.
#[derive(Clone)]
pub struct Sender {
    outbox: Rc<RefCell<Outbox>>,
}

impl Sender {
    /// Queues an item; dropped silently when the connection is closing.
    pub fn push(&self, item: OutItem) {
        let mut ob = self.outbox.borrow_mut();
        if ob.closed {
            return;
        }
        ob.queue.push_back(item);
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

/// Creates the queue and the writer future that drains it to `fd`.
pub fn writer(fd: RawFd) -> (Sender, impl std::future::Future<Output = Result<(), IoError>>) {
    let outbox = Rc::new(RefCell::new(Outbox::default()));
    let sender = Sender { outbox: Rc::clone(&outbox) };
    let fut = run_writer(fd, outbox);
    (sender, fut)
}

const ARENA_BYTES: usize = 256 * 1024;
const MAX_SEGMENTS: usize = 512;

/// A buffer one batch sends from: the header arena and owned data, or shared segments.
enum OutBuf {
    Own(IoBuf),
    Shared(SharedBuf),
}

impl Deref for OutBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            OutBuf::Own(b) => b,
            OutBuf::Shared(b) => b,
        }
    }
}

// SAFETY: both variants are StableBytes (heap or pool memory that does not move with its
// owner), and a batch never writes a buffer while the send holds it.
unsafe impl StableBytes for OutBuf {}

struct Batch {
    /// `bufs[0]` is the header arena.
    bufs: Vec<OutBuf>,
    segments: Vec<Segment>,
    arena_pos: usize,
}

impl Batch {
    fn arena(&mut self) -> &mut IoBuf {
        match &mut self.bufs[0] {
            OutBuf::Own(b) => b,
            OutBuf::Shared(_) => unreachable!("the first buffer of a batch is its arena"),
        }
    }

    fn arena_room(&self) -> usize {
        ARENA_BYTES - self.arena_pos
    }

    fn put_arena(&mut self, bytes: &[u8]) {
        let start = self.arena_pos;
        self.arena()[start..start + bytes.len()].copy_from_slice(bytes);
        self.arena_pos += bytes.len();
        // Merge with the previous segment when it is the adjacent arena range.
        if let Some((0, last)) = self.segments.last_mut() {
            if last.end == start {
                last.end = self.arena_pos;
                return;
            }
        }
        self.segments.push((0, start..self.arena_pos));
    }

    fn put_header(&mut self, bhs: &Bhs, digests: Digests) {
        self.put_arena(&bhs.bytes);
        if digests.header {
            self.put_arena(&digest::header_digest(&bhs.bytes));
        }
    }

    fn put_tail(&mut self, data: &[u8], digests: Digests) {
        let pad = padded_len(data.len()) - data.len();
        self.put_arena(&[0u8; 4][..pad]);
        // A PDU without a data segment has no data digest either (RFC 7143 §11.1).
        if digests.data && !data.is_empty() {
            self.put_arena(&digest::data_digest(data));
        }
    }

    fn put_buf_range(&mut self, index: usize, range: Range<usize>) {
        self.segments.push((index, range));
    }

    /// Adds `segments` as buffers; returns the index of the first and each one's offset in
    /// their concatenation.
    fn put_shared(&mut self, segments: Vec<SharedBuf>) -> (usize, Vec<usize>) {
        let first = self.bufs.len();
        let mut starts = Vec::with_capacity(segments.len());
        let mut at = 0;
        for seg in segments {
            starts.push(at);
            at += seg.len();
            self.bufs.push(OutBuf::Shared(seg));
        }
        (first, starts)
    }

    /// The (buffer, range) pieces that make up `range` of the concatenation of the shared
    /// buffers added by [`Batch::put_shared`].
    fn pieces(&self, first: usize, starts: &[usize], range: Range<usize>) -> Vec<Segment> {
        let mut out = Vec::new();
        let mut i = starts.partition_point(|&s| s <= range.start).saturating_sub(1);
        let mut pos = range.start;
        while pos < range.end && i < starts.len() {
            let seg_len = self.bufs[first + i].len();
            let from = pos - starts[i];
            let to = (range.end - starts[i]).min(seg_len);
            if to > from {
                out.push((first + i, from..to));
                pos = starts[i] + to;
            }
            i += 1;
        }
        out
    }
}

fn item_arena_bytes(item: &OutItem) -> usize {
    const HDR: usize = BHS_LEN + 4 + 8;
    match item {
        OutItem::Pdu(_, OutData::Bytes(b)) => HDR + b.len() + 4,
        OutItem::Pdu(..) | OutItem::Close | OutItem::SetDigests(_) => HDR,
        OutItem::DataIn { pdus, trailer, .. } => {
            HDR * pdus.len() + trailer.as_ref().map_or(0, |(_, d)| HDR + d.len() + 4)
        }
    }
}

async fn run_writer(fd: RawFd, outbox: Rc<RefCell<Outbox>>) -> Result<(), IoError> {
    let mut arena = Some(IoBuf::zeroed(ARENA_BYTES));
    let mut d = Digests::default();
    loop {
        // Wait for work.
        std::future::poll_fn(|cx| {
            let mut ob = outbox.borrow_mut();
            if ob.queue.is_empty() {
                ob.writer = Some(cx.waker().clone());
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
        let mut batch = Batch {
            bufs: vec![OutBuf::Own(arena.take().unwrap_or_else(|| IoBuf::zeroed(ARENA_BYTES)))],
            segments: Vec::new(),
            arena_pos: 0,
        };
        let mut close_after = false;
        loop {
            let item = {
                let mut ob = outbox.borrow_mut();
                let fits = ob.queue.front().is_some_and(|it| {
                    batch.segments.is_empty()
                        || (item_arena_bytes(it) <= batch.arena_room()
                            && batch.segments.len() < MAX_SEGMENTS)
                });
                if fits {
                    ob.queue.pop_front()
                } else {
                    None
                }
            };
            let Some(item) = item else { break };
            match item {
                OutItem::Close => {
                    close_after = true;
                    break;
                }
                OutItem::SetDigests(new) => {
                    if batch.segments.is_empty() {
                        d = new;
                        continue;
                    }
                    // Send what was queued before the switch with the old setting first.
                    outbox.borrow_mut().queue.push_front(OutItem::SetDigests(new));
                    break;
                }
                OutItem::Pdu(bhs, data) => {
                    batch.put_header(&bhs, d);
                    match data {
                        OutData::None => {}
                        OutData::Bytes(bytes) => {
                            copy_stats::record(CopyPath::IscsiSend, bytes.len());
                            if bytes.len() + 8 > batch.arena_room() {
                                // Too large for the arena: send it from its own buffer.
                                let buf = IoBuf::from_slice(&bytes);
                                batch.bufs.push(OutBuf::Own(buf));
                                let index = batch.bufs.len() - 1;
                                batch.put_buf_range(index, 0..bytes.len());
                            } else {
                                batch.put_arena(&bytes);
                            }
                            batch.put_tail(&bytes, d);
                        }
                        OutData::Buf(buf, range) => {
                            let crc = d.data.then(|| digest::data_digest(&buf[range.clone()]));
                            batch.bufs.push(OutBuf::Own(buf));
                            let index = batch.bufs.len() - 1;
                            let len = range.len();
                            batch.put_buf_range(index, range);
                            let pad = padded_len(len) - len;
                            batch.put_arena(&[0u8; 4][..pad]);
                            if let Some(crc) = crc {
                                batch.put_arena(&crc);
                            }
                        }
                    }
                }
                OutItem::DataIn { segments, pdus, trailer } => {
                    let (first, starts) = batch.put_shared(segments);
                    for (bhs, range) in pdus {
                        batch.put_header(&bhs, d);
                        let len = range.len();
                        let pieces = batch.pieces(first, &starts, range);
                        let crc = d.data.then(|| {
                            let parts: Vec<&[u8]> =
                                pieces.iter().map(|(b, r)| &batch.bufs[*b][r.clone()]).collect();
                            digest::data_digest_parts(&parts)
                        });
                        for (b, r) in pieces {
                            batch.put_buf_range(b, r);
                        }
                        let pad = padded_len(len) - len;
                        batch.put_arena(&[0u8; 4][..pad]);
                        if let Some(crc) = crc {
                            batch.put_arena(&crc);
                        }
                    }
                    if let Some((bhs, data)) = trailer {
                        copy_stats::record(CopyPath::IscsiSend, data.len());
                        batch.put_header(&bhs, d);
                        batch.put_arena(&data);
                        batch.put_tail(&data, d);
                    }
                }
            }
        }
        if !batch.segments.is_empty() {
            let (res, mut bufs) = ops::send_vectored_all(fd, batch.bufs, &batch.segments).await;
            if let Some(OutBuf::Own(b)) = bufs.first() {
                if b.len() == ARENA_BYTES {
                    if let OutBuf::Own(b) = bufs.swap_remove(0) {
                        arena = Some(b);
                    }
                }
            }
            if let Err(e) = res {
                outbox.borrow_mut().closed = true;
                return Err(e);
            }
        }
        if close_after {
            let mut ob = outbox.borrow_mut();
            ob.closed = true;
            ob.queue.clear();
            return Ok(());
        }
    }
}
