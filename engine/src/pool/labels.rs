//! Device labels and uberblock rings: writing a new pool's labels, reading them back to find
//! a pool's devices in order, and reading and writing the uberblocks of every label. Labels
//! belong to devices, so their I/O goes to the vdev tree's leaves ([`Stripe::leaf`]), not
//! through a top-level vdev's address space.

use std::collections::BTreeMap;
use std::sync::Arc;

use drivers::blockdev::BlockDevice;
use drivers::buffer::IoBuf;

use crate::error::{PoolError, PoolResult};
use crate::format::{label_offset_bytes, LABEL_BYTES, LABEL_COUNT};
use crate::label::{DeviceConfig, DeviceRole, Label, LABEL_HEADER_BYTES};
use crate::uberblock::{slot_offset_bytes, Uberblock, UBERBLOCK_RING_SLOTS, UBERBLOCK_SLOT_BYTES};
use crate::vdev::Stripe;

/// Reads the labels of `devices`, checks they form one pool and orders them by index.
pub(crate) async fn open_devices(
    devices: Vec<Arc<dyn BlockDevice>>,
) -> PoolResult<(u64, String, Vec<DeviceConfig>, Stripe)> {
    let mut labels = Vec::new();
    for dev in &devices {
        labels.push(read_label(dev.as_ref()).await?);
    }
    let first = labels.first().ok_or_else(|| PoolError::NotAPool("no devices".into()))?;
    let guid = first.pool_guid;
    let configs = first.device_list().to_vec();
    let mut ordered: Vec<Option<Arc<dyn BlockDevice>>> = vec![None; configs.len()];
    for (label, dev) in labels.iter().zip(devices) {
        let index = label.device_index as usize;
        if label.pool_guid != guid
            || index >= configs.len()
            || configs[index].guid != label.device_guid
            || ordered[index].is_some()
        {
            return Err(PoolError::DeviceMismatch(format!(
                "device {} does not belong to pool {guid:#x}",
                dev.info().name
            )));
        }
        ordered[index] = Some(dev);
    }
    let missing: Vec<String> = ordered
        .iter()
        .enumerate()
        .filter(|(_, d)| d.is_none())
        .map(|(i, _)| describe(i, &configs[i]))
        .collect();
    if !missing.is_empty() {
        return Err(PoolError::DeviceMismatch(format!(
            "missing {} of its {} devices: {}; every device of a pool of single devices is \
             needed to import it",
            missing.len(),
            configs.len(),
            missing.join(", ")
        )));
    }
    let name = crate::format::decode_name(&first.pool_name);
    let devs = Stripe::new(ordered.into_iter().map(|d| d.expect("every index filled")).collect());
    Ok((guid, name, configs, devs))
}

/// A device of the configuration as an import error names it: index, role, size and guid
/// (labels do not hold paths).
fn describe(index: usize, config: &DeviceConfig) -> String {
    let role = if config.role == DeviceRole::Log as u32 { "log" } else { "data" };
    format!("device {index} ({role}, {} MiB, guid {:#018x})", config.size_bytes >> 20, config.guid)
}

pub(super) async fn write_labels(
    devs: &Stripe,
    configs: &[DeviceConfig],
    guid: u64,
    name: &str,
) -> PoolResult<()> {
    let pool_name = crate::format::encode_name::<64>(name).ok_or_else(|| {
        PoolError::InvalidConfig(format!("pool name {name:?} is over 64 bytes, the label's limit"))
    })?;
    for (index, config) in configs.iter().enumerate() {
        for l in 0..LABEL_COUNT {
            let mut label = Label::new();
            label.label_index = u32::try_from(l).expect("4 labels");
            label.pool_guid = guid;
            label.device_guid = config.guid;
            label.device_index = u32::try_from(index).expect("32 devices");
            label.device_count = u32::try_from(configs.len()).expect("32 devices");
            label.device_role = config.role;
            label.device_bytes = config.size_bytes;
            label.ag_bytes = config.ag_bytes;
            label.create_txg = 1;
            label.pool_name = pool_name;
            label.devices[..configs.len()].copy_from_slice(configs);
            // Header plus an empty uberblock ring, in one write.
            let ring_end = slot_offset_bytes(UBERBLOCK_RING_SLOTS - 1) + UBERBLOCK_SLOT_BYTES;
            let mut image = IoBuf::zeroed(usize::try_from(ring_end).expect("label fits"));
            image[..LABEL_HEADER_BYTES].copy_from_slice(&label.encode());
            let offset = label_offset_bytes(l, config.size_bytes);
            let (res, _) = devs.leaf(index)?.write(offset, image, false).await;
            res?;
        }
    }
    devs.flush_all().await?;
    Ok(())
}

async fn read_label(dev: &dyn BlockDevice) -> PoolResult<Label> {
    let size = dev.info().size_bytes;
    let mut err = PoolError::NotAPool(format!("no valid label on {}", dev.info().name));
    for l in 0..LABEL_COUNT {
        if size < 4 * LABEL_BYTES {
            break;
        }
        let (res, buf) =
            dev.read(IoBuf::zeroed(LABEL_HEADER_BYTES), label_offset_bytes(l, size)).await;
        if res.is_err() {
            continue;
        }
        match Label::decode(&buf) {
            Ok(label) => return Ok(label),
            Err(e @ PoolError::IncompatibleVersion { .. }) => err = e,
            Err(_) => {}
        }
    }
    Err(err)
}

/// Every valid uberblock of the pool, newest first (duplicates across labels removed).
pub(crate) async fn read_uberblocks(
    devs: &Stripe,
    configs: &[DeviceConfig],
    guid: u64,
) -> PoolResult<Vec<Uberblock>> {
    let mut found: BTreeMap<u64, Uberblock> = BTreeMap::new();
    let mut version_err = None;
    for (index, config) in configs.iter().enumerate() {
        let Ok(leaf) = devs.leaf(index) else { continue };
        for l in 0..LABEL_COUNT {
            let base = label_offset_bytes(l, config.size_bytes);
            let ring_len =
                usize::try_from(UBERBLOCK_RING_SLOTS * UBERBLOCK_SLOT_BYTES).expect("fits");
            let Ok(ring) = leaf.read(base + slot_offset_bytes(0), ring_len).await else {
                continue;
            };
            for slot in ring.chunks_exact(UBERBLOCK_SLOT_BYTES as usize) {
                match Uberblock::decode_slot(slot) {
                    Ok(Some(ub)) if ub.pool_guid == guid => {
                        found.entry(ub.txg).or_insert(ub);
                    }
                    Ok(_) => {}
                    Err(e) => version_err = Some(e),
                }
            }
        }
    }
    if found.is_empty() {
        return Err(version_err.unwrap_or_else(|| PoolError::NotAPool("no valid uberblock".into())));
    }
    Ok(found.into_values().rev().collect())
}

/// Writes the uberblock of `ub.txg` into its ring slot of every label of every device.
pub(crate) async fn write_uberblocks(
    devs: &Stripe,
    configs: &[DeviceConfig],
    ub: Uberblock,
) -> PoolResult<()> {
    let slot = ub.encode_slot();
    let mut writes = Vec::new();
    for (index, config) in configs.iter().enumerate() {
        let leaf = devs.leaf(index)?;
        for l in 0..LABEL_COUNT {
            let offset = label_offset_bytes(l, config.size_bytes) + slot_offset_bytes(ub.txg);
            writes.push(leaf.write(offset, IoBuf::from_slice(&slot), false));
        }
    }
    for (res, _) in crate::join::join_all(writes).await {
        res?;
    }
    Ok(())
}
