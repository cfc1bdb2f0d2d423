//! `Label`: the 4 KiB header at the start of each of the four labels of every device
//! (docs/format.md §Labels). It names the pool and the device and carries the pool's device
//! configuration, so any one surviving label is enough to find every device. The uberblock ring
//! follows it in the same label.

use bytemuck::{Pod, Zeroable};

use crate::error::{PoolError, PoolResult};
use crate::format::{check_version, Checksum, FORMAT_VERSION};
use crate::record::{sealed_image, sealed_record, stored_enum, unseal, Unsealed};

/// "FERRLABL".
pub const LABEL_MAGIC: u64 = u64::from_le_bytes(*b"FERRLABL");

/// Largest number of devices in a pool (data and log).
pub const MAX_DEVICES: usize = 32;

/// Size of the label header.
pub const LABEL_HEADER_BYTES: usize = 4096;

stored_enum! {
    /// Role of a device in the pool.
    pub enum DeviceRole: u32, from_u32 {
        /// Holds data and metadata (striped).
        Data = 0,
        /// Holds only intent-log chains (a separate log device).
        Log = 1,
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
    pub reserved3: [u64; 350],
    /// xxh3-128 of every byte before this field.
    pub checksum: Checksum,
}

sealed_record!(Label, LABEL_MAGIC, LABEL_HEADER_BYTES);

impl Label {
    /// A zeroed label with magic and version set.
    #[must_use]
    pub fn new() -> Label {
        Label { magic: LABEL_MAGIC, format_version: FORMAT_VERSION, ..Zeroable::zeroed() }
    }

    /// Sets `checksum` and returns the 4 KiB on-disk image.
    #[must_use]
    pub fn encode(self) -> Vec<u8> {
        sealed_image(self, LABEL_HEADER_BYTES)
    }

    /// Decodes and verifies a label image: length, magic, checksum, then version.
    ///
    /// # Errors
    /// [`PoolError::NotAPool`] for a short image or a wrong magic or checksum (not a label or a
    /// damaged copy), [`PoolError::IncompatibleVersion`] for a label of another format version.
    pub fn decode(bytes: &[u8]) -> PoolResult<Label> {
        let label: Label = unseal(bytes).map_err(|e| {
            PoolError::NotAPool(
                match e {
                    Unsealed::TooShort => "label too short",
                    Unsealed::Magic => "no label magic",
                    Unsealed::Checksum => "label checksum mismatch",
                }
                .into(),
            )
        })?;
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
    use crate::record::DocumentedImage;

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
        let mut fields = DocumentedImage::default();
        fields.bytes(b"FERRLABL").u32(FORMAT_VERSION).u32(2).u64(0xfeed).u64(0xd1);
        // device_index 0, device_count 1, device_role 1 (log), reserved0.
        fields.u32(0).u32(1).u32(1).zeros(4);
        // device_bytes, ag_bytes 0, create_txg, reserved1, then pool_name.
        fields.u64(64 << 20).u64(0).u64(4).zeros(56).bytes(b"tank").zeros(60 + 64);
        // devices[0]: guid, size_bytes, ag_bytes 0, role 1 (log).
        fields.u64(0xd1).u64(64 << 20).u64(0).u32(1);
        let (want, sum) = fields.sealed(4080, LABEL_HEADER_BYTES);
        assert_eq!(image, want);
        assert_eq!(sum, [0x9c23_bc32_98c0_b937, 0xa151_8e4d_91e9_b8db], "the image's checksum");
    }
}
