//! RAID-Z over memory devices, through the pool's stripe: round trips, self-heal of up to
//! `parity` bad columns (data and parity), failure beyond it, degraded reads, scrub, and the
//! construction rules.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use drivers::blockdev::fault::{Fault, FaultConfig, FaultDevice, FaultRule, OpKind, Trigger};
use drivers::blockdev::memory::MemoryDevice;
use drivers::blockdev::BlockDevice;
use drivers::buffer::{IoBuf, SharedBuf};
use drivers::executor::{Reactor, ReactorConfig};

use super::layout::{BlockLayout, SECTOR_BYTES};
use super::{RaidZ, RaidZConfigError};
use crate::block_pointer::{BlockPointer, CHECKSUM_XXH3_128};
use crate::format::checksum;
use crate::vdev::{BlockReadError, DeviceStats, Leaf, ScrubOutcome, Stripe, Vdev};

/// The groups tested: (width, parity).
const GROUPS: [(usize, usize); 4] = [(3, 1), (5, 1), (6, 2), (7, 3)];
/// Block sizes tested, some smaller than one row of every group.
const SIZES: [usize; 5] = [4096, 8192, 12288, 32 * 1024, 128 * 1024];
/// Where the test block starts: a node sector that is not the first of a row.
const OFFSET: u64 = 13 * SECTOR_BYTES;
const DEVICE_BYTES: u64 = 1 << 20;

fn reactor() -> Reactor {
    Reactor::new(&ReactorConfig { buffer_count: 8, buffer_bytes: 4096, ..Default::default() })
        .expect("reactor")
}

/// A RAID-Z group as the stripe's only top-level vdev, and its memory devices.
struct Group {
    memory: Vec<Arc<MemoryDevice>>,
    stripe: Stripe,
}

impl Group {
    /// `width` memory devices; device `i` of each `(i, op)` in `failing` fails every `op`.
    fn new(width: usize, parity: usize, failing: &[(usize, OpKind)]) -> Group {
        let stats = Arc::new(DeviceStats::default());
        let memory: Vec<Arc<MemoryDevice>> =
            (0..width).map(|_| Arc::new(MemoryDevice::new(DEVICE_BYTES, 512))).collect();
        let leaves = memory
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let inner = Arc::clone(m) as Arc<dyn BlockDevice>;
                let device: Arc<dyn BlockDevice> =
                    if let Some((_, op)) = failing.iter().find(|(child, _)| *child == i) {
                        let rule = FaultRule::new(*op, Trigger::Always, Fault::Error);
                        let config = FaultConfig { rules: vec![rule], ..FaultConfig::default() };
                        Arc::new(FaultDevice::new(inner, config))
                    } else {
                        inner
                    };
                Leaf::new(device, Arc::clone(&stats))
            })
            .collect();
        let raidz = RaidZ::new(leaves, parity).expect("valid group");
        Group { memory, stripe: Stripe::from_children(vec![Vdev::RaidZ(raidz)], stats) }
    }

    fn raidz(&self) -> &RaidZ {
        match self.stripe.child(0).expect("child 0") {
            Vdev::RaidZ(raidz) => raidz,
            _ => unreachable!("the group is a RAID-Z node"),
        }
    }

    fn layout(&self, offset: u64, len: usize) -> BlockLayout {
        self.raidz().geometry().block(offset, len).expect("layout")
    }

    /// Column `c` of the block as it is on its device.
    fn raw_column(&self, layout: &BlockLayout, c: usize) -> Vec<u8> {
        let col = layout.columns[c];
        let mut raw = vec![0u8; layout.column_bytes(c)];
        self.memory[col.child].read_into(&mut raw, col.child_offset_bytes).expect("raw read");
        raw
    }

    /// Overwrites column `c` of the block on its device with garbage.
    fn corrupt(&self, layout: &BlockLayout, c: usize) {
        let col = layout.columns[c];
        let garbage: Vec<u8> =
            (0..layout.column_bytes(c)).map(|i| (i * 13 + c * 7 + 0x5a) as u8).collect();
        self.memory[col.child].write_from(&garbage, col.child_offset_bytes).expect("corrupt");
    }

    /// Each leaf's (checksum errors, repaired bytes).
    fn counters(&self) -> Vec<(u64, u64)> {
        self.stripe
            .leaves()
            .map(|l| {
                let e = l.errors();
                (e.checksum.load(Ordering::Relaxed), e.repaired_bytes.load(Ordering::Relaxed))
            })
            .collect()
    }
}

/// A block whose every sector differs.
fn block(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| ((i / 4096) * 31 + i * 7 + seed) as u8).collect()
}

fn pointer(offset: u64, data: &[u8]) -> BlockPointer {
    BlockPointer {
        offset_bytes: offset,
        checksum: checksum(data),
        logical_bytes: data.len() as u32,
        physical_bytes: data.len() as u32,
        device: 0,
        checksum_type: CHECKSUM_XXH3_128,
        ..BlockPointer::default()
    }
}

/// Writes `data` at `offset` through the stripe.
async fn write(group: &Group, offset: u64, data: &[u8]) {
    let (res, _) = group.stripe.write(0, offset, IoBuf::from_slice(data)).await;
    res.expect("write");
}

/// Sets of `bad` columns of a block of `layout`, each with at least one data column (so the
/// data read fails its check): data columns from the last, then one data column and the
/// rest parity columns.
fn bad_sets(layout: &BlockLayout, bad: usize) -> Vec<Vec<usize>> {
    let p = layout.geometry.parity;
    let n = layout.columns.len();
    let data_first: Vec<usize> = (p..n).rev().chain((0..p).rev()).take(bad).collect();
    let mut sets = vec![data_first];
    if bad >= 2 {
        sets.push(std::iter::once(n - 1).chain(0..bad - 1).collect());
    }
    sets
}

/// Writes a block of each of [`SIZES`] back to back from [`OFFSET`] (each after the
/// allocation of the one before) and reads each back through the stripe; each block's
/// (offset, length).
async fn round_trip_every_size(group: &Group, case: &str) -> Vec<(u64, usize)> {
    let mut blocks = Vec::new();
    let mut offset = OFFSET;
    for (i, len) in SIZES.into_iter().enumerate() {
        let data = block(len, i);
        write(group, offset, &data).await;
        let read = group.stripe.read_block(&pointer(offset, &data)).await;
        assert_eq!(&read.expect(case)[..], &data[..], "{case}: {len} bytes");
        blocks.push((offset, len));
        offset += group.stripe.child(0).expect("child").allocated_bytes(len as u64);
    }
    blocks
}

#[test]
fn blocks_round_trip_in_every_group_and_size() {
    let reactor = reactor();
    for (width, parity) in GROUPS {
        let group = Group::new(width, parity, &[]);
        reactor.block_on(round_trip_every_size(&group, &format!("raidz{parity} w{width}")));
        assert!(group.counters().iter().all(|c| *c == (0, 0)), "nothing to heal");
    }
}

/// Up to `parity` bad columns, data and parity alike: the read returns the block, the bad
/// columns are rewritten, and a checksum error is counted on exactly their devices.
#[test]
fn up_to_parity_bad_columns_heal_on_read() {
    let reactor = reactor();
    for (width, parity) in GROUPS {
        for (i, len) in SIZES.into_iter().enumerate() {
            for bad in 1..=parity {
                let probe = Group::new(width, parity, &[]);
                for set in bad_sets(&probe.layout(OFFSET, len), bad) {
                    let group = Group::new(width, parity, &[]);
                    let layout = group.layout(OFFSET, len);
                    let data = block(len, i);
                    let case = format!("raidz{parity} w{width} {len} bad {set:?}");
                    reactor.block_on(async {
                        write(&group, OFFSET, &data).await;
                        let written: Vec<Vec<u8>> = (0..layout.columns.len())
                            .map(|c| group.raw_column(&layout, c))
                            .collect();
                        for c in &set {
                            group.corrupt(&layout, *c);
                        }
                        let read = group.stripe.read_block(&pointer(OFFSET, &data)).await;
                        assert_eq!(&read.expect(&case)[..], &data[..], "{case}");
                        for (c, column) in written.iter().enumerate() {
                            assert_eq!(&group.raw_column(&layout, c), column, "{case}: column {c}");
                        }
                        let mut expected = vec![(0, 0); width];
                        for c in &set {
                            let child = layout.columns[*c].child;
                            expected[child] = (1, layout.column_bytes(*c) as u64);
                        }
                        assert_eq!(group.counters(), expected, "{case}: counters");
                    });
                }
            }
        }
    }
}

#[test]
fn more_bad_columns_than_parity_is_a_checksum_error() {
    let reactor = reactor();
    for (width, parity) in GROUPS {
        for (i, len) in SIZES.into_iter().enumerate() {
            let group = Group::new(width, parity, &[]);
            let layout = group.layout(OFFSET, len);
            let data = block(len, i);
            reactor.block_on(async {
                write(&group, OFFSET, &data).await;
                for c in &bad_sets(&layout, parity + 1)[0] {
                    group.corrupt(&layout, *c);
                }
                let read = group.stripe.read_block(&pointer(OFFSET, &data)).await;
                assert_eq!(read.err(), Some(BlockReadError::Checksum), "raidz{parity} w{width}");
            });
            // Any column may be the bad one: each column read is counted, nothing repaired.
            let counted: u64 = group.counters().iter().map(|(cksum, _)| cksum).sum();
            assert_eq!(counted, layout.columns.len() as u64);
            assert!(group.counters().iter().all(|(_, repaired)| *repaired == 0));
        }
    }
}

/// A device that fails every read: its columns are rebuilt from parity on every read. Each
/// block whose data has a column on that device costs one failed read there.
#[test]
fn degraded_reads_rebuild_a_failed_device() {
    let reactor = reactor();
    for (width, parity) in GROUPS {
        for failing in 0..width {
            let group = Group::new(width, parity, &[(failing, OpKind::Read)]);
            let case = format!("raidz{parity} w{width} device {failing} failing");
            let blocks = reactor.block_on(round_trip_every_size(&group, &case));
            let data_columns_there: usize = blocks
                .iter()
                .map(|(offset, len)| {
                    let layout = group.layout(*offset, *len);
                    (parity..layout.columns.len())
                        .filter(|c| layout.columns[*c].child == failing)
                        .count()
                })
                .sum();
            let leaf = group.stripe.leaf(failing).expect("leaf");
            assert_eq!(leaf.errors().read.load(Ordering::Relaxed), data_columns_there as u64);
            assert!(group.counters().iter().all(|c| *c == (0, 0)), "no checksum error");
        }
    }
}

/// A failed device and a bad column in RAID-Z2: the failed device's column is taken as bad
/// first, the search finds the other, and only that one counts as a checksum error.
#[test]
fn a_failed_device_and_a_bad_column_heal_in_raidz2() {
    let reactor = reactor();
    let len = 32 * 1024;
    let group = Group::new(6, 2, &[(1, OpKind::Read)]);
    let layout = group.layout(OFFSET, len);
    let data = block(len, 3);
    let bad = (2..layout.columns.len()).find(|c| layout.columns[*c].child != 1).expect("column");
    reactor.block_on(async {
        write(&group, OFFSET, &data).await;
        let written = group.raw_column(&layout, bad);
        group.corrupt(&layout, bad);
        let read = group.stripe.read_block(&pointer(OFFSET, &data)).await;
        assert_eq!(&read.expect("healed")[..], &data[..]);
        assert_eq!(group.raw_column(&layout, bad), written);
    });
    let child = layout.columns[bad].child;
    let checksums: Vec<u64> = group.counters().iter().map(|c| c.0).collect();
    let expected: Vec<u64> = (0..6).map(|i| u64::from(i == child)).collect();
    assert_eq!(checksums, expected);
}

#[test]
fn scrub_repairs_a_bad_parity_column_and_then_finds_nothing() {
    let reactor = reactor();
    for (width, parity) in GROUPS {
        let len = 32 * 1024;
        let group = Group::new(width, parity, &[]);
        let layout = group.layout(OFFSET, len);
        let data = block(len, 9);
        let bp = pointer(OFFSET, &data);
        let parity_column = parity - 1;
        reactor.block_on(async {
            write(&group, OFFSET, &data).await;
            let written = group.raw_column(&layout, parity_column);
            group.corrupt(&layout, parity_column);
            // The data still verifies: a read does not notice, a scrub does.
            assert_eq!(&group.stripe.read_block(&bp).await.expect("read")[..], &data[..]);
            let first = group.stripe.scrub_block(&bp).await.expect("scrub");
            let bytes = layout.column_bytes(parity_column) as u64;
            let repaired = ScrubOutcome {
                copies_checked: 1,
                bad_copies: 1,
                repaired_bytes: bytes,
                unrepairable: false,
            };
            assert_eq!(first, repaired, "raidz{parity} w{width}");
            assert_eq!(group.raw_column(&layout, parity_column), written);
            let second = group.stripe.scrub_block(&bp).await.expect("scrub");
            assert_eq!(second, ScrubOutcome { copies_checked: 1, ..ScrubOutcome::default() });
        });
        let child = layout.columns[parity_column].child;
        assert_eq!(group.counters()[child], (1, layout.column_bytes(parity_column) as u64));
    }
}

/// A column write that fails fails the block's write, and counts on that device.
#[test]
fn a_failed_column_write_fails_the_write() {
    let reactor = reactor();
    let group = Group::new(5, 1, &[(2, OpKind::Write)]);
    let layout = group.layout(OFFSET, 32 * 1024);
    assert!(layout.columns.iter().any(|c| c.child == 2), "a column on the failing device");
    reactor.block_on(async {
        let (res, _) = group.stripe.write(0, OFFSET, IoBuf::from_slice(&block(32 * 1024, 4))).await;
        assert!(res.is_err(), "the write fails");
    });
    let writes: Vec<u64> =
        group.stripe.leaves().map(|l| l.errors().write.load(Ordering::Relaxed)).collect();
    assert_eq!(writes, vec![0, 0, 1, 0, 0]);
}

/// More bad columns than parity: the scrub says the block is lost and repairs nothing.
#[test]
fn scrub_beyond_parity_is_unrepairable() {
    let reactor = reactor();
    let len = 32 * 1024;
    let group = Group::new(6, 2, &[]);
    let layout = group.layout(OFFSET, len);
    let data = block(len, 5);
    reactor.block_on(async {
        write(&group, OFFSET, &data).await;
        for c in &bad_sets(&layout, 3)[0] {
            group.corrupt(&layout, *c);
        }
        let outcome = group.stripe.scrub_block(&pointer(OFFSET, &data)).await.expect("scrub");
        assert!(outcome.unrepairable && outcome.repaired_bytes == 0, "{outcome:?}");
    });
    assert!(group.counters().iter().all(|(_, repaired)| *repaired == 0));
}

/// Block `i` of a vectored write starts after the allocations of the blocks before it.
#[test]
fn vectored_blocks_start_at_the_allocations_before_them() {
    let reactor = reactor();
    let group = Group::new(5, 1, &[]);
    let sizes = [12288, 4096, 32 * 1024];
    let blocks: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, len)| block(*len, i)).collect();
    reactor.block_on(async {
        let bufs = blocks.iter().map(|b| SharedBuf::new(IoBuf::from_slice(b))).collect();
        group.stripe.write_vectored(0, OFFSET, bufs).await.expect("vectored write");
        let mut offset = OFFSET;
        for data in &blocks {
            let read = group.stripe.read_block(&pointer(offset, data)).await;
            assert_eq!(&read.expect("verified")[..], &data[..]);
            offset += group.raidz().allocated_bytes(data.len() as u64);
        }
    });
}

#[test]
fn trim_deallocates_the_block_on_every_child() {
    let reactor = reactor();
    let group = Group::new(5, 1, &[]);
    let len = 32 * 1024;
    let layout = group.layout(OFFSET, len);
    reactor.block_on(async {
        write(&group, OFFSET, &block(len, 1)).await;
        let allocated = group.raidz().allocated_bytes(len as u64);
        group.stripe.trim(0, OFFSET, allocated).await.expect("trim");
        assert!(group.stripe.trim(0, 100, 4096).await.is_err(), "not whole sectors");
    });
    for c in 0..layout.columns.len() {
        assert!(group.raw_column(&layout, c).iter().all(|b| *b == 0), "column {c} trimmed");
    }
}

#[test]
fn construction_refuses_bad_parity_and_child_counts() {
    let leaves = |n: usize| {
        let stats = Arc::new(DeviceStats::default());
        (0..n)
            .map(|_| Leaf::new(Arc::new(MemoryDevice::new(DEVICE_BYTES, 512)), Arc::clone(&stats)))
            .collect::<Vec<_>>()
    };
    let refused = |n: usize, parity: usize| RaidZ::new(leaves(n), parity).err().expect("refused");
    assert_eq!(refused(4, 0), RaidZConfigError::Parity(0));
    assert_eq!(refused(6, 4), RaidZConfigError::Parity(4));
    assert_eq!(refused(3, 2), RaidZConfigError::TooFewChildren { parity: 2, children: 3 });
    assert_eq!(refused(2, 1), RaidZConfigError::TooFewChildren { parity: 1, children: 2 });
    assert_eq!(refused(17, 1), RaidZConfigError::TooManyChildren { children: 17 });
    assert_eq!(refused(3, 2).to_string(), "raidz2 needs at least 4 devices (parity + 2), got 3");
    assert_eq!(
        refused(6, 4).to_string(),
        "raidz parity 4 is not supported: parity must be 1, 2 or 3"
    );
    for e in [refused(4, 0), refused(3, 2), refused(17, 3)] {
        assert!(!e.to_string().contains('\n'), "one line: {e}");
    }
    assert!(!RaidZConfigError::Cpu.to_string().contains('\n'));
    assert!(RaidZ::new(leaves(16), 3).is_ok() && RaidZ::new(leaves(3), 1).is_ok());
}
