//! Entry points of the engine's cargo-fuzz targets (`engine/fuzz`), one per on-disk structure,
//! and the generator of their seed corpora and regression inputs.
//!
//! Each entry point decodes arbitrary bytes (it must return, never panic) and, where the
//! structure has an encoder, checks that what decodes encodes back to what decodes the same.
//! They live here rather than in the fuzz crate so that `cargo test` replays the committed
//! seeds and regression inputs deterministically, without libFuzzer
//! (`fuzz::tests::committed_inputs_replay`).

use std::collections::HashMap;

use bytemuck::Zeroable;
use drivers::buffer::{IoBuf, SharedBuf};

use crate::block_pointer::{BlockKind, BlockPointer, Extent};
use crate::block_tree::{decode_indirect, FANOUT, INDIRECT_BYTES};
use crate::dataset::decode_deadlist;
use crate::ddt::{self, Ddt, DdtEntryPhys};
use crate::format::{checksum, FORMAT_VERSION, SECTOR_BYTES};
use crate::label::{DeviceConfig, DeviceRole, Label, LABEL_HEADER_BYTES};
use crate::object::StoredObject;
use crate::record::Sealed;
use crate::space_map::{SpaceMap, SLAB_UNITS};
use crate::uberblock::{slot_offset_bytes, Uberblock, UBERBLOCK_BYTES};
use crate::units::TxgId;
use crate::zil::{
    check_log_block_header, decode_log_block, encode_log_block, log_block_bytes, LogBlockExpect,
    LogBlockHeader, LogOp, LogRecord, LOG_BLOCK_HEADER_BYTES, LOG_BLOCK_MAGIC, MAX_LOG_BLOCK_BYTES,
};

/// A fuzz target: its name and its entry point.
pub type Target = (&'static str, fn(&[u8]));

/// The fuzz targets, by name (as in `engine/fuzz/Cargo.toml`).
pub const TARGETS: [Target; 6] = [
    ("label", label),
    ("uberblock", uberblock),
    ("block_pointer", block_pointer),
    ("log_block", log_block),
    ("space_map", space_map),
    ("ddt_log", ddt_log),
];

/// A label header: any image decodes or is refused; a decoded label re-encodes to itself; any
/// content sealed with the magic, version and checksum decodes.
pub fn label(data: &[u8]) {
    if let Ok(label) = Label::decode(data) {
        assert!(label.device_list().len() <= crate::label::MAX_DEVICES);
        assert_eq!(Label::decode(&label.encode()), Ok(label));
    }
    let mut sealed: Label = with_magic(data);
    sealed.format_version = FORMAT_VERSION;
    let encoded = sealed.encode();
    let back = Label::decode(&encoded).expect("a sealed label decodes");
    assert_eq!(back.encode(), encoded);
}

/// An uberblock slot: decodes, is skipped or is refused; a decoded one re-encodes to itself.
pub fn uberblock(data: &[u8]) {
    if let Ok(Some(ub)) = Uberblock::decode_slot(data) {
        let _ = slot_offset_bytes(ub.txg);
        let _ = ub.root.block_kind();
        assert_eq!(Uberblock::decode_slot(&ub.encode_slot()), Ok(Some(ub)));
    }
    let mut sealed: Uberblock = with_magic(data);
    sealed.format_version = FORMAT_VERSION;
    let slot = sealed.encode_slot();
    let back = Uberblock::decode_slot(&slot).expect("version").expect("a sealed slot decodes");
    assert_eq!(back.encode_slot(), slot);
}

/// `data` cut or zero-padded to a `T`, with `T`'s magic: any content of a sealed record.
fn with_magic<T: Sealed>(data: &[u8]) -> T {
    let mut image = vec![0u8; std::mem::size_of::<T>()];
    let n = data.len().min(image.len());
    image[..n].copy_from_slice(&data[..n]);
    image[..8].copy_from_slice(&T::MAGIC.to_le_bytes());
    bytemuck::pod_read_unaligned(&image)
}

/// Block pointers as they come from disk: an indirect block, a pointer array (deadlist, space
/// map table, dedup index, chunk index), and what the engine derives from one pointer.
pub fn block_pointer(data: &[u8]) {
    if let Ok(pointers) = decode_indirect(data) {
        assert_eq!(pointers.len(), FANOUT);
        assert_eq!(bytemuck::cast_slice::<_, u8>(&pointers), &data[..INDIRECT_BYTES]);
    }
    match decode_deadlist(data) {
        Ok(pointers) => {
            assert_eq!(bytemuck::cast_slice::<_, u8>(&pointers), data);
            for bp in &pointers {
                one_pointer(bp);
            }
        }
        Err(_) => assert!(!data.len().is_multiple_of(std::mem::size_of::<BlockPointer>())),
    }
}

fn one_pointer(bp: &BlockPointer) {
    let extent = bp.extent();
    assert_eq!(extent.len_bytes, u64::from(bp.physical_bytes));
    assert!(bp.same_block(bp));
    if let Some(kind) = bp.block_kind() {
        assert_eq!(BlockKind::from_u8(kind as u8), Some(kind));
    }
    let fp = ddt::bp_fingerprint(bp);
    let mut marked = *bp;
    ddt::mark_dedup(&mut marked, &fp);
    assert!(ddt::is_dedup(&marked));
    assert_eq!(ddt::bp_fingerprint(&marked), fp);
}

/// An intent-log block. Byte 0 even: the rest is taken as is (the checksum must match). Byte 0
/// odd: the rest gets a matching checksum first, so lengths and records are explored. The
/// expected identity is the block's own. A decoded block re-encodes to the same records.
pub fn log_block(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut block = rest.to_vec();
    let Some(head) = block.get(..LOG_BLOCK_HEADER_BYTES) else {
        let expect = LogBlockExpect { pool_guid: 0, chain: 0, sequence: 0 };
        assert!(decode_log_block(&block, &expect).is_err());
        return;
    };
    let mut header: LogBlockHeader = bytemuck::pod_read_unaligned(head);
    let expect = LogBlockExpect {
        pool_guid: header.pool_guid,
        chain: header.chain,
        sequence: header.sequence,
    };
    if mode % 2 == 1 {
        let end = (header.block_bytes as usize).min(block.len());
        header.checksum = [0, 0];
        block[..LOG_BLOCK_HEADER_BYTES].copy_from_slice(bytemuck::bytes_of(&header));
        header.checksum = checksum(&block[..end]);
        block[..LOG_BLOCK_HEADER_BYTES].copy_from_slice(bytemuck::bytes_of(&header));
    }
    if let Ok(h) = check_log_block_header(&block, &expect) {
        let (payload, len) = (h.payload_bytes as usize, u64::from(h.block_bytes));
        assert!((LOG_BLOCK_HEADER_BYTES..=h.block_bytes as usize).contains(&payload));
        assert!(
            len.is_multiple_of(SECTOR_BYTES) && (SECTOR_BYTES..=MAX_LOG_BLOCK_BYTES).contains(&len)
        );
    }
    let Ok((h, records)) = decode_log_block(&block, &expect) else { return };
    assert!(log_block_bytes(&records) <= u64::from(h.block_bytes));
    let mut again = vec![0u8; h.block_bytes as usize];
    encode_log_block(&mut again, h, &records);
    let (h2, back) = decode_log_block(&again, &expect).expect("a re-encoded block decodes");
    assert_eq!(back, records);
    assert_eq!(
        (h2.sequence, h2.next_offset_bytes, h2.block_bytes),
        (h.sequence, h.next_offset_bytes, h.block_bytes)
    );
}

/// A space map image: the first 4 bytes give the unit count (little-endian), the rest is the
/// image; the next 8 bytes of the image also choose a run to look for.
pub fn space_map(data: &[u8]) {
    let Some((units, image)) = data.split_first_chunk::<4>() else { return };
    let units = u64::from(u32::from_le_bytes(*units));
    let Some(map) = SpaceMap::decode(units, image) else { return };
    assert_eq!(map.units(), units);
    let need = usize::try_from(units.div_ceil(64) * 8).expect("decoded");
    let encoded = map.encode();
    assert_eq!(&encoded[..need], &image[..need]);
    assert_eq!(SpaceMap::decode(units, &encoded).as_ref(), Some(&map));
    assert!(map.allocated_units() <= units);
    let pick = |i: usize| u64::from(image.get(i).copied().unwrap_or(1));
    let (from, n) = (pick(0) * 3 % (units + 1), pick(1) % 70);
    if let Some(start) = map.find_free_run(from, n) {
        assert!(start + n <= units && map.range_is_free(start, n, false));
        let mut taken = map.clone();
        assert_eq!(taken.set_range(start, n, true), n);
        assert_eq!(taken.allocated_units(), map.allocated_units() + n);
        assert_eq!(taken.free_slabs(), taken.count_free_slabs());
    }
    assert_eq!(map.free_slabs(), map.count_free_slabs());
    // A run found while sparing the free slabs takes none of them.
    if let Some(start) = map.find_free_run_sparing_slabs(from, n) {
        assert!(start + n <= units && map.range_is_free(start, n, true));
        let mut taken = map.clone();
        taken.set_range(start, n, true);
        assert_eq!(taken.free_slabs(), map.free_slabs());
    }
    // The word-at-a-time search finds exactly what a unit-at-a-time one finds.
    let to = (pick(2) * 5 % (units + 1)).max(from);
    for spare in [false, true] {
        assert_eq!(
            map.scan_by_word(from, to, n, spare),
            map.scan_by_unit(from, to, n, spare),
            "search of {n} units in [{from}, {to}), sparing slabs: {spare}"
        );
    }
    let slabs = n % 4 + 1;
    if let Some(start) = map.find_free_slabs(from, slabs) {
        assert!(start.is_multiple_of(SLAB_UNITS) && start + slabs * SLAB_UNITS <= units);
        assert!(map.range_is_free(start, slabs * SLAB_UNITS, false));
        let mut taken = map.clone();
        taken.set_range(start, slabs * SLAB_UNITS, true);
        assert_eq!(taken.free_slabs() + slabs, map.free_slabs());
        taken.set_range(start, slabs * SLAB_UNITS, false);
        assert_eq!(taken.free_slabs(), map.free_slabs());
    }
}

/// A dedup-table log object: whole entries re-encode to the same bytes, and a replay that
/// succeeds leaves the table with exactly the entries last written (refcount 0 removes).
pub fn ddt_log(data: &[u8]) {
    let Ok(entries) = ddt::decode_entries(data, "dedup log") else {
        assert!(!data.len().is_multiple_of(std::mem::size_of::<DdtEntryPhys>()));
        return;
    };
    assert_eq!(ddt::encode_entries(&entries), data);
    let table = Ddt::default();
    if table.replay_log(data, StoredObject::none()).is_err() {
        return;
    }
    let mut model: HashMap<[u8; ddt::FINGERPRINT_BYTES], DdtEntryPhys> = HashMap::new();
    for e in entries {
        if e.refcount == 0 {
            model.remove(&e.fingerprint);
        } else {
            model.insert(e.fingerprint, e);
        }
    }
    let figures = table.figures();
    assert_eq!(figures.entries, model.len() as u64);
    let stored: u64 = model.values().map(|e| u64::from(e.sectors) * SECTOR_BYTES).sum();
    assert_eq!(figures.stored_bytes, stored);
    let referenced = model.values().fold(0u64, |sum, e| {
        sum.wrapping_add(u64::from(e.sectors) * SECTOR_BYTES * u64::from(e.refcount))
    });
    assert_eq!(figures.referenced_bytes, referenced);
}

/// One input for a fuzz target: a valid structure (a seed) or a malformed one (a
/// regression). The engine's and the iSCSI target's corpora are lists of these.
#[derive(Debug, Clone)]
pub struct Specimen {
    /// Target name (a key of the crate's `TARGETS`).
    pub target: &'static str,
    /// File name.
    pub name: &'static str,
    /// The input.
    pub bytes: Vec<u8>,
}

/// The specimen `name` of `target`.
#[must_use]
pub fn specimen(target: &'static str, name: &'static str, bytes: Vec<u8>) -> Specimen {
    Specimen { target, name, bytes }
}

fn sample_pointer(kind: BlockKind, offset_blocks: u64) -> BlockPointer {
    BlockPointer {
        offset_bytes: offset_blocks * SECTOR_BYTES,
        birth_txg: 7,
        checksum: [0x1234_5678, 0x9abc_def0],
        fill_blocks: 1,
        logical_bytes: 4096,
        physical_bytes: 4096,
        device: 1,
        kind: kind as u8,
        checksum_type: crate::block_pointer::CHECKSUM_XXH3_128,
        ..BlockPointer::HOLE
    }
}

fn sample_log_block() -> Vec<u8> {
    let records = vec![
        LogRecord {
            sequence: 1,
            label_txg: TxgId::new(5),
            dataset_id: 1,
            op: LogOp::Write {
                offset_bytes: 4096,
                data: SharedBuf::new(IoBuf::from_slice(&[0xa5; 64])),
            },
        },
        LogRecord {
            sequence: 2,
            label_txg: TxgId::new(5),
            dataset_id: 1,
            op: LogOp::Zero { offset_bytes: 0, len_bytes: 8192 },
        },
        LogRecord {
            sequence: 3,
            label_txg: TxgId::new(5),
            dataset_id: 1,
            op: LogOp::WriteSame { offset_bytes: 512, len_bytes: 2048, pattern: vec![7; 512] },
        },
        LogRecord {
            sequence: 4,
            label_txg: TxgId::new(6),
            dataset_id: 2,
            op: LogOp::WriteBlock {
                offset_bytes: 1 << 20,
                extent: Extent::new(0, 1 << 21, 32768),
                checksum: [11, 12],
            },
        },
    ];
    let len = log_block_bytes(&records);
    let header = LogBlockHeader {
        magic: LOG_BLOCK_MAGIC,
        pool_guid: 0xfe22_17e0,
        sequence: 1 << 32,
        next_offset_bytes: len,
        max_label_txg: 6,
        chain: 0,
        record_count: 0,
        block_bytes: u32::try_from(len).expect("one sector"),
        payload_bytes: 0,
        reserved: [0; 7],
        checksum: [0, 0],
    };
    let mut block = vec![0u8; usize::try_from(len).expect("one sector")];
    encode_log_block(&mut block, header, &records);
    block
}

/// The valid structures of every target (`engine/fuzz/corpus/TARGET/NAME`).
#[must_use]
pub fn seeds() -> Vec<Specimen> {
    let mut label = Label::new();
    label.pool_guid = 0xfe22_17e0;
    label.device_guid = 0x5eed;
    label.device_count = 2;
    label.device_bytes = 1 << 30;
    label.ag_bytes = 1 << 28;
    label.create_txg = 1;
    label.pool_name[..4].copy_from_slice(b"tank");
    label.devices[0] = DeviceConfig {
        guid: 0x5eed,
        size_bytes: 1 << 30,
        ag_bytes: 1 << 28,
        role: DeviceRole::Data as u32,
        reserved: 0,
    };
    label.devices[1] = DeviceConfig {
        guid: 0x1065,
        size_bytes: 1 << 26,
        ag_bytes: 0,
        role: DeviceRole::Log as u32,
        reserved: 0,
    };

    let ub = Uberblock::new(0xfe22_17e0, 42, 2, sample_pointer(BlockKind::PoolRoot, 100));
    let mut ub_slot = ub.encode_slot();
    ub_slot.truncate(UBERBLOCK_BYTES);

    let deadlist: Vec<BlockPointer> = vec![
        sample_pointer(BlockKind::Data, 600),
        sample_pointer(BlockKind::Indirect, 601),
        BlockPointer::HOLE,
    ];
    let mut dedup_pointer = sample_pointer(BlockKind::Data, 602);
    ddt::mark_dedup(&mut dedup_pointer, &ddt::fingerprint(0, 4096, b"seed"));
    let mut indirect = vec![BlockPointer::HOLE; FANOUT];
    indirect[0] = sample_pointer(BlockKind::Data, 700);
    indirect[FANOUT - 1] = dedup_pointer;

    let mut map = SpaceMap::new(200);
    map.set_range(0, 10, true);
    map.set_range(64, 70, true);
    let mut map_input = 200u32.to_le_bytes().to_vec();
    map_input.extend_from_slice(&map.encode()[..32]);

    let table = Ddt::default();
    for i in 0..4u32 {
        let fp = ddt::fingerprint(0, 4096, &i.to_le_bytes());
        table.insert(fp, &Extent::new(0, u64::from(i + 10) * SECTOR_BYTES, SECTOR_BYTES));
    }
    let inserted = table.take_changes();
    let _ = table.release(&ddt::fingerprint(0, 4096, &0u32.to_le_bytes()));
    let _ = table.add_ref(&ddt::fingerprint(0, 4096, &1u32.to_le_bytes()));
    let changed = table.take_changes();

    let block = sample_log_block();
    let mut log_as_is = vec![0u8];
    log_as_is.extend_from_slice(&block);
    let mut log_resealed = vec![1u8];
    log_resealed.extend_from_slice(&block);

    vec![
        specimen("label", "two-devices", label.encode()),
        specimen("uberblock", "txg-42", ub_slot),
        specimen("block_pointer", "deadlist", bytemuck::cast_slice(&deadlist).to_vec()),
        specimen("block_pointer", "dedup-pointer", bytemuck::bytes_of(&dedup_pointer).to_vec()),
        specimen("block_pointer", "indirect", bytemuck::cast_slice(&indirect).to_vec()),
        specimen("log_block", "four-kinds", log_as_is),
        specimen("log_block", "four-kinds-resealed", log_resealed),
        specimen("space_map", "200-units", map_input),
        specimen("ddt_log", "inserted", inserted),
        specimen("ddt_log", "released-and-referenced", changed),
    ]
}

/// Malformed structures that once crashed a decoder or sit just past one of its bounds
/// (`engine/fuzz/regressions/TARGET/NAME`).
#[must_use]
pub fn regressions() -> Vec<Specimen> {
    let label = seeds().into_iter().find(|s| s.target == "label").expect("label seed").bytes;
    let ub = Uberblock::new(1, 1, 1, BlockPointer::HOLE).encode_slot();
    // A log block whose payload length is below its header size, with a matching checksum.
    let mut short_payload = vec![1u8];
    let mut block = sample_log_block();
    let mut header: LogBlockHeader = bytemuck::pod_read_unaligned(&block[..LOG_BLOCK_HEADER_BYTES]);
    header.payload_bytes = 64;
    header.record_count = 0;
    block[..LOG_BLOCK_HEADER_BYTES].copy_from_slice(bytemuck::bytes_of(&header));
    short_payload.extend_from_slice(&block);
    let mut map_short = 129u32.to_le_bytes().to_vec();
    map_short.extend_from_slice(&[0u8; 16]);
    let mut map_tail = 100u32.to_le_bytes().to_vec();
    map_tail.extend_from_slice(&[0xff; 16]);
    let entry = DdtEntryPhys { refcount: 1, sectors: 1, ..DdtEntryPhys::zeroed() };
    let mut ddt_partial = ddt::encode_entries(&[entry]);
    ddt_partial.push(0);
    vec![
        specimen("label", "short", label[..100].to_vec()),
        specimen("label", "one-byte-short", label[..LABEL_HEADER_BYTES - 1].to_vec()),
        specimen("uberblock", "short", ub[..100].to_vec()),
        specimen("block_pointer", "short-indirect", vec![0u8; 100]),
        specimen("block_pointer", "indirect-one-pointer-short", vec![0u8; INDIRECT_BYTES - 64]),
        specimen("log_block", "payload-below-header", short_payload),
        specimen("log_block", "header-cut", vec![1u8; 60]),
        specimen("space_map", "image-short", map_short),
        specimen("space_map", "bits-past-end", map_tail),
        specimen("ddt_log", "partial-entry", ddt_partial),
    ]
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    /// `engine/fuzz/DIR/TARGET`: where the inputs of one target are committed.
    fn committed_dir(dir: &str, target: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join(dir).join(target)
    }

    /// What the generator makes, at the path it is committed at: seeds under `corpus`,
    /// regression inputs under `regressions`.
    fn generated() -> Vec<(PathBuf, Vec<u8>)> {
        let sets = [("corpus", seeds()), ("regressions", regressions())];
        sets.into_iter()
            .flat_map(|(dir, set)| {
                set.into_iter().map(move |s| (committed_dir(dir, s.target).join(s.name), s.bytes))
            })
            .collect()
    }

    /// The files committed for `target`, seeds and regression inputs.
    fn committed_files(target: &str) -> Vec<PathBuf> {
        ["corpus", "regressions"]
            .into_iter()
            .filter_map(|dir| std::fs::read_dir(committed_dir(dir, target)).ok())
            .flat_map(|entries| entries.map(|entry| entry.expect("entry").path()))
            .collect()
    }

    fn run(target: &str, bytes: &[u8]) {
        let f = TARGETS.iter().find(|(n, _)| *n == target).expect("known target").1;
        f(bytes);
    }

    /// The committed seeds and regression inputs are the generator's. With
    /// `FERRITE_WRITE_FUZZ_INPUTS=1` the test (re)writes them instead.
    #[test]
    fn committed_inputs_are_the_generators() {
        let write = std::env::var_os("FERRITE_WRITE_FUZZ_INPUTS").is_some();
        for (path, bytes) in generated() {
            if write {
                std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
                std::fs::write(&path, &bytes).expect("write input");
            }
            let committed = std::fs::read(&path).unwrap_or_default();
            assert!(committed == bytes, "{} differs from the generator", path.display());
        }
    }

    /// Every committed input of every target runs through its target without a panic (what
    /// a fuzz run would report as a crash).
    #[test]
    fn committed_inputs_replay() {
        let mut ran = 0;
        for (target, f) in TARGETS {
            for path in committed_files(target) {
                f(&std::fs::read(path).expect("input"));
                ran += 1;
            }
        }
        assert!(ran >= generated().len(), "only {ran} inputs found");
    }

    #[test]
    fn seeds_decode_and_regressions_are_refused() {
        assert!(Label::decode(&seeds()[0].bytes).is_ok());
        for s in seeds() {
            run(s.target, &s.bytes);
            assert!(s.bytes.len() <= INDIRECT_BYTES, "{} is {} bytes", s.name, s.bytes.len());
        }
        let block = &regressions()
            .into_iter()
            .find(|s| s.name == "payload-below-header")
            .expect("input")
            .bytes;
        let expect = LogBlockExpect { pool_guid: 0xfe22_17e0, chain: 0, sequence: 1 << 32 };
        let mut sealed = block[1..].to_vec();
        let mut header: LogBlockHeader =
            bytemuck::pod_read_unaligned(&sealed[..LOG_BLOCK_HEADER_BYTES]);
        header.checksum = [0, 0];
        sealed[..LOG_BLOCK_HEADER_BYTES].copy_from_slice(bytemuck::bytes_of(&header));
        header.checksum = checksum(&sealed);
        sealed[..LOG_BLOCK_HEADER_BYTES].copy_from_slice(bytemuck::bytes_of(&header));
        assert_eq!(decode_log_block(&sealed, &expect), Err(crate::zil::LogBlockError::BadLength));
    }
}
