//! Metadata objects: a byte string of any length stored copy-on-write as one block, or as
//! 128 KiB chunks under a chunk-index block (docs/format.md §Metadata objects).
//!
//! Writing is split in two: [`ObjectPlan::allocate`] reserves the extents (so the txg sync can
//! allocate everything before it freezes the space maps) and [`write_object`] fills them.

use drivers::buffer::IoBuf;

use crate::allocator::Allocator;
use crate::block_pointer::{BlockKind, BlockPointer, Extent, CHECKSUM_XXH3_128};
use crate::format::{checksum, MAX_BLOCK_BYTES, SECTOR_BYTES};
use crate::units::TxgId;
use crate::vdev::{BlockReadError, Stripe};

/// Largest number of chunks of one object (the chunk index is one block).
pub const MAX_CHUNKS: usize = (MAX_BLOCK_BYTES as usize) / std::mem::size_of::<BlockPointer>();

/// A stored object: its pointer and every extent it occupies (kept so it can be freed without
/// reading it back).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredObject {
    /// Pointer to the object (a chunk index when it has several chunks).
    pub bp: BlockPointer,
    /// Extents of the object's blocks.
    pub extents: Vec<Extent>,
    /// Pointers to the object's chunks, in order, when it has a chunk index (empty for a
    /// one-block object): what [`ObjectPlan::allocate_reusing`] may keep.
    pub chunks: Vec<BlockPointer>,
}

impl StoredObject {
    /// Nothing stored.
    #[must_use]
    pub fn none() -> StoredObject {
        StoredObject::default()
    }

    /// Bytes the object occupies on its devices.
    #[must_use]
    pub fn disk_bytes(&self) -> u64 {
        self.extents.iter().map(|e| e.len_bytes).sum()
    }
}

/// Extents reserved for an object of a known length.
#[derive(Debug, Clone)]
pub struct ObjectPlan {
    len_bytes: usize,
    chunks: Vec<Extent>,
    /// Per chunk: the previous version's chunk kept as it is (not written again).
    kept: Vec<Option<BlockPointer>>,
    index: Option<Extent>,
}

fn physical(len: usize) -> u64 {
    (len as u64).next_multiple_of(SECTOR_BYTES).max(SECTOR_BYTES)
}

impl ObjectPlan {
    /// Reserves space for `len_bytes`. `None` when the pool is out of space or the object is
    /// larger than [`MAX_CHUNKS`] chunks.
    #[must_use]
    pub fn allocate(
        alloc: &Allocator,
        hint: &mut crate::allocator::Hint,
        len_bytes: usize,
    ) -> Option<ObjectPlan> {
        Self::allocate_reusing(alloc, hint, len_bytes, &StoredObject::none(), |_| false)
    }

    /// Reserves space for a new version of `prev` of `len_bytes`, keeping every chunk of
    /// `prev` that `unchanged(i)` says holds exactly the new version's bytes of chunk `i`.
    /// Only whole chunks of an object with a chunk index are kept (both versions' chunk `i`
    /// full), so a version that grows at its end or changes in a few places writes only the
    /// chunks that changed and a new index. The caller frees [`ObjectPlan::released`].
    /// `None` as for [`ObjectPlan::allocate`].
    #[must_use]
    pub fn allocate_reusing(
        alloc: &Allocator,
        hint: &mut crate::allocator::Hint,
        len_bytes: usize,
        prev: &StoredObject,
        unchanged: impl Fn(usize) -> bool,
    ) -> Option<ObjectPlan> {
        let chunk = MAX_BLOCK_BYTES as usize;
        let count = len_bytes.div_ceil(chunk).max(1);
        if count > MAX_CHUNKS {
            return None;
        }
        let mut chunks = Vec::with_capacity(count);
        let mut kept = Vec::with_capacity(count);
        for i in 0..count {
            let this = (len_bytes - i * chunk).min(chunk);
            let keep = prev
                .chunks
                .get(i)
                .filter(|p| count > 1 && this == chunk && p.logical_bytes as usize == chunk)
                .filter(|_| unchanged(i))
                .copied();
            match keep {
                Some(p) => chunks.push(p.extent()),
                None => chunks.push(alloc.allocate(hint, physical(this))?),
            }
            kept.push(keep);
        }
        let index = if count > 1 {
            Some(alloc.allocate(hint, physical(count * std::mem::size_of::<BlockPointer>()))?)
        } else {
            None
        };
        Some(ObjectPlan { len_bytes, chunks, kept, index })
    }

    /// The extents of `prev` this plan does not keep: free them in the txg that writes it.
    #[must_use]
    pub fn released(&self, prev: &StoredObject) -> Vec<Extent> {
        let kept: std::collections::HashSet<(u16, u64)> =
            self.kept.iter().flatten().map(|p| (p.device, p.offset_bytes)).collect();
        prev.extents
            .iter()
            .filter(|e| !kept.contains(&(e.device, e.offset_bytes)))
            .copied()
            .collect()
    }

    /// Chunks kept from the previous version.
    #[must_use]
    pub fn kept_chunks(&self) -> usize {
        self.kept.iter().flatten().count()
    }

    /// Bytes at the front of the object that kept chunks cover without a gap: the writer
    /// needs the object's bytes only from there ([`write_object_from`]).
    #[must_use]
    pub fn kept_prefix_bytes(&self) -> usize {
        self.kept.iter().take_while(|k| k.is_some()).count() * MAX_BLOCK_BYTES as usize
    }

    /// Length the plan was made for.
    #[must_use]
    pub fn len_bytes(&self) -> usize {
        self.len_bytes
    }
}

async fn write_block(
    devs: &Stripe,
    extent: Extent,
    kind: BlockKind,
    level: u8,
    txg: TxgId,
    data: &[u8],
) -> Result<BlockPointer, BlockReadError> {
    let phys = physical(data.len());
    assert!(phys <= extent.len_bytes, "object chunk larger than its extent");
    let mut buf = IoBuf::zeroed(usize::try_from(phys).expect("block fits"));
    buf[..data.len()].copy_from_slice(data);
    let sum = checksum(&buf);
    let bp = BlockPointer {
        offset_bytes: extent.offset_bytes,
        birth_txg: txg.get(),
        checksum: sum,
        fill_blocks: 0,
        logical_bytes: u32::try_from(data.len()).expect("chunk fits u32"),
        physical_bytes: u32::try_from(phys).expect("chunk fits u32"),
        device: extent.device,
        kind: kind as u8,
        level,
        checksum_type: CHECKSUM_XXH3_128,
        ..BlockPointer::HOLE
    };
    // Check the checksum again right before the write (memory corruption between the two
    // would otherwise be persisted as valid).
    assert_eq!(checksum(&buf), bp.checksum, "buffer changed before write");
    let (res, _) = devs.write(extent.device, extent.offset_bytes, buf).await;
    res.map_err(BlockReadError::Io)?;
    Ok(bp)
}

/// Writes `data` into the extents of `plan` as an object of `kind` born in `txg`.
///
/// # Errors
/// A device error.
///
/// # Panics
/// When `data` is longer than the plan (a programmer error).
pub async fn write_object(
    devs: &Stripe,
    plan: ObjectPlan,
    kind: BlockKind,
    txg: TxgId,
    data: &[u8],
) -> Result<StoredObject, BlockReadError> {
    write_object_from(devs, plan, kind, txg, 0, data).await
}

/// [`write_object`] given only the object's bytes from `from` on (`data`): every chunk before
/// `from` must be one the plan keeps ([`ObjectPlan::kept_prefix_bytes`]).
///
/// # Errors
/// A device error.
///
/// # Panics
/// When the object is longer than the plan, or a chunk to write starts before `from` (a
/// programmer error).
pub async fn write_object_from(
    devs: &Stripe,
    plan: ObjectPlan,
    kind: BlockKind,
    txg: TxgId,
    from: usize,
    data: &[u8],
) -> Result<StoredObject, BlockReadError> {
    let len = from + data.len();
    assert!(len <= plan.len_bytes, "object longer than its plan");
    let chunk = MAX_BLOCK_BYTES as usize;
    let mut extents = plan.chunks.clone();
    if plan.chunks.len() == 1 {
        assert_eq!(from, 0, "a one-block object is written whole");
        let bp = write_block(devs, plan.chunks[0], kind, 0, txg, data).await?;
        return Ok(StoredObject { bp, extents, chunks: Vec::new() });
    }
    let mut pointers = Vec::with_capacity(plan.chunks.len());
    for (i, (extent, kept)) in plan.chunks.iter().zip(&plan.kept).enumerate() {
        let start = (i * chunk).min(len);
        let end = ((i + 1) * chunk).min(len);
        match kept {
            Some(p) => {
                assert_eq!(end - start, chunk, "a kept chunk is a whole chunk of the new version");
                pointers.push(*p);
            }
            None => {
                assert!(start >= from, "chunk {i} is not kept and its bytes were not given");
                let bytes = &data[start - from..end - from];
                pointers.push(write_block(devs, *extent, kind, 0, txg, bytes).await?);
            }
        }
    }
    let index = plan.index.expect("multi-chunk plan has an index extent");
    let mut bp =
        write_block(devs, index, BlockKind::ChunkIndex, 1, txg, bytemuck::cast_slice(&pointers))
            .await?;
    bp.fill_blocks = pointers.len() as u64;
    // The index records which kind its chunks hold in `flags` for inspect.
    bp.flags = u16::from(kind as u8);
    extents.push(index);
    Ok(StoredObject { bp, extents, chunks: pointers })
}

/// The chunk pointers of a chunk index's `logical` bytes.
///
/// # Errors
/// [`BlockReadError::Checksum`] for a malformed index (a partial pointer, or a chunk that is
/// itself an index).
pub fn decode_chunk_index(logical: &[u8]) -> Result<Vec<BlockPointer>, BlockReadError> {
    if !logical.len().is_multiple_of(std::mem::size_of::<BlockPointer>()) {
        return Err(BlockReadError::Checksum);
    }
    let pointers: Vec<BlockPointer> = logical
        .chunks_exact(std::mem::size_of::<BlockPointer>())
        .map(bytemuck::pod_read_unaligned)
        .collect();
    if pointers.iter().any(|p| p.block_kind() == Some(BlockKind::ChunkIndex)) {
        return Err(BlockReadError::Checksum);
    }
    Ok(pointers)
}

/// Reads an object and verifies every block of it: its bytes, and where it is stored.
///
/// # Errors
/// [`BlockReadError::Checksum`] for a block that does not verify or a malformed index.
pub async fn read_object(
    devs: &Stripe,
    bp: &BlockPointer,
) -> Result<(Vec<u8>, StoredObject), BlockReadError> {
    let buf = devs.read_block(bp).await?;
    let logical = bp.logical_bytes as usize;
    if logical > buf.len() {
        return Err(BlockReadError::Checksum);
    }
    if bp.block_kind() != Some(BlockKind::ChunkIndex) {
        let stored = StoredObject { bp: *bp, extents: vec![bp.extent()], chunks: Vec::new() };
        return Ok((buf[..logical].to_vec(), stored));
    }
    let pointers = decode_chunk_index(&buf[..logical])?;
    let mut out = Vec::new();
    let mut extents = Vec::with_capacity(pointers.len() + 1);
    for p in &pointers {
        let chunk = devs.read_block(p).await?;
        let n = p.logical_bytes as usize;
        if n > chunk.len() {
            return Err(BlockReadError::Checksum);
        }
        out.extend_from_slice(&chunk[..n]);
        extents.push(p.extent());
    }
    extents.push(bp.extent());
    Ok((out, StoredObject { bp: *bp, extents, chunks: pointers }))
}
