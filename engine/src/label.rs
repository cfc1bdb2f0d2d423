//! `Label`: the 4 KiB header at the start of each of the four labels of every device
//! (docs/format.md §Labels). It names the pool and the device and carries the pool's device
//! configuration, so any one surviving label is enough to find every device. The uberblock ring
//! follows it in the same label.

use bytemuck::{Pod, Zeroable};

use crate::error::{PoolError, PoolResult};
use crate::format::{check_version, checksum, Checksum, FORMAT_VERSION};

/// "FERRLABL".
pub const LABEL_MAGIC: u64 = u64::from_le_bytes(*b"FERRLABL");

/// Largest number of devices in a pool (data and log).
pub const MAX_DEVICES: usize = 32;

/// Size of the label header.
pub const LABEL_HEADER_BYTES: usize = 4096;

/// Role of a device in the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum DeviceRole {
    /// Holds data and metadata (striped).
    Data = 0,
    /// Holds only intent-log chains (a separate log device).
    Log = 1,
}

impl DeviceRole {
    /// Decodes a stored role.
    #[must_use]
    pub fn from_u32(v: u32) -> Option<DeviceRole> {
        match v {
            0 => Some(DeviceRole::Data),
            1 => Some(DeviceRole::Log),
            _ => None,
        }
    }
}

/// One device of the pool configuration, 32 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq, Default)]
pub struct DeviceConfig {
    /// Unique id of the device, also stored in its own labels.
    pub guid: u64,
    /// Size used by the pool (the device may be larger).
    pub size_bytes: u64,
    /// Size of the allocation groups on this device (0 for a log device).
    pub ag_bytes: u64,
    /// [`DeviceRole`] as u32.
    pub role: u32,
    /// Reserved, zero.
    pub reserved: u32,
}

const _: () = assert!(std::mem::size_of::<DeviceConfig>() == 32);

/// The label header.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq)]
pub struct Label {
    /// [`LABEL_MAGIC`].
    pub magic: u64,
    /// Format version that wrote the pool.
    pub format_version: u32,
    /// Which of the four labels this is.
    pub label_index: u32,
    /// Pool identity.
    pub pool_guid: u64,
    /// This device's identity.
    pub device_guid: u64,
    /// This device's index in `devices`.
    pub device_index: u32,
    /// Number of entries of `devices` in use.
    pub device_count: u32,
    /// This device's role.
    pub device_role: u32,
    /// Reserved, zero.
    pub reserved0: u32,
    /// This device's size in use by the pool.
    pub device_bytes: u64,
    /// Allocation group size on this device.
    pub ag_bytes: u64,
    /// Txg in which the pool was created.
    pub create_txg: u64,
    /// Reserved, zero.
    pub reserved1: [u64; 7],
    /// Pool name, zero padded.
    pub pool_name: [u8; 64],
    /// Reserved, zero.
    pub reserved2: [u8; 64],
    /// The pool's devices.
    pub devices: [DeviceConfig; MAX_DEVICES],
    /// Reserved, zero.
    pub reserved3: [u8; 2048],
    /// Reserved, zero.
    pub reserved4: [u8; 512],
    /// Reserved, zero.
    pub reserved5: [u8; 128],
    /// Reserved, zero.
    pub reserved6: [u8; 96],
    /// Reserved, zero.
    pub reserved7: [u64; 2],
    /// xxh3-128 of every byte before this field.
    pub checksum: Checksum,
}

const _: () = assert!(std::mem::size_of::<Label>() == LABEL_HEADER_BYTES);

impl Label {
    /// A zeroed label with magic and version set.
    #[must_use]
    pub fn new() -> Label {
        Label { magic: LABEL_MAGIC, format_version: FORMAT_VERSION, ..Zeroable::zeroed() }
    }

    fn body_checksum(&self) -> Checksum {
        let bytes = bytemuck::bytes_of(self);
        checksum(&bytes[..LABEL_HEADER_BYTES - 16])
    }

    /// Sets `checksum` and returns the 4 KiB on-disk image.
    #[must_use]
    pub fn encode(mut self) -> Vec<u8> {
        self.checksum = self.body_checksum();
        bytemuck::bytes_of(&self).to_vec()
    }

    /// Decodes and verifies a label image: magic, checksum, then version.
    ///
    /// # Errors
    /// [`PoolError::NotAPool`] for a wrong magic or checksum (not a label or a damaged copy),
    /// [`PoolError::IncompatibleVersion`] for a label of another format version.
    pub fn decode(bytes: &[u8]) -> PoolResult<Label> {
        if bytes.len() < LABEL_HEADER_BYTES {
            return Err(PoolError::NotAPool("label too short".into()));
        }
        let label: Label = bytemuck::pod_read_unaligned(&bytes[..LABEL_HEADER_BYTES]);
        if label.magic != LABEL_MAGIC {
            return Err(PoolError::NotAPool("no label magic".into()));
        }
        if label.checksum != label.body_checksum() {
            return Err(PoolError::NotAPool("label checksum mismatch".into()));
        }
        check_version(label.format_version)?;
        Ok(label)
    }

    /// The devices in use.
    #[must_use]
    pub fn device_list(&self) -> &[DeviceConfig] {
        let n = (self.device_count as usize).min(MAX_DEVICES);
        &self.devices[..n]
    }
}

impl Default for Label {
    fn default() -> Self {
        Label::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_round_trips_and_detects_corruption() {
        let mut label = Label::new();
        label.pool_guid = 42;
        label.device_count = 1;
        let mut image = label.encode();
        let back = Label::decode(&image).expect("valid");
        assert_eq!(back.pool_guid, 42);
        image[100] ^= 0x10;
        assert!(matches!(Label::decode(&image), Err(PoolError::NotAPool(_))));
    }

    #[test]
    fn other_version_is_refused_with_both_numbers() {
        let mut label = Label::new();
        label.format_version = FORMAT_VERSION + 6;
        let image = label.encode();
        match Label::decode(&image) {
            Err(PoolError::IncompatibleVersion { found, supported }) => {
                assert_eq!(found, FORMAT_VERSION + 6);
                assert_eq!(supported, FORMAT_VERSION);
            }
            other => panic!("expected a version error, got {other:?}"),
        }
    }

    /// The header image, byte for byte: the fields at their documented offsets
    /// (docs/format.md §Labels), zeros elsewhere, the checksum over the first 4080.
    #[test]
    fn header_bytes_are_pinned() {
        let mut label = Label::new();
        label.label_index = 2;
        label.pool_guid = 0xfeed;
        label.device_guid = 0xd1;
        label.device_count = 1;
        label.device_role = DeviceRole::Log as u32;
        label.device_bytes = 64 << 20;
        label.create_txg = 4;
        label.pool_name[..4].copy_from_slice(b"tank");
        label.devices[0] =
            DeviceConfig { guid: 0xd1, size_bytes: 64 << 20, role: 1, ..DeviceConfig::default() };
        let image = label.encode();
        let mut want = vec![0u8; LABEL_HEADER_BYTES];
        let fields: [(usize, &[u8]); 13] = [
            (0, b"FERRLABL"),
            (8, &FORMAT_VERSION.to_le_bytes()),
            (12, &2u32.to_le_bytes()),
            (16, &0xfeedu64.to_le_bytes()),
            (24, &0xd1u64.to_le_bytes()),
            (36, &1u32.to_le_bytes()),
            (40, &1u32.to_le_bytes()),
            (48, &(64u64 << 20).to_le_bytes()),
            (64, &4u64.to_le_bytes()),
            (128, b"tank"),
            (256, &0xd1u64.to_le_bytes()),
            (264, &(64u64 << 20).to_le_bytes()),
            (280, &1u32.to_le_bytes()),
        ];
        for (at, bytes) in fields {
            want[at..at + bytes.len()].copy_from_slice(bytes);
        }
        let sum = checksum(&want[..4080]);
        want[4080..4088].copy_from_slice(&sum[0].to_le_bytes());
        want[4088..].copy_from_slice(&sum[1].to_le_bytes());
        assert_eq!(image, want);
        assert_eq!(sum, [0x9c23_bc32_98c0_b937, 0xa151_8e4d_91e9_b8db], "the image's checksum");
    }
}
