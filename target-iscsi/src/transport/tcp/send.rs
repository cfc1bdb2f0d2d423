//! The TCP writer: drains a connection's [`Outbox`] in batches. Every header (and small data
//! such as sense or text) is packed into one arena buffer; the batch — headers, arena pieces
//! and the data segments of Data-In PDUs, referenced in the volume's own buffers without
//! copying — goes out with one vectored send. Every data segment copied into a batch (small
//! data: sense, text, ping data, a rejected header) is counted on [`CopyPath::IscsiSend`].

use std::ops::{Deref, Range};
use std::os::fd::RawFd;

use drivers::buffer::{IoBuf, SharedBuf, StableBytes};
use drivers::error::IoError;
use drivers::ops::{self, Segment};
use engine::copy_stats::{self, CopyPath};

use crate::digest;
use crate::pdu::{padded_len, Bhs, BHS_LEN};
use crate::writer::{Digests, OutData, OutItem, Outbox};

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

/// What filling a batch ended with.
enum Filled {
    /// The queue is empty or the next item does not fit: send the batch.
    Full,
    /// A Close item: send the batch, then stop.
    Close,
}

/// Drains `outbox` to `fd` until a Close item or a send error.
pub(super) async fn run_writer(fd: RawFd, outbox: Outbox) -> Result<(), IoError> {
    let mut arena = Some(IoBuf::zeroed(ARENA_BYTES));
    let mut d = Digests::default();
    loop {
        outbox.ready().await;
        let mut batch = Batch {
            bufs: vec![OutBuf::Own(arena.take().unwrap_or_else(|| IoBuf::zeroed(ARENA_BYTES)))],
            segments: Vec::new(),
            arena_pos: 0,
        };
        let filled = fill_batch(&outbox, &mut batch, &mut d);
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
                outbox.close(false);
                return Err(e);
            }
        }
        if let Filled::Close = filled {
            outbox.close(true);
            return Ok(());
        }
    }
}

/// Moves queued items into `batch` while they fit; `d` follows the SetDigests items taken.
fn fill_batch(outbox: &Outbox, batch: &mut Batch, d: &mut Digests) -> Filled {
    loop {
        let item = outbox.pop_if(|it| {
            batch.segments.is_empty()
                || (item_arena_bytes(it) <= batch.arena_room()
                    && batch.segments.len() < MAX_SEGMENTS)
        });
        let Some(item) = item else { return Filled::Full };
        match item {
            OutItem::Close => return Filled::Close,
            OutItem::SetDigests(new) => {
                if batch.segments.is_empty() {
                    *d = new;
                    continue;
                }
                // Send what was queued before the switch with the old setting first.
                outbox.push_front(OutItem::SetDigests(new));
                return Filled::Full;
            }
            OutItem::Pdu(bhs, data) => {
                batch.put_header(&bhs, *d);
                put_pdu_data(batch, data, *d);
            }
            OutItem::DataIn { segments, pdus, trailer } => {
                put_data_in(batch, segments, pdus, trailer, *d);
            }
        }
    }
}

/// The data segment of a single PDU, after its header.
fn put_pdu_data(batch: &mut Batch, data: OutData, d: Digests) {
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

/// A Data-In sequence: each PDU's header, then its data in place in the shared segments.
fn put_data_in(
    batch: &mut Batch,
    segments: Vec<SharedBuf>,
    pdus: Vec<(Bhs, Range<usize>)>,
    trailer: Option<(Bhs, Vec<u8>)>,
    d: Digests,
) {
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
