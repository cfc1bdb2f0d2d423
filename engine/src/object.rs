//! Metadata objects: a byte string of any length stored copy-on-write as one block, or as
//! 128 KiB chunks under a chunk-index block (docs/format.md §Metadata objects).
//!
//! Writing is split in two: [`ObjectPlan::allocate`] reserves the extents (so the txg sync can
//! allocate everything before it freezes the space maps) and [`write_object`] fills them.

use drivers::buffer::IoBuf;

use crate::allocator::Allocator;
use crate::block_pointer::{BlockKind, BlockPointer, Extent, CHECKSUM_XXH3_128};
use crate::format::{checksum, MAX_BLOCK_BYTES, SECTOR_BYTES};
use crate::vdev::{BlockReadError, DeviceSet};

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
        let chunk = MAX_BLOCK_BYTES as usize;
        let count = len_bytes.div_ceil(chunk).max(1);
        if count > MAX_CHUNKS {
            return None;
        }
        let mut chunks = Vec::with_capacity(count);
        for i in 0..count {
            let this = (len_bytes - i * chunk).min(chunk);
            chunks.push(alloc.allocate(hint, physical(this))?);
        }
        let index = if count > 1 {
            Some(alloc.allocate(hint, physical(count * std::mem::size_of::<BlockPointer>()))?)
        } else {
            None
        };
        Some(ObjectPlan { len_bytes, chunks, index })
    }

    /// Length the plan was made for.
    #[must_use]
    pub fn len_bytes(&self) -> usize {
        self.len_bytes
    }
}

async fn write_block(
    devs: &DeviceSet,
    extent: Extent,
    kind: BlockKind,
    level: u8,
    txg: u64,
    data: &[u8],
) -> Result<BlockPointer, BlockReadError> {
    let phys = physical(data.len());
    assert!(phys <= extent.len_bytes, "object chunk larger than its extent");
    let mut buf = IoBuf::zeroed(usize::try_from(phys).expect("block fits"));
    buf[..data.len()].copy_from_slice(data);
    let sum = checksum(&buf);
    let bp = BlockPointer {
        offset_bytes: extent.offset_bytes,
        birth_txg: txg,
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
    devs: &DeviceSet,
    plan: ObjectPlan,
    kind: BlockKind,
    txg: u64,
    data: &[u8],
) -> Result<StoredObject, BlockReadError> {
    assert!(data.len() <= plan.len_bytes, "object longer than its plan");
    let chunk = MAX_BLOCK_BYTES as usize;
    let mut extents = plan.chunks.clone();
    if plan.chunks.len() == 1 {
        let bp = write_block(devs, plan.chunks[0], kind, 0, txg, data).await?;
        return Ok(StoredObject { bp, extents });
    }
    let mut pointers = Vec::with_capacity(plan.chunks.len());
    for (i, extent) in plan.chunks.iter().enumerate() {
        let start = (i * chunk).min(data.len());
        let end = ((i + 1) * chunk).min(data.len());
        pointers.push(write_block(devs, *extent, kind, 0, txg, &data[start..end]).await?);
    }
    let index = plan.index.expect("multi-chunk plan has an index extent");
    let mut bp =
        write_block(devs, index, BlockKind::ChunkIndex, 1, txg, bytemuck::cast_slice(&pointers))
            .await?;
    bp.fill_blocks = pointers.len() as u64;
    // The index records which kind its chunks hold in `flags` for inspect.
    bp.flags = u16::from(kind as u8);
    extents.push(index);
    Ok(StoredObject { bp, extents })
}

/// Reads an object and verifies every block of it.
///
/// # Errors
/// [`BlockReadError::Checksum`] for a block that does not verify or a malformed index.
pub async fn read_object(
    devs: &DeviceSet,
    bp: &BlockPointer,
) -> Result<(Vec<u8>, Vec<Extent>), BlockReadError> {
    let buf = devs.read_block(bp).await?;
    let logical = bp.logical_bytes as usize;
    if logical > buf.len() {
        return Err(BlockReadError::Checksum);
    }
    if bp.block_kind() != Some(BlockKind::ChunkIndex) {
        return Ok((buf[..logical].to_vec(), vec![bp.extent()]));
    }
    if !logical.is_multiple_of(std::mem::size_of::<BlockPointer>()) {
        return Err(BlockReadError::Checksum);
    }
    let pointers: Vec<BlockPointer> = buf[..logical]
        .chunks_exact(std::mem::size_of::<BlockPointer>())
        .map(bytemuck::pod_read_unaligned)
        .collect();
    let mut out = Vec::new();
    let mut extents = Vec::with_capacity(pointers.len() + 1);
    for p in &pointers {
        if p.block_kind() == Some(BlockKind::ChunkIndex) {
            return Err(BlockReadError::Checksum);
        }
        let chunk = devs.read_block(p).await?;
        let n = p.logical_bytes as usize;
        if n > chunk.len() {
            return Err(BlockReadError::Checksum);
        }
        out.extend_from_slice(&chunk[..n]);
        extents.push(p.extent());
    }
    extents.push(bp.extent());
    Ok((out, extents))
}
