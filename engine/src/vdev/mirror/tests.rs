//! The mirror under a stripe, over memory devices (corrupted by writing to them directly) and
//! fault-injecting devices (failing reads or writes).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use drivers::blockdev::fault::{Fault, FaultConfig, FaultDevice, FaultRule, OpKind, Trigger};
use drivers::blockdev::memory::MemoryDevice;
use drivers::blockdev::BlockDevice;
use drivers::buffer::{IoBuf, SharedBuf};
use drivers::executor::{Reactor, ReactorConfig};

use super::{ChildState, Mirror};
use crate::block_pointer::{BlockPointer, CHECKSUM_XXH3_128};
use crate::format::checksum;
use crate::vdev::{BlockReadError, DeviceStats, Leaf, ScrubOutcome, Stripe, Vdev};

/// Where the test blocks live in the mirror's address space.
const OFFSET: u64 = 64 * 1024;
const BLOCK: usize = 4096;

fn reactor() -> Reactor {
    Reactor::new(&ReactorConfig { buffer_count: 8, buffer_bytes: 4096, ..Default::default() })
        .expect("reactor")
}

fn memory_devices(n: usize) -> Vec<Arc<MemoryDevice>> {
    (0..n).map(|_| Arc::new(MemoryDevice::new(1 << 20, 512))).collect()
}

/// A memory device behind a fault device with `rules`.
fn faulty(rules: Vec<FaultRule>) -> Arc<FaultDevice> {
    let inner: Arc<dyn BlockDevice> = Arc::new(MemoryDevice::new(1 << 20, 512));
    Arc::new(FaultDevice::new(inner, FaultConfig { rules, ..FaultConfig::default() }))
}

fn always(op: OpKind) -> FaultRule {
    FaultRule::new(op, Trigger::Always, Fault::Error)
}

/// A reactor, and a stripe over a mirror of a healthy child (0) and one failing every `op`
/// (1), both fault devices (which count their operations).
fn half_failing(op: OpKind) -> (Reactor, Arc<FaultDevice>, Arc<FaultDevice>, Stripe) {
    let healthy = faulty(Vec::new());
    let failing = faulty(vec![always(op)]);
    let stripe = mirrored(dyn_devices(&[healthy.clone(), failing.clone()]));
    (reactor(), healthy, failing, stripe)
}

/// A stripe whose one top-level vdev is a mirror over `devices`.
fn mirrored(devices: Vec<Arc<dyn BlockDevice>>) -> Stripe {
    let stats = Arc::new(DeviceStats::default());
    let leaves = devices.into_iter().map(|d| Leaf::new(d, Arc::clone(&stats))).collect();
    let mirror = Mirror::new(leaves).expect("2 to 4 children");
    Stripe::from_children(vec![Vdev::Mirror(mirror)], stats)
}

/// A reactor, and a stripe over a mirror of `n` memory devices.
fn memory_mirror(n: usize) -> (Reactor, Vec<Arc<MemoryDevice>>, Stripe) {
    let devices = memory_devices(n);
    let stripe = mirrored(dyn_devices(&devices));
    (reactor(), devices, stripe)
}

/// Reads the block `times` times through the stripe, checking its bytes each time.
async fn read_back(stripe: &Stripe, bp: &BlockPointer, block: &[u8], times: usize) {
    for _ in 0..times {
        assert_eq!(&stripe.read_block(bp).await.expect("verified read")[..], block);
    }
}

fn dyn_devices<D: BlockDevice + 'static>(devices: &[Arc<D>]) -> Vec<Arc<dyn BlockDevice>> {
    devices.iter().map(|d| Arc::clone(d) as Arc<dyn BlockDevice>).collect()
}

fn mirror(stripe: &Stripe) -> &Mirror {
    match stripe.child(0) {
        Ok(Vdev::Mirror(mirror)) => mirror,
        _ => panic!("top-level vdev 0 is a mirror"),
    }
}

/// Writes a block of `fill` at [`OFFSET`] through the stripe; its content and pointer.
async fn write_block(stripe: &Stripe, fill: u8) -> (Vec<u8>, BlockPointer) {
    let block: Vec<u8> = (0..BLOCK).map(|i| fill ^ (i as u8)).collect();
    let (res, _) = stripe.write(0, OFFSET, IoBuf::from_slice(&block)).await;
    res.expect("write");
    let bp = BlockPointer {
        offset_bytes: OFFSET,
        checksum: checksum(&block),
        logical_bytes: BLOCK as u32,
        physical_bytes: BLOCK as u32,
        device: 0,
        checksum_type: CHECKSUM_XXH3_128,
        ..BlockPointer::default()
    };
    (block, bp)
}

/// The block's bytes as they are on `device`.
fn raw(device: &MemoryDevice) -> Vec<u8> {
    let mut bytes = vec![0u8; BLOCK];
    device.read_into(&mut bytes, OFFSET).expect("raw read");
    bytes
}

/// Overwrites the block's copy on `device` with garbage.
fn corrupt(device: &MemoryDevice) {
    device.write_from(&[0xa5; BLOCK], OFFSET).expect("raw write");
}

/// Writes a block of `fill` through the stripe, then corrupts its copies on the children
/// `bad`; its content and pointer.
async fn write_and_corrupt(
    stripe: &Stripe,
    devices: &[Arc<MemoryDevice>],
    fill: u8,
    bad: &[usize],
) -> (Vec<u8>, BlockPointer) {
    let written = write_block(stripe, fill).await;
    for &child in bad {
        corrupt(&devices[child]);
    }
    written
}

/// Every leaf's CKSUM count.
fn checksum_errors(stripe: &Stripe) -> Vec<u64> {
    stripe.leaves().map(|l| l.errors().checksum.load(Ordering::Relaxed)).collect()
}

/// Every leaf's repaired bytes.
fn repaired_bytes(stripe: &Stripe) -> Vec<u64> {
    stripe.leaves().map(|l| l.errors().repaired_bytes.load(Ordering::Relaxed)).collect()
}

fn reads(device: &FaultDevice) -> u64 {
    device.stats().ops[OpKind::Read as usize]
}

#[test]
fn construction_refuses_fewer_than_two_or_more_than_four_children() {
    let leaves = |n: usize| {
        let stats = Arc::new(DeviceStats::default());
        dyn_devices(&memory_devices(n))
            .into_iter()
            .map(|d| Leaf::new(d, Arc::clone(&stats)))
            .collect::<Vec<_>>()
    };
    for n in [1, 5] {
        let err = Mirror::new(leaves(n)).err().expect("refused");
        assert!(err.contains(&format!("has {n} device")) && err.contains("2 to 4"), "{err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }
    for n in 2..=4 {
        let mirror = Mirror::new(leaves(n)).expect("accepted");
        assert_eq!(Vdev::Mirror(mirror).leaves().len(), n);
    }
}

#[test]
fn a_write_lands_on_every_child() {
    let (reactor, devices, stripe) = memory_mirror(3);
    reactor.block_on(async {
        let (block, _) = write_block(&stripe, 1).await;
        for (i, device) in devices.iter().enumerate() {
            assert_eq!(raw(device), block, "write reached child {i}");
        }
        let run = SharedBuf::new(IoBuf::from_slice(&[9u8; 2 * BLOCK]));
        stripe
            .write_vectored(0, OFFSET, vec![run.slice(0..BLOCK), run.slice(BLOCK..2 * BLOCK)])
            .await
            .expect("vectored write");
        for (i, device) in devices.iter().enumerate() {
            assert_eq!(raw(device), vec![9u8; BLOCK], "vectored write reached child {i}");
        }
        assert!(mirror(&stripe).child_states().iter().all(|s| *s == ChildState::Online));
        assert!(!mirror(&stripe).is_degraded());
    });
}

#[test]
fn a_read_heals_a_corrupted_copy_and_counts_it_on_its_device() {
    let (reactor, devices, stripe) = memory_mirror(2);
    reactor.block_on(async {
        let (block, bp) = write_and_corrupt(&stripe, &devices, 2, &[0]).await;
        // One read per child, so whichever child the read policy starts with, one of them
        // meets the bad copy.
        read_back(&stripe, &bp, &block, 2).await;
        assert_eq!(raw(&devices[0]), block, "the bad copy was rewritten");
        assert_eq!(raw(&devices[1]), block);
        assert_eq!(checksum_errors(&stripe), vec![1, 0]);
        assert_eq!(repaired_bytes(&stripe), vec![BLOCK as u64, 0]);
        assert_eq!(stripe.stats.checksum_errors.load(Ordering::Relaxed), 1);
        assert!(!mirror(&stripe).is_degraded(), "a bad copy faults nobody");
    });
}

#[test]
fn every_copy_bad_is_a_checksum_error() {
    let (reactor, devices, stripe) = memory_mirror(2);
    reactor.block_on(async {
        let (_, bp) = write_and_corrupt(&stripe, &devices, 3, &[0, 1]).await;
        assert_eq!(stripe.read_block(&bp).await.err(), Some(BlockReadError::Checksum));
        assert_eq!(checksum_errors(&stripe), vec![1, 1]);
        assert_eq!(repaired_bytes(&stripe), vec![0, 0]);
    });
}

#[test]
fn a_three_way_mirror_heals_two_bad_copies() {
    let (reactor, devices, stripe) = memory_mirror(3);
    reactor.block_on(async {
        let (block, bp) = write_and_corrupt(&stripe, &devices, 4, &[0, 2]).await;
        read_back(&stripe, &bp, &block, 3).await;
        for (i, device) in devices.iter().enumerate() {
            assert_eq!(raw(device), block, "child {i} holds the block");
        }
        assert_eq!(checksum_errors(&stripe), vec![1, 0, 1]);
        assert_eq!(repaired_bytes(&stripe), vec![BLOCK as u64, 0, BLOCK as u64]);
    });
}

#[test]
fn reads_fall_over_from_a_child_that_fails_every_read() {
    let (reactor, healthy, failing, stripe) = half_failing(OpKind::Read);
    reactor.block_on(async {
        let (block, bp) = write_block(&stripe, 5).await;
        read_back(&stripe, &bp, &block, 4).await;
        let read_errors = stripe.leaf(1).expect("leaf").errors().read.load(Ordering::Relaxed);
        assert!(read_errors > 0, "the failing child was tried and its errors counted");
        assert_eq!(read_errors, reads(&failing));
        assert_eq!(reads(&healthy), 4, "every read was served by the healthy child");
        assert!(!mirror(&stripe).is_degraded(), "a read error faults nobody");
        // A scrub counts the unreadable copy as bad and rewrites it (a drive may remap the
        // sector on write).
        let scrubbed = stripe.scrub_block(&bp).await.expect("scrub");
        assert_eq!((scrubbed.copies_checked, scrubbed.bad_copies), (2, 1));
        assert_eq!((scrubbed.repaired_bytes, scrubbed.unrepairable), (BLOCK as u64, false));
        assert_eq!(repaired_bytes(&stripe), vec![0, BLOCK as u64]);
        assert_eq!(checksum_errors(&stripe), vec![0, 0], "an unreadable copy is no CKSUM error");
    });
}

#[test]
fn a_failed_write_faults_the_child_and_reads_never_touch_it() {
    let (reactor, healthy, failing, stripe) = half_failing(OpKind::Write);
    reactor.block_on(async {
        let (block, bp) = write_block(&stripe, 6).await;
        let m = mirror(&stripe);
        assert_eq!(m.child_states(), vec![ChildState::Online, ChildState::Faulted]);
        assert!(m.is_degraded());
        assert_eq!(stripe.leaf(1).expect("leaf").errors().write.load(Ordering::Relaxed), 1);
        read_back(&stripe, &bp, &block, 4).await;
        assert_eq!((reads(&healthy), reads(&failing)), (4, 0));
        // A later write skips the faulted child.
        write_block(&stripe, 7).await;
        assert_eq!(failing.stats().ops[OpKind::Write as usize], 1);
        m.online(1);
        assert_eq!(m.child_states(), vec![ChildState::Online; 2]);
    });
}

#[test]
fn a_write_failing_on_every_child_is_an_error() {
    let reactor = reactor();
    let devices = vec![faulty(vec![always(OpKind::Write)]), faulty(vec![always(OpKind::Write)])];
    let stripe = mirrored(dyn_devices(&devices));
    reactor.block_on(async {
        let (res, _) = stripe.write(0, OFFSET, IoBuf::from_slice(&[1u8; BLOCK])).await;
        assert!(res.is_err(), "no child took the write");
        // Faulting every child would leave nothing to serve from; the caller has the error.
        assert_eq!(mirror(&stripe).child_states(), vec![ChildState::Online; 2]);
    });
}

#[test]
fn scrub_repairs_a_bad_copy_and_a_second_scrub_finds_nothing() {
    let (reactor, devices, stripe) = memory_mirror(2);
    reactor.block_on(async {
        let (block, bp) = write_and_corrupt(&stripe, &devices, 8, &[1]).await;
        let first = stripe.scrub_block(&bp).await.expect("scrub");
        let repaired = ScrubOutcome {
            copies_checked: 2,
            bad_copies: 1,
            repaired_bytes: BLOCK as u64,
            unrepairable: false,
        };
        assert_eq!(first, repaired);
        assert_eq!(raw(&devices[1]), block, "the bad copy was rewritten");
        assert_eq!(checksum_errors(&stripe), vec![0, 1]);
        assert_eq!(repaired_bytes(&stripe), vec![0, BLOCK as u64]);
        let second = stripe.scrub_block(&bp).await.expect("scrub");
        assert_eq!(second, ScrubOutcome { copies_checked: 2, ..ScrubOutcome::default() });
    });
}

#[test]
fn a_failed_flush_faults_the_child_and_a_faulted_child_is_not_flushed() {
    let (reactor, healthy, failing, stripe) = half_failing(OpKind::Flush);
    reactor.block_on(async {
        stripe.flush(0).await.expect("one child flushed");
        assert_eq!(mirror(&stripe).child_states(), vec![ChildState::Online, ChildState::Faulted]);
        stripe.flush(0).await.expect("flush");
        let flushes = |d: &FaultDevice| d.stats().ops[OpKind::Flush as usize];
        assert_eq!((flushes(&healthy), flushes(&failing)), (2, 1));
    });
}

#[test]
fn trim_reaches_every_child() {
    let (reactor, devices, stripe) = memory_mirror(3);
    reactor.block_on(async {
        write_block(&stripe, 9).await;
        stripe.trim(0, OFFSET, BLOCK as u64).await.expect("trim");
        for (i, device) in devices.iter().enumerate() {
            assert_eq!(raw(device), vec![0u8; BLOCK], "child {i} reads zeros");
        }
    });
}

#[test]
fn durable_writes_only_when_every_child_has_them_and_space_is_the_block_size() {
    let device = |durable_writes: bool| -> Arc<dyn BlockDevice> {
        let inner: Arc<dyn BlockDevice> = Arc::new(MemoryDevice::new(1 << 20, 512));
        Arc::new(FaultDevice::new(inner, FaultConfig { durable_writes, ..FaultConfig::default() }))
    };
    let both = mirrored(vec![device(true), device(true)]);
    assert!(both.durable_writes(0));
    let one = mirrored(vec![device(true), device(false)]);
    assert!(!one.durable_writes(0));
    assert_eq!(one.child(0).expect("mirror").allocated_bytes(8192), 8192);
}
