//! An import that passes over newer uberblocks says so: 8 bytes changed in a live dataset,
//! directory or space-map block of the newest txg make import and inspect open the txg before
//! it, and both name the txg rejected and the object that failed. Durable (logged) writes are
//! still replayed, and the next txg supersedes the rejected one.

mod common;

use std::sync::Arc;

use common::{crash_copy, memory_device, pattern, reactor, read_at};
use drivers::blockdev::memory::MemoryDevice;
use drivers::blockdev::BlockDevice;
use drivers::buffer::IoBuf;
use engine::block_pointer::BlockPointer;
use engine::dataset::{decode_deadlist, decode_directory};
use engine::format::{decode_name, label_offset_bytes, LABEL_COUNT};
use engine::pool_root::PoolRootPhys;
use engine::uberblock::{slot_offset_bytes, Uberblock, UBERBLOCK_RING_SLOTS, UBERBLOCK_SLOT_BYTES};
use engine::{CreateOptions, Pool, PoolTunables, VolumeOptions};

const DEVICE_BYTES: u64 = 64 << 20;

fn read_block(mem: &MemoryDevice, bp: &BlockPointer) -> Vec<u8> {
    assert_ne!(bp.kind, engine::block_pointer::BlockKind::ChunkIndex as u8, "one-block objects");
    let mut buf = vec![0u8; bp.physical_bytes as usize];
    mem.read_into(&mut buf, bp.offset_bytes).expect("read block");
    buf.truncate(bp.logical_bytes as usize);
    buf
}

/// The newest uberblock on the device.
fn newest_uberblock(mem: &MemoryDevice) -> Uberblock {
    let mut newest: Option<Uberblock> = None;
    for l in 0..LABEL_COUNT {
        let base = label_offset_bytes(l, DEVICE_BYTES);
        for slot in 0..UBERBLOCK_RING_SLOTS {
            let mut buf = vec![0u8; UBERBLOCK_SLOT_BYTES as usize];
            mem.read_into(&mut buf, base + slot_offset_bytes(slot)).expect("read slot");
            if let Ok(Some(ub)) = Uberblock::decode_slot(&buf) {
                if newest.is_none_or(|n| ub.txg > n.txg) {
                    newest = Some(ub);
                }
            }
        }
    }
    newest.expect("an uberblock")
}

/// Which metadata block to damage.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// The dataset object of volume `vol`.
    Dataset,
    Directory,
    /// The first space map written in the newest txg.
    SpaceMap,
}

/// The pointer to `target` in the state of the newest uberblock; it must have been written
/// in that txg (so the txg before it is intact).
fn find(mem: &MemoryDevice, target: Target) -> (u64, BlockPointer) {
    let ub = newest_uberblock(mem);
    let root = PoolRootPhys::decode(&read_block(mem, &ub.root)).expect("pool root");
    let bp = match target {
        Target::Directory => root.directory,
        Target::Dataset => {
            let entries = decode_directory(&read_block(mem, &root.directory)).expect("directory");
            entries
                .iter()
                .find(|e| decode_name(&e.name) == "vol")
                .map(|e| e.object)
                .expect("volume vol in the directory")
        }
        Target::SpaceMap => {
            let table = decode_deadlist(&read_block(mem, &root.space_map_table)).expect("table");
            table
                .into_iter()
                .find(|bp| bp.birth_txg == ub.txg)
                .expect("a space map written in the newest txg")
        }
    };
    assert_eq!(bp.birth_txg, ub.txg, "{target:?} was written in the newest txg");
    (ub.txg, bp)
}

/// Changes 8 bytes in the middle of the block behind `bp`.
fn damage(mem: &MemoryDevice, bp: &BlockPointer) {
    // The device takes whole sectors: rewrite the one holding the 8 bytes.
    let at = (u64::from(bp.logical_bytes) / 2 / 8 * 8).min(u64::from(bp.physical_bytes) - 8);
    let sector = bp.offset_bytes + at / 512 * 512;
    let mut bytes = [0u8; 512];
    mem.read_into(&mut bytes, sector).expect("read");
    let within = (at % 512) as usize;
    for b in &mut bytes[within..within + 8] {
        *b ^= 0xa5;
    }
    mem.write_from(&bytes, sector).expect("write");
}

fn rewind_is_reported(target: Target, reason_names: &str) {
    let r = reactor();
    let (mem, dev) = memory_device(DEVICE_BYTES >> 20);
    let lbas = 8u64; // one 4 KiB block of 512-byte LBAs
    let (crashed, newest) = r.block_on(async {
        let options =
            CreateOptions { guid: Some(11), log_chain_bytes: 1 << 20, ..CreateOptions::default() };
        let pool = common::create(&dev, options).await;
        let vol_options =
            VolumeOptions { capacity_bytes: 16 << 20, partition_count: 4, ..Default::default() };
        let vol = pool.create_volume("vol", &vol_options).await.expect("volume");
        common::write_buf(&vol, 0, IoBuf::from_slice(&pattern(1, 4096)), false).await;
        pool.snapshot("vol", "s").await.expect("snapshot");
        // The newest txg: a write-back write and the snapshot's destroy.
        common::write_buf(&vol, 0, IoBuf::from_slice(&pattern(2, 4096)), false).await;
        pool.destroy_snapshot("vol@s").await.expect("destroy snapshot");
        let newest = pool.durable_txg();
        // A durable write after it: in the intent log only.
        common::write_buf(&vol, lbas, IoBuf::from_slice(&pattern(3, 4096)), true).await;
        (crash_copy(&mem), newest)
    });
    let (txg, bp) = find(&crashed, target);
    assert_eq!(txg, newest.get());
    damage(&crashed, &bp);
    let crashed_dev: Arc<dyn BlockDevice> = Arc::clone(&crashed) as Arc<dyn BlockDevice>;
    r.block_on(async {
        // Offline: inspect names the rejected txg and opens the one before, which is clean.
        let report =
            engine::inspect::inspect(vec![Arc::clone(&crashed_dev)]).await.expect("inspect");
        assert!(report.is_rewound(), "{report}");
        assert_eq!(report.txg, newest.get() - 1, "{report}");
        assert_eq!(report.rejected_txgs.len(), 1, "{report}");
        assert_eq!(report.rejected_txgs[0].txg, newest.get(), "{report}");
        assert!(report.rejected_txgs[0].reason.contains(reason_names), "{report}");
        assert!(report.is_clean(), "the txg before is clean: {report}");

        let pool = common::import(&crashed_dev).await;
        let rewind = pool.rewind_report().expect("the import reports its rewind");
        assert_eq!(rewind.imported_txg, newest.get() - 1);
        assert_eq!(rewind.newest_txg(), newest.get());
        assert_eq!(rewind.rejected.len(), 1);
        assert_eq!(rewind.rejected[0].txg, newest.get());
        assert!(rewind.rejected[0].reason.contains(reason_names), "{rewind}");
        assert!(rewind.rejected[0].reason.contains("failed its checksum"), "{rewind}");
        let line = rewind.to_string();
        assert!(line.contains(&format!("rewound to txg {}", newest.get() - 1)), "{line}");
        assert!(line.contains(&format!("txg {newest} rejected")), "{line}");
        // The state opened is the one before: the destroyed snapshot is back, the write-back
        // write of the rejected txg is gone, the logged write is replayed.
        assert!(pool.list().contains(&"vol@s".to_string()), "{:?}", pool.list());
        let vol = pool.open_volume("vol").expect("open");
        assert_eq!(read_at(&vol, 0, 4096).await, pattern(1, 4096));
        assert_eq!(read_at(&vol, lbas, 4096).await, pattern(3, 4096), "logged write replayed");
        // The import's commit is numbered past the rejected txg, so it supersedes it.
        assert_eq!(pool.durable_txg(), newest.next());
        // The report stays until cleared.
        assert_eq!(pool.rewind_report(), Some(rewind.clone()));
        assert_eq!(pool.clear_rewind_report(), Some(rewind));
        assert_eq!(pool.rewind_report(), None);
        pool.export().await.expect("export");
        drop(vol);
        drop(pool);

        // A second import opens the newest txg: nothing passed over, nothing to report.
        let report =
            engine::inspect::inspect(vec![Arc::clone(&crashed_dev)]).await.expect("inspect");
        assert!(!report.is_rewound() && report.is_clean(), "{report}");
        let pool =
            Pool::import(vec![crashed_dev], PoolTunables::default()).await.expect("import again");
        assert_eq!(pool.rewind_report(), None);
        assert!(pool.list().contains(&"vol@s".to_string()));
    });
}

#[test]
fn damaged_dataset_block_of_the_newest_txg_is_reported() {
    rewind_is_reported(Target::Dataset, "dataset vol");
}

#[test]
fn damaged_directory_block_of_the_newest_txg_is_reported() {
    rewind_is_reported(Target::Directory, "directory");
}

#[test]
fn damaged_space_map_block_of_the_newest_txg_is_reported() {
    rewind_is_reported(Target::SpaceMap, "space map of allocation group");
}

#[test]
fn undamaged_pool_imports_without_a_rewind_report() {
    let r = reactor();
    let dev = common::device(64);
    r.block_on(async {
        let options =
            CreateOptions { guid: Some(12), log_chain_bytes: 1 << 20, ..CreateOptions::default() };
        let pool = common::create(&dev, options).await;
        pool.create_volume(
            "vol",
            &VolumeOptions { capacity_bytes: 16 << 20, ..Default::default() },
        )
        .await
        .expect("volume");
        pool.export().await.expect("export");
        let txg = pool.durable_txg();
        drop(pool);
        let pool = Pool::import(vec![dev], PoolTunables::default()).await.expect("import");
        assert_eq!(pool.rewind_report(), None);
        // Import commits the next txg (the intent log's new epoch), numbered as always.
        assert_eq!(pool.durable_txg(), txg.next());
    });
}
