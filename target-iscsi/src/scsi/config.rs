//! Per-LUN configuration.

use std::path::PathBuf;

/// Configuration of one logical unit. Block sizes and capacity come from the volume.
#[derive(Debug, Clone)]
pub struct LunConfig {
    /// iSCSI name of the target node the LU belongs to.
    pub target_name: String,
    /// Logical unit number.
    pub lun: u64,
    /// T10 VENDOR IDENTIFICATION (8 ASCII characters, space-padded).
    pub vendor: String,
    /// PRODUCT IDENTIFICATION (16 ASCII characters).
    pub product: String,
    /// PRODUCT REVISION LEVEL (4 ASCII characters).
    pub revision: String,
    /// Unit serial number (VPD 0x80); derived from the NAA id when `None`.
    pub serial: Option<String>,
    /// NAA IEEE Registered designator (low 60 bits used); derived stably from the target name
    /// and LUN when `None`.
    pub naa_id: Option<u64>,
    /// File where persistent reservations with APTPL are kept (JSON). `None`: APTPL refused.
    pub pr_state_path: Option<PathBuf>,
    /// File where saved mode pages are kept (JSON). `None`: SP=1 refused.
    pub mode_state_path: Option<PathBuf>,
    /// The LU rejects every write with DATA PROTECT.
    pub read_only: bool,
    /// Report POWER ON, RESET OCCURRED to every I_T nexus the first time it is seen.
    pub unit_attention_on_new_nexus: bool,
    /// Where a sanitize operation runs once its SANITIZE command has started it.
    pub background: BackgroundWork,
    /// Bandwidth a sanitize operation takes from the volume, so that the other LUs on the
    /// same disks keep their latency (`None`: as fast as the volume goes). Paced only when
    /// the operation runs on a reactor.
    pub sanitize_bytes_per_s: Option<u64>,
    /// Offer SANITIZE BLOCK ERASE. Only for volumes that deallocate, read deallocated blocks
    /// as zeros and report them deallocated in GET LBA STATUS (`MemoryVolume`, pool volumes,
    /// a `DeviceVolume` whose `tracks_allocation` is true); on a volume that reports every
    /// block mapped (a raw block device) an erased LU would look unerased.
    pub block_erase: bool,
}

/// Default sanitize bandwidth: 128 MiB/s, a 1 GiB overwrite pass in 8 s.
pub const DEFAULT_SANITIZE_BYTES_PER_S: u64 = 128 << 20;

/// Where the LU runs work that outlives the command that starts it (a sanitize operation,
/// SBC-4 4.11: it continues through ABORT TASK, resets and the loss of the session).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackgroundWork {
    /// As a task of the current shard's reactor (`drivers::executor::spawn`): the command
    /// only waits for it (IMMED = 0) or returns at once (IMMED = 1).
    Reactor,
    /// Inside the command that starts it, for callers with no reactor on the thread (unit
    /// tests, fuzzing): IMMED is answered once the operation is over.
    InCommand,
}

impl LunConfig {
    /// Defaults for LU `lun` of target `target_name`: vendor "FERRITE", derived ids, no
    /// persistence.
    #[must_use]
    pub fn new(target_name: &str, lun: u64) -> LunConfig {
        LunConfig {
            target_name: target_name.to_string(),
            lun,
            vendor: "FERRITE".to_string(),
            product: "ferrite volume".to_string(),
            revision: "0001".to_string(),
            serial: None,
            naa_id: None,
            pr_state_path: None,
            mode_state_path: None,
            read_only: false,
            unit_attention_on_new_nexus: false,
            background: BackgroundWork::Reactor,
            sanitize_bytes_per_s: Some(DEFAULT_SANITIZE_BYTES_PER_S),
            block_erase: false,
        }
    }
}

/// 64-bit FNV-1a: a stable (across builds and runs) hash for derived identifiers.
#[must_use]
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xFF;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
