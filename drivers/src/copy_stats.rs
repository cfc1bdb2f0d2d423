//! Payload copy counters (DESIGN §3): how many payload bytes each data path copies, and how
//! many I/Os it served, so "zero copy" is a measured property rather than a claim.
//!
//! Every place on the read, write, sync and log paths that copies payload bytes (a memcpy of
//! data an initiator wrote or will read) calls [`record`]; every I/O a path serves calls [`io`].
//! Counters live in cache-line padded slots, one per thread (shards are threads), so the hot
//! path never writes a cache line another core writes. [`snapshot`] sums the slots.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// A data path whose payload copies are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CopyPath {
    /// iSCSI receive: data segments copied after they arrive (login and text keys, ping
    /// data, the write half of COMPARE AND WRITE, ORWRITE's merge). SCSI Command and Data-Out
    /// segments are received straight into the command's buffer and copy nothing.
    IscsiReceive,
    /// iSCSI send: data segments copied into the connection's send batch (sense data, text
    /// and login answers, ping data, a rejected header). Data-In segments are sent from the
    /// volume's buffers in place and copy nothing.
    IscsiSend,
    /// Volume writes: data into dirty blocks (sub-block merges, unaligned buffers).
    VolumeWrite,
    /// Volume reads: cache, dirty and device blocks into the reader's buffer.
    VolumeRead,
    /// Txg sync: dirty blocks into device write buffers.
    SyncWrite,
    /// Intent log: write records into log blocks.
    LogWrite,
    /// Compression and decompression buffers.
    Compression,
    /// Dedup (byte-for-byte verification buffers, table copies).
    Dedup,
}

impl CopyPath {
    /// Every path, in display order.
    pub const ALL: [CopyPath; 8] = [
        CopyPath::IscsiReceive,
        CopyPath::IscsiSend,
        CopyPath::VolumeWrite,
        CopyPath::VolumeRead,
        CopyPath::SyncWrite,
        CopyPath::LogWrite,
        CopyPath::Compression,
        CopyPath::Dedup,
    ];

    /// Stable snake_case name (RPC fields, metric labels).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            CopyPath::IscsiReceive => "iscsi_receive",
            CopyPath::IscsiSend => "iscsi_send",
            CopyPath::VolumeWrite => "volume_write",
            CopyPath::VolumeRead => "volume_read",
            CopyPath::SyncWrite => "sync_write",
            CopyPath::LogWrite => "log_write",
            CopyPath::Compression => "compression",
            CopyPath::Dedup => "dedup",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

const PATHS: usize = CopyPath::ALL.len();
/// Slots; threads beyond this share slots (still correct, only less private).
const SLOTS: usize = 64;

/// One thread's counters, alone on its cache lines.
#[repr(align(128))]
struct Slot {
    bytes: [AtomicU64; PATHS],
    ios: [AtomicU64; PATHS],
}

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicU64 = AtomicU64::new(0);
#[allow(clippy::declare_interior_mutable_const)]
const EMPTY_SLOT: Slot = Slot { bytes: [ZERO; PATHS], ios: [ZERO; PATHS] };
static SLOTS_TABLE: [Slot; SLOTS] = [EMPTY_SLOT; SLOTS];
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static MY_SLOT: usize = NEXT_SLOT.fetch_add(1, Ordering::Relaxed) % SLOTS;
}

fn slot() -> &'static Slot {
    let i = MY_SLOT.try_with(|s| *s).unwrap_or(0);
    &SLOTS_TABLE[i]
}

/// Counts `bytes` of payload copied on `path`.
pub fn record(path: CopyPath, bytes: usize) {
    if bytes > 0 {
        slot().bytes[path.index()].fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// Counts one I/O served by `path`.
pub fn io(path: CopyPath) {
    slot().ios[path.index()].fetch_add(1, Ordering::Relaxed);
}

/// Totals of one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PathCopies {
    /// The path.
    pub path: Option<CopyPath>,
    /// Payload bytes copied.
    pub bytes_copied: u64,
    /// I/Os served.
    pub ios: u64,
}

impl PathCopies {
    /// Payload bytes copied per I/O (0 without I/O).
    #[must_use]
    pub fn bytes_per_io(&self) -> f64 {
        match self.ios {
            0 => 0.0,
            ios => self.bytes_copied as f64 / ios as f64,
        }
    }
}

/// Totals of every path at one moment, in [`CopyPath::ALL`] order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopySnapshot {
    /// One entry per path.
    pub paths: [PathCopies; PATHS],
}

impl CopySnapshot {
    /// The totals of `path`.
    #[must_use]
    pub fn get(&self, path: CopyPath) -> PathCopies {
        self.paths[path.index()]
    }

    /// Payload bytes copied on every path together.
    #[must_use]
    pub fn total_bytes_copied(&self) -> u64 {
        self.paths.iter().map(|p| p.bytes_copied).sum()
    }

    /// What happened between `earlier` and `self` (counters only grow).
    #[must_use]
    pub fn since(&self, earlier: &CopySnapshot) -> CopySnapshot {
        let mut out = *self;
        for (o, e) in out.paths.iter_mut().zip(&earlier.paths) {
            o.bytes_copied = o.bytes_copied.saturating_sub(e.bytes_copied);
            o.ios = o.ios.saturating_sub(e.ios);
        }
        out
    }
}

/// Sums every slot.
#[must_use]
pub fn snapshot() -> CopySnapshot {
    let mut paths = [PathCopies::default(); PATHS];
    for (i, p) in paths.iter_mut().enumerate() {
        p.path = Some(CopyPath::ALL[i]);
        for s in &SLOTS_TABLE {
            p.bytes_copied += s.bytes[i].load(Ordering::Relaxed);
            p.ios += s.ios[i].load(Ordering::Relaxed);
        }
    }
    CopySnapshot { paths }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_every_thread_add_up() {
        let before = snapshot();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    for _ in 0..10 {
                        record(CopyPath::Dedup, 100);
                        io(CopyPath::Dedup);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let d = snapshot().since(&before).get(CopyPath::Dedup);
        // Other tests in this process do not touch the dedup path.
        assert_eq!(d.bytes_copied, 4000);
        assert_eq!(d.ios, 40);
        assert!((d.bytes_per_io() - 100.0).abs() < f64::EPSILON);
    }

    #[test]
    fn names_are_distinct_and_in_order() {
        let names: std::collections::HashSet<_> = CopyPath::ALL.iter().map(|p| p.name()).collect();
        assert_eq!(names.len(), CopyPath::ALL.len());
        for (i, p) in CopyPath::ALL.iter().enumerate() {
            assert_eq!(p.index(), i);
        }
        assert_eq!(std::mem::align_of::<Slot>(), 128);
    }
}
