//! ferrite-inspect as a library: walks a pool offline (read-only), verifies every checksum
//! from the newest uberblock down, cross-checks every live block against the space maps and
//! against every other live block, and reports pool, volume and snapshot figures.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use drivers::blockdev::BlockDevice;

use crate::block_pointer::{BlockPointer, Extent};
use crate::block_tree::decode_indirect;
use crate::compress::{decompress_block, COMPRESSION_OFF};
use crate::dataset::DatasetKind;
use crate::ddt::{bp_fingerprint, is_dedup, FINGERPRINT_BYTES};
use crate::error::{PoolError, PoolResult};
use crate::format::SECTOR_BYTES;
use crate::label::DeviceRole;
use crate::pool::{open_devices, read_uberblocks, Pool};
use crate::vdev::{BlockReadError, DeviceSet};

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
}

impl InspectReport {
    /// True when every checksum verified and the allocation is consistent.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.checksum_errors.is_empty()
            && self.accounting_errors.is_empty()
            && self.unallocated_live_blocks == 0
            && self.overlapping_blocks == 0
    }

    /// Allocated space nothing reaches (leaked by a crash between a log write and its txg).
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
        for e in &self.checksum_errors {
            writeln!(f, "  CHECKSUM ERROR: {e}")?;
        }
        for e in &self.accounting_errors {
            writeln!(f, "  ACCOUNTING ERROR: {e}")?;
        }
        Ok(())
    }
}

async fn verify(
    devs: &DeviceSet,
    bp: &BlockPointer,
    report: &mut InspectReport,
    what: &str,
) -> Option<Vec<u8>> {
    match devs.read_block(bp).await {
        Ok(buf) => {
            report.blocks_verified += 1;
            Some(buf.to_vec())
        }
        Err(BlockReadError::Checksum) => {
            report
                .checksum_errors
                .push(format!("{what}: device {} offset {}", bp.device, bp.offset_bytes));
            None
        }
        Err(BlockReadError::Io(e)) => {
            report.checksum_errors.push(format!("{what}: read error {e}"));
            None
        }
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

/// Inspects the pool on `devices` without changing it.
///
/// # Errors
/// When the devices do not hold a pool, the version is incompatible, or the pool root and its
/// directory cannot be loaded at all (errors below that are reported, not returned).
pub async fn inspect(devices: Vec<Arc<dyn BlockDevice>>) -> PoolResult<InspectReport> {
    let (guid, name, configs, devs) = open_devices(devices).await?;
    let ubs = read_uberblocks(&devs, &configs, guid).await?;
    let mut last = PoolError::NotAPool("no valid uberblock".into());
    for ub in ubs {
        let loaded = match Pool::load(&devs, &configs, &ub).await {
            Ok(l) => l,
            Err(e) => {
                last = e;
                continue;
            }
        };
        let mut report = InspectReport {
            pool_name: name,
            pool_guid: guid,
            txg: ub.txg,
            device_count: configs.len(),
            capacity_bytes: loaded.alloc.capacity_bytes(),
            ..InspectReport::default()
        };
        let mut live: BTreeMap<(u16, u64), (u64, u64)> = BTreeMap::new(); // (dev, off) -> (len, birth)
        let mut add = |e: Extent, birth: u64, report: &mut InspectReport| {
            if e.len_bytes == 0 {
                return;
            }
            if let Some((len, b)) = live.get(&(e.device, e.offset_bytes)) {
                if *len == e.len_bytes && *b == birth {
                    return; // the same block, shared
                }
                report.overlapping_blocks += 1;
                return;
            }
            live.insert((e.device, e.offset_bytes), (e.len_bytes, birth));
            if !loaded.alloc.is_allocated(&e) {
                report.unallocated_live_blocks += 1;
            }
        };
        // Metadata objects (already verified by load).
        let meta = &loaded.meta;
        for obj in [&meta.root, &meta.space_map_table, &meta.directory] {
            for e in &obj.extents {
                add(*e, obj.bp.birth_txg, &mut report);
            }
        }
        for g in 0..loaded.alloc.group_count() {
            let group = loaded.alloc.group(g);
            let (bp, extents) = (group.space_map, group.space_map_extents.clone());
            report.allocated_bytes += group.map().allocated_units() * SECTOR_BYTES;
            drop(group);
            for e in extents {
                add(e, bp.birth_txg, &mut report);
            }
        }
        for chain in loaded.root.chains() {
            let role = configs.get(usize::from(chain.device)).map(|c| c.role);
            if role == Some(DeviceRole::Data as u32) {
                add(
                    Extent::new(chain.device, chain.region_offset_bytes, chain.region_bytes),
                    0,
                    &mut report,
                );
            }
        }
        let mut seen: HashSet<(u16, u64, u64)> = HashSet::new();
        // Distinct references to each deduplicated block found in the trees.
        let mut references: HashMap<[u8; FINGERPRINT_BYTES], HashSet<Reference>> = HashMap::new();
        for e in &loaded.ddt.entries() {
            add(e.1, u64::MAX, &mut report);
        }
        for (e, birth) in loaded.ddt.object_extents() {
            add(e, birth, &mut report);
        }
        for ds in meta.datasets.values() {
            for obj in [&ds.object, &ds.deadlist_object] {
                for e in &obj.extents {
                    add(*e, obj.bp.birth_txg, &mut report);
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
            for (p, root) in ds.roots.iter().enumerate() {
                let mut stack = vec![(root.root, 0u64)];
                while let Some((bp, index)) = stack.pop() {
                    if bp.is_hole() {
                        continue;
                    }
                    if is_dedup(&bp) {
                        let owner = reference_owner(meta, ds.phys.id, bp.birth_txg);
                        references.entry(bp_fingerprint(&bp).0).or_default().insert((
                            owner,
                            p,
                            index,
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
                    add(bp.extent(), birth, &mut report);
                    let first_visit = seen.insert((bp.device, bp.offset_bytes, bp.birth_txg));
                    if !first_visit && bp.level == 0 {
                        continue;
                    }
                    let what = format!("{} partition {p} level {}", d.name, bp.level);
                    let Some(bytes) = verify(&devs, &bp, &mut report, &what).await else {
                        continue;
                    };
                    if bp.level > 0 {
                        match decode_indirect(&bytes) {
                            Ok(children) => stack.extend(
                                children
                                    .iter()
                                    .enumerate()
                                    .map(|(i, c)| (*c, index * 128 + i as u64)),
                            ),
                            Err(_) => report.checksum_errors.push(format!("{what}: malformed")),
                        }
                    } else if bp.compression != COMPRESSION_OFF
                        && decompress_block(bp.compression, &bytes, bp.logical_bytes as usize)
                            .is_err()
                    {
                        report.checksum_errors.push(format!("{what}: does not decompress"));
                    }
                }
            }
            if (d.referenced_bytes, d.physical_bytes)
                != (ds.phys.logical_bytes, ds.phys.physical_bytes)
            {
                report.accounting_errors.push(format!(
                    "{}: header says {} logical / {} stored bytes, trees hold {} / {}",
                    d.name,
                    ds.phys.logical_bytes,
                    ds.phys.physical_bytes,
                    d.referenced_bytes,
                    d.physical_bytes
                ));
            }
            report.datasets.push(d);
        }
        check_dedup_references(&loaded.ddt, &references, &mut report);
        report.live_bytes = live.values().map(|(len, _)| *len).sum();
        // Overlap between neighbours (different offsets).
        let mut prev_end: Option<(u16, u64)> = None;
        for (&(dev, off), &(len, _)) in &live {
            if let Some((pdev, pend)) = prev_end {
                if pdev == dev && off < pend {
                    report.overlapping_blocks += 1;
                }
            }
            prev_end = Some((dev, off + len));
        }
        return Ok(report);
    }
    Err(last)
}
