//! Loading a pool's durable state from an uberblock: the pool root, space maps, directory,
//! datasets with their deadlists, and the dedup table.

use super::lifecycle::ag_layouts;
use super::Pool;
use crate::allocator::Allocator;
use crate::block_pointer::BlockPointer;
use crate::dataset::{decode_dataset, decode_deadlist, decode_directory};
use crate::ddt::Ddt;
use crate::error::{PoolError, PoolResult};
use crate::format::SECTOR_BYTES;
use crate::label::DeviceConfig;
use crate::meta::{DatasetMeta, DeadList, Meta};
use crate::object::{read_object, StoredObject};
use crate::pool_root::PoolRootPhys;
use crate::space_map::SpaceMap;
use crate::uberblock::Uberblock;
use crate::vdev::{BlockReadError, Stripe};

/// Dataset objects read at once during import.
const LOAD_WINDOW: usize = 64;

/// A pool's durable state as loaded from an uberblock.
pub(crate) struct Loaded {
    pub(crate) root: PoolRootPhys,
    pub(crate) alloc: Allocator,
    pub(crate) meta: Meta,
    pub(crate) ddt: Ddt,
}

impl Pool {
    pub(crate) async fn load(
        devs: &Stripe,
        configs: &[DeviceConfig],
        ub: &Uberblock,
    ) -> PoolResult<Loaded> {
        let (bytes, root_object) =
            read_object(devs, &ub.root).await.map_err(corrupt("pool root", &ub.root))?;
        let root = PoolRootPhys::decode(&bytes)?;
        let alloc = Allocator::new(ag_layouts(configs));
        if root.ag_count as usize != alloc.group_count() {
            return Err(PoolError::Corrupt("allocation group count".into()));
        }
        let (table, table_object) = read_object(devs, &root.space_map_table)
            .await
            .map_err(corrupt("space map table", &root.space_map_table))?;
        let pointers = crate::dataset::decode_deadlist(&table)?;
        if pointers.len() != alloc.group_count() {
            return Err(PoolError::Corrupt("space map table length".into()));
        }
        for (i, bp) in pointers.iter().enumerate() {
            let units = alloc.layout(i).len_bytes / SECTOR_BYTES;
            let (image, stored) = read_object(devs, bp)
                .await
                .map_err(corrupt(&format!("space map of allocation group {i}"), bp))?;
            let map = SpaceMap::decode(units, &image)
                .ok_or_else(|| PoolError::Corrupt(format!("space map {i}")))?;
            alloc.load_group(i, map, *bp, stored.extents);
        }
        let (dir_bytes, directory) = read_object(devs, &root.directory)
            .await
            .map_err(corrupt("directory", &root.directory))?;
        let entries = decode_directory(&dir_bytes)?;
        let mut meta = Meta {
            next_id: root.next_dataset_id,
            directory,
            directory_bytes: dir_bytes,
            space_map_table: table_object,
            root: root_object,
            ..Meta::default()
        };
        // Datasets load LOAD_WINDOW at a time: a pool with tens of thousands of snapshots
        // waits for the device's latency once per window, not once per dataset.
        for window in entries.chunks(LOAD_WINDOW) {
            let loads = window.iter().map(|entry| load_dataset(devs, entry)).collect();
            for loaded in crate::join::join_all(loads).await {
                meta.insert(loaded?);
            }
        }
        meta.set_directory_slots(&entries);
        let ddt = Ddt::default();
        if !root.ddt_index.is_hole() {
            let (bytes, index_object) = read_object(devs, &root.ddt_index)
                .await
                .map_err(corrupt("dedup index", &root.ddt_index))?;
            let pointers = decode_deadlist(&bytes)?;
            if pointers.len() < crate::ddt::DDT_PARTITIONS {
                return Err(PoolError::Corrupt("dedup index length".into()));
            }
            let (checkpoints, log) = pointers.split_at(crate::ddt::DDT_PARTITIONS);
            for (i, bp) in checkpoints.iter().enumerate().filter(|(_, bp)| !bp.is_hole()) {
                let (bytes, stored) =
                    read_object(devs, bp).await.map_err(corrupt("dedup table", bp))?;
                ddt.load_part(i, &bytes, stored)?;
            }
            for bp in log {
                let (bytes, stored) =
                    read_object(devs, bp).await.map_err(corrupt("dedup log", bp))?;
                ddt.replay_log(&bytes, stored)?;
            }
            ddt.set_index(index_object);
        }
        Ok(Loaded { root, alloc, meta, ddt })
    }
}

/// Maps a failed metadata read to an error naming the object and where its block lies (for
/// the import error and a rewind report).
fn corrupt(what: &str, bp: &BlockPointer) -> impl FnOnce(BlockReadError) -> PoolError {
    let what = format!(
        "{what} (device {} offset {}, written in txg {})",
        bp.device, bp.offset_bytes, bp.birth_txg
    );
    move |e| match e {
        BlockReadError::Io(io) => PoolError::Io(io),
        BlockReadError::Checksum => PoolError::Corrupt(format!("{what} failed its checksum")),
    }
}

/// Reads one dataset object of the directory, and its deadlist.
async fn load_dataset(
    devs: &Stripe,
    entry: &crate::dataset::DirectoryEntry,
) -> PoolResult<DatasetMeta> {
    let dataset = format!("dataset {}", crate::format::decode_name(&entry.name));
    let (bytes, object) =
        read_object(devs, &entry.object).await.map_err(corrupt(&dataset, &entry.object))?;
    let (phys, roots) = decode_dataset(&bytes)?;
    let (deadlist, deadlist_object) = if phys.deadlist.is_hole() {
        (DeadList::default(), StoredObject::none())
    } else {
        let (bytes, stored) = read_object(devs, &phys.deadlist)
            .await
            .map_err(corrupt(&format!("deadlist of {dataset}"), &phys.deadlist))?;
        (DeadList::loaded(decode_deadlist(&bytes)?, phys.deadlist), stored)
    };
    Ok(DatasetMeta {
        phys,
        roots,
        object,
        deadlist,
        deadlist_object,
        dirty: false,
        deadlist_dirty: false,
    })
}
