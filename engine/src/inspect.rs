//! ferrite-inspect as a library: walks a pool offline (read-only), verifies every checksum
//! from the newest uberblock down, cross-checks every live block against the space maps and
//! against every other live block, and reports pool, volume and snapshot figures.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use drivers::blockdev::BlockDevice;
use drivers::buffer::IoBuf;
use drivers::error::IoError;

use crate::block_pointer::{BlockPointer, Extent};
use crate::block_tree::decode_indirect;
use crate::compress::{decompress_block, COMPRESSION_OFF};
use crate::dataset::DatasetKind;
use crate::ddt::{bp_fingerprint, is_dedup, FINGERPRINT_BYTES};
use crate::error::PoolResult;
use crate::format::SECTOR_BYTES;
use crate::join::for_each_bounded;
use crate::label::DeviceRole;
use crate::pool::{open_devices, Loaded};
use crate::rewind::{load_newest, RejectedTxg};
use crate::vdev::{verifies, BlockReadError, Stripe};

/// Figures of one dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetReport {
    /// Name (`volume` or `volume@snapshot`).
    pub name: String,
    /// Volume or snapshot.
    pub kind: DatasetKind,
    /// Size.
    pub capacity_bytes: u64,
    /// Data block size.
    pub volblock_bytes: u32,
    /// Data blocks referenced.
    pub data_blocks: u64,
    /// Data bytes referenced (logical, before compression).
    pub referenced_bytes: u64,
    /// Stored bytes of the data blocks referenced (after compression).
    pub physical_bytes: u64,
    /// Data blocks stored compressed.
    pub compressed_blocks: u64,
    /// Indirect blocks referenced.
    pub indirect_blocks: u64,
    /// Txg of creation (a snapshot's point in time).
    pub creation_txg: u64,
    /// Blocks on its deadlist.
    pub deadlist_blocks: u64,
}

/// Everything inspect found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InspectReport {
    /// Pool name.
    pub pool_name: String,
    /// Pool identity.
    pub pool_guid: u64,
    /// Txg of the uberblock used.
    pub txg: u64,
    /// Devices.
    pub device_count: usize,
    /// Data space.
    pub capacity_bytes: u64,
    /// Allocated according to the space maps.
    pub allocated_bytes: u64,
    /// Bytes reached from the uberblock (data, metadata, log regions).
    pub live_bytes: u64,
    /// Blocks read and verified.
    pub blocks_verified: u64,
    /// Blocks whose checksum did not verify (with where they were referenced).
    pub checksum_errors: Vec<String>,
    /// Live blocks the space maps show as free.
    pub unallocated_live_blocks: u64,
    /// Pairs of distinct live blocks that overlap.
    pub overlapping_blocks: u64,
    /// Figures recorded in dataset headers, and dedup counts, that differ from what the trees
    /// hold.
    pub accounting_errors: Vec<String>,
    /// Dedup table entries.
    pub dedup_entries: u64,
    /// References to deduplicated blocks found in the trees.
    pub dedup_references: u64,
    /// Datasets.
    pub datasets: Vec<DatasetReport>,
    /// Newer txgs whose metadata did not load, newest first: an import opens the pool at
    /// `txg` instead, losing what they committed (see [`crate::rewind`]).
    pub rejected_txgs: Vec<RejectedTxg>,
}

impl InspectReport {
    /// True when, in the state inspected (`txg`), every checksum verified and the
    /// allocation is exact: no live block free in the space maps or overlapping another
    /// (doubly allocated), and no allocated space that nothing reaches (leaked). Says nothing
    /// of newer txgs passed over: see [`InspectReport::is_rewound`].
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.checksum_errors.is_empty()
            && self.accounting_errors.is_empty()
            && self.unallocated_live_blocks == 0
            && self.overlapping_blocks == 0
            && self.leaked_bytes() == 0
    }

    /// True when newer uberblocks were passed over: an import would rewind the pool.
    #[must_use]
    pub fn is_rewound(&self) -> bool {
        !self.rejected_txgs.is_empty()
    }

    /// Allocated space nothing live reaches.
    #[must_use]
    pub fn leaked_bytes(&self) -> u64 {
        self.allocated_bytes.saturating_sub(self.live_bytes)
    }
}

impl fmt::Display for InspectReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "pool {} guid {:#018x} txg {} devices {}",
            self.pool_name, self.pool_guid, self.txg, self.device_count
        )?;
        writeln!(
            f,
            "  capacity {} B, allocated {} B, live {} B, leaked {} B",
            self.capacity_bytes,
            self.allocated_bytes,
            self.live_bytes,
            self.leaked_bytes()
        )?;
        writeln!(
            f,
            "  blocks verified {}, checksum errors {}, unallocated live blocks {}, overlaps {}",
            self.blocks_verified,
            self.checksum_errors.len(),
            self.unallocated_live_blocks,
            self.overlapping_blocks
        )?;
        writeln!(
            f,
            "  dedup table entries {}, references in the trees {}",
            self.dedup_entries, self.dedup_references
        )?;
        for d in &self.datasets {
            writeln!(
                f,
                "  {:<9} {:<32} size {} B volblock {} referenced {} B stored {} B ({} data, {} compressed, {} indirect blocks) txg {} deadlist {}",
                match d.kind {
                    DatasetKind::Volume => "volume",
                    DatasetKind::Snapshot => "snapshot",
                },
                d.name,
                d.capacity_bytes,
                d.volblock_bytes,
                d.referenced_bytes,
                d.physical_bytes,
                d.data_blocks,
                d.compressed_blocks,
                d.indirect_blocks,
                d.creation_txg,
                d.deadlist_blocks
            )?;
        }
        for r in &self.rejected_txgs {
            writeln!(f, "  REJECTED txg {}: {}", r.txg, r.reason)?;
        }
        if let Some(newest) = self.rejected_txgs.first() {
            writeln!(
                f,
                "  REWOUND: import opens txg {}; what txgs {}..={} committed is lost (destroyed \
                 volumes and snapshots come back; intent-log records are replayed)",
                self.txg,
                self.txg + 1,
                newest.txg
            )?;
        }
        for e in &self.checksum_errors {
            writeln!(f, "  CHECKSUM ERROR: {e}")?;
        }
        for e in &self.accounting_errors {
            writeln!(f, "  ACCOUNTING ERROR: {e}")?;
        }
        Ok(())
    }
}

/// One reference to a deduplicated block: (the dataset whose write created it, partition,
/// tree index, birth txg, extent). Snapshots and clones share a reference of their origin.
type Reference = (u64, usize, u64, u64, Extent);

/// The dataset whose write created a block born at `birth` that dataset `id` references: a
/// snapshot's blocks are its volume's; a clone's blocks from before its origin are the origin
/// volume's.
fn reference_owner(meta: &crate::meta::Meta, id: u64, birth: u64) -> u64 {
    let mut id = id;
    for _ in 0..64 {
        let Some(ds) = meta.datasets.get(&id) else { return id };
        if ds.kind() == DatasetKind::Snapshot {
            id = ds.phys.parent_id;
            continue;
        }
        match meta.datasets.get(&ds.phys.origin_id) {
            Some(origin) if ds.phys.origin_id != 0 && birth <= origin.phys.creation_txg => {
                id = origin.phys.parent_id;
            }
            _ => return id,
        }
    }
    id
}

/// Checks every dedup table entry's count against the references the trees hold.
fn check_dedup_references(
    ddt: &crate::ddt::Ddt,
    references: &HashMap<[u8; FINGERPRINT_BYTES], HashSet<Reference>>,
    report: &mut InspectReport,
) {
    let entries = ddt.entries();
    report.dedup_entries = entries.len() as u64;
    for (fp, extent, refcount) in &entries {
        let found = references.get(&fp.0);
        let count = found.map_or(0, HashSet::len);
        report.dedup_references += count as u64;
        if count != *refcount as usize {
            report.accounting_errors.push(format!(
                "dedup entry at device {} offset {}: count {refcount}, trees hold {count}",
                extent.device, extent.offset_bytes
            ));
        }
        if found.is_some_and(|refs| refs.iter().any(|r| r.4 != *extent)) {
            report.accounting_errors.push(format!(
                "dedup entry at device {} offset {}: a pointer with its fingerprint points elsewhere",
                extent.device, extent.offset_bytes
            ));
        }
    }
    let known: HashSet<[u8; FINGERPRINT_BYTES]> = entries.iter().map(|e| e.0 .0).collect();
    let orphans = references.keys().filter(|fp| !known.contains(*fp)).count();
    if orphans > 0 {
        report
            .accounting_errors
            .push(format!("{orphans} deduplicated blocks have no dedup table entry"));
    }
}

/// Reads in flight while verifying the trees.
const READ_DEPTH: usize = 64;
/// Largest read: blocks that lie back to back on a device are read together up to this.
const MAX_READ_BYTES: u64 = 1 << 20;
/// Tree blocks taken per step of the walk, an indirect block counting for the 128 children it
/// may add: bounds the walk's memory whatever the pool's size (about 20 MiB of pointers), and
/// is large enough that the reads of a step (1 GiB of 4 KiB blocks) keep the queue full.
const STEP_WEIGHT: usize = 256 * 1024;

/// How far a running inspect is, readable from another thread (for a progress line).
#[derive(Debug, Default)]
pub struct InspectProgress {
    /// Bytes of tree blocks read and verified so far.
    pub verified_bytes: AtomicU64,
    /// Bytes the space maps show allocated (0 until the metadata is loaded): an upper bound
    /// of what will be verified.
    pub allocated_bytes: AtomicU64,
    /// Device reads issued for tree blocks (back-to-back blocks share one).
    pub reads: AtomicU64,
}

/// What the check of one block found (computed off the reactor thread).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Check {
    Verified,
    Checksum,
    Decompress,
}

/// Checks a block read: its checksum, and that a compressed data block decompresses.
fn check_block(bp: &BlockPointer, bytes: &[u8]) -> Check {
    if !verifies(bp, bytes) {
        Check::Checksum
    } else if bp.level == 0
        && bp.compression != COMPRESSION_OFF
        && decompress_block(bp.compression, bytes, bp.logical_bytes as usize).is_err()
    {
        Check::Decompress
    } else {
        Check::Verified
    }
}

/// Reads one run into `buf` and checks its blocks on a CPU worker; the buffer comes back,
/// with one [`Check`] per member when the read succeeded.
async fn read_run(
    devs: &Stripe,
    run: &Run,
    mut buf: IoBuf,
    blocks: Vec<(usize, BlockPointer)>,
) -> (Result<Vec<Check>, IoError>, IoBuf) {
    let Ok(len) = usize::try_from(run.len_bytes) else {
        return (Err(IoError::InvalidInput(libc::EINVAL)), buf);
    };
    if buf.capacity() < len {
        buf = IoBuf::zeroed(len);
    }
    buf.set_len(len);
    let (res, buf) = devs.read_into(run.device, run.offset_bytes, buf).await;
    if let Err(e) = res {
        return (Err(e), buf);
    }
    let (checks, buf) = crate::offload::run(move || {
        let checks = blocks
            .iter()
            .map(|(at, bp)| check_block(bp, &buf[*at..*at + bp.physical_bytes as usize]))
            .collect();
        (checks, buf)
    })
    .await;
    (Ok(checks), buf)
}

/// A tree block to verify: its pointer, its partition and its index at its level.
#[derive(Clone, Copy)]
struct Node {
    bp: BlockPointer,
    partition: usize,
    index: u64,
}

/// Blocks read with one request: `members` are positions in the sorted order of the step.
struct Run {
    device: u16,
    offset_bytes: u64,
    len_bytes: u64,
    members: Range<usize>,
}

/// Groups `nodes` (their positions in `order`, sorted by place on the devices) into runs of
/// blocks that lie back to back, each at most [`MAX_READ_BYTES`] (a larger block is a run
/// of its own).
fn plan_runs(nodes: &[Node], order: &[usize]) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    for (k, &i) in order.iter().enumerate() {
        let bp = &nodes[i].bp;
        let len = u64::from(bp.physical_bytes);
        if let Some(run) = runs.last_mut() {
            if run.device == bp.device
                && run.offset_bytes + run.len_bytes == bp.offset_bytes
                && run.len_bytes + len <= MAX_READ_BYTES
            {
                run.len_bytes += len;
                run.members.end = k + 1;
                continue;
            }
        }
        runs.push(Run {
            device: bp.device,
            offset_bytes: bp.offset_bytes,
            len_bytes: len,
            members: k..k + 1,
        });
    }
    runs
}

/// State of one inspect walk.
struct Walker<'a> {
    devs: &'a Stripe,
    loaded: &'a Loaded,
    progress: &'a InspectProgress,
    report: InspectReport,
    /// Live extents: (device, offset) -> (length, birth txg).
    live: BTreeMap<(u16, u64), (u64, u64)>,
    /// Tree blocks seen, by (device, offset, birth): a data block shared by snapshots is
    /// read once.
    seen: HashSet<(u16, u64, u64)>,
    /// Distinct references to each deduplicated block found in the trees.
    references: HashMap<[u8; FINGERPRINT_BYTES], HashSet<Reference>>,
    /// Read buffers of [`MAX_READ_BYTES`], kept for the next read.
    bufs: Vec<IoBuf>,
}

impl Walker<'_> {
    /// Records a live extent: counts it when the space maps show it free, or when it
    /// overlaps another live block at the same offset (neighbours are checked at the end).
    fn add(&mut self, e: Extent, birth: u64) {
        if e.len_bytes == 0 {
            return;
        }
        if let Some((len, b)) = self.live.get(&(e.device, e.offset_bytes)) {
            if *len != e.len_bytes || *b != birth {
                self.report.overlapping_blocks += 1;
            }
            // Otherwise the same block, shared.
            return;
        }
        self.live.insert((e.device, e.offset_bytes), (e.len_bytes, birth));
        if !self.loaded.alloc.is_allocated(&e) {
            self.report.unallocated_live_blocks += 1;
        }
    }

    /// Walks one dataset's trees, a bounded step at a time, depth first.
    async fn dataset(&mut self, ds: &crate::meta::DatasetMeta, d: &mut DatasetReport) {
        let roots: Vec<Node> = ds
            .roots
            .iter()
            .enumerate()
            .map(|(partition, root)| Node { bp: root.root, partition, index: 0 })
            .collect();
        let mut stack = vec![roots];
        while let Some(mut nodes) = stack.pop() {
            let mut take = 0;
            let mut weight = 0;
            while take < nodes.len() && weight < STEP_WEIGHT {
                weight += if nodes[take].bp.level > 0 { 128 } else { 1 };
                take += 1;
            }
            let rest = nodes.split_off(take);
            if !rest.is_empty() {
                stack.push(rest);
            }
            let children = self.step(ds, d, nodes).await;
            if !children.is_empty() {
                stack.push(children);
            }
        }
    }

    /// Accounts for `nodes` and verifies those not seen yet; returns their children.
    async fn step(
        &mut self,
        ds: &crate::meta::DatasetMeta,
        d: &mut DatasetReport,
        nodes: Vec<Node>,
    ) -> Vec<Node> {
        let mut to_read = Vec::with_capacity(nodes.len());
        for n in nodes {
            let bp = n.bp;
            if bp.is_hole() {
                continue;
            }
            if is_dedup(&bp) {
                let owner = reference_owner(&self.loaded.meta, ds.phys.id, bp.birth_txg);
                self.references.entry(bp_fingerprint(&bp).0).or_default().insert((
                    owner,
                    n.partition,
                    n.index,
                    bp.birth_txg,
                    bp.extent(),
                ));
            }
            if bp.level == 0 {
                d.data_blocks += 1;
                d.referenced_bytes += u64::from(bp.logical_bytes);
                d.physical_bytes += u64::from(bp.physical_bytes);
                d.compressed_blocks += u64::from(bp.compression != COMPRESSION_OFF);
            } else {
                d.indirect_blocks += 1;
            }
            // Every reference to a deduplicated block shares its extent.
            let birth = if is_dedup(&bp) { u64::MAX } else { bp.birth_txg };
            self.add(bp.extent(), birth);
            let first_visit = self.seen.insert((bp.device, bp.offset_bytes, bp.birth_txg));
            if first_visit || bp.level > 0 {
                to_read.push(n);
            }
        }
        let mut children = Vec::new();
        self.verify_nodes(&d.name, &to_read, &mut children).await;
        children
    }

    /// Reads and verifies `nodes`: sorted by place, back-to-back blocks in one read, up to
    /// [`READ_DEPTH`] reads in flight, checksums computed on the CPU workers. A read that
    /// fails is retried block by block, so the error is reported against the block that has
    /// it.
    async fn verify_nodes(&mut self, name: &str, nodes: &[Node], children: &mut Vec<Node>) {
        let mut order = Vec::with_capacity(nodes.len());
        for (i, n) in nodes.iter().enumerate() {
            // What `Stripe::read_block` refuses without reading.
            if n.bp.physical_bytes.is_multiple_of(4096) && n.bp.offset_bytes.is_multiple_of(4096) {
                order.push(i);
            } else {
                self.failed(name, n, BlockReadError::Checksum);
            }
        }
        order.sort_unstable_by_key(|&i| (nodes[i].bp.device, nodes[i].bp.offset_bytes));
        let runs = plan_runs(nodes, &order);
        self.progress.reads.fetch_add(runs.len() as u64, Ordering::Relaxed);
        let devs = self.devs;
        // Read buffers, reused from read to read (and step to step).
        let bufs = std::cell::RefCell::new(std::mem::take(&mut self.bufs));
        let mut retry = Vec::new();
        for_each_bounded(
            runs.len(),
            READ_DEPTH,
            |r| {
                let run = &runs[r];
                let blocks = order[run.members.clone()]
                    .iter()
                    .map(|&i| {
                        let bp = nodes[i].bp;
                        (usize::try_from(bp.offset_bytes - run.offset_bytes).unwrap_or(0), bp)
                    })
                    .collect();
                let buf = bufs.borrow_mut().pop().unwrap_or_else(|| {
                    IoBuf::zeroed(usize::try_from(MAX_READ_BYTES).expect("fits"))
                });
                read_run(devs, run, buf, blocks)
            },
            |r, (res, buf)| {
                let run = &runs[r];
                match res {
                    Ok(checks) => {
                        for (&i, check) in order[run.members.clone()].iter().zip(checks) {
                            let n = &nodes[i];
                            let at =
                                usize::try_from(n.bp.offset_bytes - run.offset_bytes).unwrap_or(0);
                            let bytes = &buf[at..at + n.bp.physical_bytes as usize];
                            self.checked(name, n, bytes, check, children);
                        }
                    }
                    Err(_) => retry.push(r),
                }
                bufs.borrow_mut().push(buf);
            },
        )
        .await;
        self.bufs = bufs.into_inner();
        for r in retry {
            for &i in &order[runs[r].members.clone()] {
                let n = &nodes[i];
                match devs.read_block(&n.bp).await {
                    Ok(buf) => {
                        let check = check_block(&n.bp, &buf);
                        self.checked(name, n, &buf, check, children);
                    }
                    Err(e) => self.failed(name, n, e),
                }
            }
        }
    }

    /// Records what the check of a block found; a verified indirect block's children are
    /// queued (or its malformed form reported).
    fn checked(
        &mut self,
        name: &str,
        n: &Node,
        bytes: &[u8],
        check: Check,
        children: &mut Vec<Node>,
    ) {
        let bp = &n.bp;
        match check {
            Check::Checksum => return self.failed(name, n, BlockReadError::Checksum),
            Check::Decompress => {
                self.report
                    .checksum_errors
                    .push(format!("{name} partition {} level 0: does not decompress", n.partition));
            }
            Check::Verified => {}
        }
        self.report.blocks_verified += 1;
        self.progress.verified_bytes.fetch_add(u64::from(bp.physical_bytes), Ordering::Relaxed);
        if bp.level > 0 {
            match decode_indirect(bytes) {
                Ok(found) => children.extend(found.iter().enumerate().map(|(i, c)| Node {
                    bp: *c,
                    partition: n.partition,
                    index: n.index * 128 + i as u64,
                })),
                Err(_) => self.report.checksum_errors.push(format!(
                    "{name} partition {} level {}: malformed",
                    n.partition, bp.level
                )),
            }
        }
    }

    fn failed(&mut self, name: &str, n: &Node, e: BlockReadError) {
        let what = format!("{name} partition {} level {}", n.partition, n.bp.level);
        self.report.checksum_errors.push(match e {
            BlockReadError::Checksum => {
                format!("{what}: device {} offset {}", n.bp.device, n.bp.offset_bytes)
            }
            BlockReadError::Io(e) => format!("{what}: read error {e}"),
        });
    }
}

/// Inspects the pool on `devices` without changing it.
///
/// # Errors
/// When the devices do not hold a pool, the version is incompatible, or no uberblock's
/// metadata loads (errors below that are reported, not returned).
pub async fn inspect(devices: Vec<Arc<dyn BlockDevice>>) -> PoolResult<InspectReport> {
    inspect_with_progress(devices, &InspectProgress::default()).await
}

/// [`inspect`], counting its progress in `progress`.
///
/// # Errors
/// As [`inspect`].
pub async fn inspect_with_progress(
    devices: Vec<Arc<dyn BlockDevice>>,
    progress: &InspectProgress,
) -> PoolResult<InspectReport> {
    let (guid, name, configs, devs) = open_devices(devices).await?;
    let chosen = load_newest(&devs, &configs, guid).await?;
    let loaded = &chosen.loaded;
    let mut w = Walker {
        devs: &devs,
        loaded,
        progress,
        report: InspectReport {
            pool_name: name,
            pool_guid: guid,
            txg: chosen.ub.txg,
            device_count: configs.len(),
            capacity_bytes: loaded.alloc.capacity_bytes(),
            rejected_txgs: chosen.rejected.clone(),
            ..InspectReport::default()
        },
        live: BTreeMap::new(),
        seen: HashSet::new(),
        references: HashMap::new(),
        bufs: Vec::new(),
    };
    // Metadata objects (already verified by load).
    let meta = &loaded.meta;
    for obj in [&meta.root, &meta.space_map_table, &meta.directory] {
        for e in &obj.extents {
            w.add(*e, obj.bp.birth_txg);
        }
    }
    for g in 0..loaded.alloc.group_count() {
        let group = loaded.alloc.group(g);
        let (bp, extents) = (group.space_map, group.space_map_extents.clone());
        w.report.allocated_bytes += group.map().allocated_units() * SECTOR_BYTES;
        drop(group);
        for e in extents {
            w.add(e, bp.birth_txg);
        }
    }
    progress.allocated_bytes.store(w.report.allocated_bytes, Ordering::Relaxed);
    for chain in loaded.root.chains() {
        let role = configs.get(usize::from(chain.device)).map(|c| c.role);
        if role == Some(DeviceRole::Data as u32) {
            w.add(Extent::new(chain.device, chain.region_offset_bytes, chain.region_bytes), 0);
        }
    }
    for e in &loaded.ddt.entries() {
        w.add(e.1, u64::MAX);
    }
    for (e, birth) in loaded.ddt.object_extents() {
        w.add(e, birth);
    }
    for ds in meta.datasets.values() {
        for obj in [&ds.object, &ds.deadlist_object] {
            for e in &obj.extents {
                w.add(*e, obj.bp.birth_txg);
            }
        }
        let mut d = DatasetReport {
            name: ds.name(),
            kind: ds.kind(),
            capacity_bytes: ds.phys.capacity_bytes,
            volblock_bytes: ds.phys.volblock_bytes,
            data_blocks: 0,
            referenced_bytes: 0,
            physical_bytes: 0,
            compressed_blocks: 0,
            indirect_blocks: 0,
            creation_txg: ds.phys.creation_txg,
            deadlist_blocks: ds.deadlist.len() as u64,
        };
        w.dataset(ds, &mut d).await;
        if (d.referenced_bytes, d.physical_bytes) != (ds.phys.logical_bytes, ds.phys.physical_bytes)
        {
            w.report.accounting_errors.push(format!(
                "{}: header says {} logical / {} stored bytes, trees hold {} / {}",
                d.name,
                ds.phys.logical_bytes,
                ds.phys.physical_bytes,
                d.referenced_bytes,
                d.physical_bytes
            ));
        }
        w.report.datasets.push(d);
    }
    let mut report = w.report;
    check_dedup_references(&loaded.ddt, &w.references, &mut report);
    report.live_bytes = w.live.values().map(|(len, _)| *len).sum();
    // Overlap between neighbours (different offsets).
    let mut prev_end: Option<(u16, u64)> = None;
    for (&(dev, off), &(len, _)) in &w.live {
        if let Some((pdev, pend)) = prev_end {
            if pdev == dev && off < pend {
                report.overlapping_blocks += 1;
            }
        }
        prev_end = Some((dev, off + len));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaked_and_doubly_allocated_space_is_not_clean() {
        let clean =
            InspectReport { allocated_bytes: 1 << 20, live_bytes: 1 << 20, ..Default::default() };
        assert!(clean.is_clean());
        let leaked = InspectReport { live_bytes: (1 << 20) - 4096, ..clean.clone() };
        assert_eq!(leaked.leaked_bytes(), 4096);
        assert!(!leaked.is_clean());
        let overlapping = InspectReport { overlapping_blocks: 1, ..clean.clone() };
        assert!(!overlapping.is_clean());
        let live_but_free = InspectReport { unallocated_live_blocks: 1, ..clean.clone() };
        assert!(!live_but_free.is_clean());
        // A rewind is reported apart: the state inspected may still be clean.
        let rewound = InspectReport {
            rejected_txgs: vec![RejectedTxg { txg: 9, reason: "directory".into() }],
            ..clean
        };
        assert!(rewound.is_clean() && rewound.is_rewound());
    }

    #[test]
    fn back_to_back_blocks_are_read_together_up_to_the_limit() {
        let node = |offset_bytes: u64, physical_bytes: u32| Node {
            bp: BlockPointer { offset_bytes, physical_bytes, ..BlockPointer::HOLE },
            partition: 0,
            index: 0,
        };
        // 300 blocks of 4 KiB back to back (1.2 MB: two runs), a gap, one more, and a block
        // on another device at the same offset.
        let mut nodes: Vec<Node> = (0..300).map(|i| node(i * 4096, 4096)).collect();
        nodes.push(node(301 * 4096, 4096));
        let mut other = node(0, 4096);
        other.bp.device = 1;
        nodes.push(other);
        let mut order: Vec<usize> = (0..nodes.len()).rev().collect();
        order.sort_unstable_by_key(|&i| (nodes[i].bp.device, nodes[i].bp.offset_bytes));
        let runs = plan_runs(&nodes, &order);
        let shape: Vec<(u16, u64, u64, usize)> =
            runs.iter().map(|r| (r.device, r.offset_bytes, r.len_bytes, r.members.len())).collect();
        assert_eq!(
            shape,
            vec![
                (0, 0, MAX_READ_BYTES, 256),
                (0, MAX_READ_BYTES, 44 * 4096, 44),
                (0, 301 * 4096, 4096, 1),
                (1, 0, 4096, 1),
            ]
        );
    }
}
