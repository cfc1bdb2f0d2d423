//! The space phase of a txg sync: space maps, the space-map table and the pool root, the
//! flushes and the uberblock; and the thick reservations the space figures keep.

use super::*;
use crate::units::TxgId;

impl Pool {
    /// Writes one object of the space phase (a space map, the space-map table or the pool
    /// root) by `plan` in `txg`.
    async fn write_space_object(
        &self,
        plan: ObjectPlan,
        kind: BlockKind,
        txg: TxgId,
        data: &[u8],
    ) -> PoolResult<StoredObject> {
        write_object(&self.devs, plan, kind, txg, data).await.map_err(read_err)
    }

    /// Space maps, space-map table, pool root, flushes and the uberblock.
    pub(super) async fn commit_space_and_root(&self, txg: TxgId) -> PoolResult<()> {
        let (old_table, old_root, directory, next_id) = {
            let mut meta = lock(&self.meta);
            (
                std::mem::take(&mut meta.space_map_table),
                std::mem::take(&mut meta.root),
                meta.directory.bp,
                meta.next_id,
            )
        };
        self.free_object(&old_table, txg);
        self.free_object(&old_root, txg);
        let groups = self.alloc.group_count();
        let table_len = groups * std::mem::size_of::<BlockPointer>();
        let root_len = std::mem::size_of::<PoolRootPhys>();
        let mut hint = self.alloc.next_hint();
        let table_plan =
            ObjectPlan::allocate(&self.alloc, &mut hint, table_len).ok_or(PoolError::NoSpace)?;
        let root_plan =
            ObjectPlan::allocate(&self.alloc, &mut hint, root_len).ok_or(PoolError::NoSpace)?;
        // Relocate the space map of every group that changed, until no unrelocated group is
        // dirty (relocating one may dirty another).
        let mut plans: Vec<(usize, ObjectPlan)> = Vec::new();
        let mut relocated = HashSet::new();
        loop {
            let dirty: Vec<usize> =
                self.alloc.dirty_groups().into_iter().filter(|g| !relocated.contains(g)).collect();
            if dirty.is_empty() {
                break;
            }
            for g in dirty {
                relocated.insert(g);
                let (old, len) = {
                    let group = self.alloc.group(g);
                    (
                        std::mem::take(&mut group.space_map_extents.clone()),
                        group.units().div_ceil(8),
                    )
                };
                for e in old {
                    self.alloc.free(e, txg);
                }
                let len = usize::try_from(len).expect("space map fits").next_multiple_of(4096);
                let plan =
                    ObjectPlan::allocate(&self.alloc, &mut hint, len).ok_or(PoolError::NoSpace)?;
                plans.push((g, plan));
            }
        }
        for (g, plan) in plans {
            let image = self.alloc.group(g).persist_image();
            let stored = self.write_space_object(plan, BlockKind::SpaceMap, txg, &image).await?;
            let mut group = self.alloc.group(g);
            group.space_map = stored.bp;
            group.space_map_extents = stored.extents;
            group.dirty = false;
        }
        let table: Vec<BlockPointer> = (0..groups).map(|g| self.alloc.group(g).space_map).collect();
        let table_obj = self
            .write_space_object(
                table_plan,
                BlockKind::SpaceMapTable,
                txg,
                bytemuck::cast_slice(&table),
            )
            .await?;
        let mut root = PoolRootPhys {
            magic: POOL_ROOT_MAGIC,
            txg: txg.get(),
            next_dataset_id: next_id,
            next_record_sequence: self.txg.next_record_sequence.load(Ordering::SeqCst),
            ag_count: u32::try_from(groups).expect("group count fits"),
            log_chain_count: 0,
            reserve_percent: self.reserve_percent,
            reserved0: 0,
            directory,
            space_map_table: table_obj.bp,
            ..bytemuck::Zeroable::zeroed()
        };
        let chains = self.zil.heads_for(txg);
        root.log_chain_count = u32::try_from(chains.len()).expect("chains fit");
        root.ddt_index = self.ddt.index_bp();
        root.scan = self.scan_record();
        root.log_chains[..chains.len()].copy_from_slice(&chains);
        let root_obj = self
            .write_space_object(root_plan, BlockKind::PoolRoot, txg, bytemuck::bytes_of(&root))
            .await?;
        {
            let mut meta = lock(&self.meta);
            meta.space_map_table = table_obj;
            meta.root = root_obj.clone();
        }
        self.devs.flush_all().await?;
        let device_count = u32::try_from(self.device_configs.len()).expect("devices fit");
        let ub = Uberblock::new(self.guid, txg.get(), device_count, root_obj.bp);
        write_uberblocks(&self.devs, &self.device_configs, ub).await?;
        self.devs.flush_all().await?;
        Ok(())
    }

    /// The free space as `FERRITE_TXG_TRACE` prints it after a sync: free bytes, whole free
    /// slabs against the ones kept for metadata, the MiB free in runs of 4 KiB, 8 KiB, 16 KiB
    /// … (each class up to twice its length; the last one longer), and the shortest data run
    /// the sync still looked for. A pool whose free MiB sit in the first classes writes its
    /// data in short device writes, whatever the allocator's order.
    pub(super) fn free_space_trace(&self) -> String {
        let mib = |units: u64| (units * SECTOR_BYTES) >> 20;
        let classes: Vec<u64> =
            self.alloc.free_run_histogram().iter().map(|&units| mib(units)).collect();
        format!(
            "free {} MiB, {} free slabs ({} kept for metadata), MiB free in runs from 4K: \
             {classes:?}, data runs of at least {} bytes",
            self.alloc.free_bytes() >> 20,
            self.alloc.free_slabs(),
            self.alloc.spare_slabs(),
            self.txg.data_run_bytes.load(Ordering::Relaxed)
        )
    }

    /// Recomputes the unused part of thick volumes' reservations.
    pub(crate) fn refresh_reservations(&self) {
        let total = self.unused_reservation_bytes();
        self.reserved_unused_bytes.store(total, Ordering::Relaxed);
    }

    /// The part of thick volumes' reservations their data does not use yet.
    pub(crate) fn unused_reservation_bytes(&self) -> u64 {
        let meta = lock(&self.meta);
        let heads = lock(&self.heads);
        // Only volumes reserve: walk the open heads, not every snapshot.
        heads
            .iter()
            .filter_map(|(id, h)| Some((meta.datasets.get(id)?, h)))
            .filter(|(d, _)| d.kind() == DatasetKind::Volume && d.phys.reservation_bytes > 0)
            .map(|(d, h)| d.phys.reservation_bytes.saturating_sub(h.referenced_bytes()))
            .sum()
    }
}
