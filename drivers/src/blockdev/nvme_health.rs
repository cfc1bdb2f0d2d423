//! NVMe health: the SMART / Health Information log page (log identifier 02h) of an NVMe
//! namespace's controller, read with the admin passthrough ioctl (`NVME_IOCTL_ADMIN_CMD`,
//! Get Log Page), and the figures `pool status` shows from it.
//!
//! Only NVMe block devices have it: [`read_health`] answers `None` for a file or any other
//! device, which `pool status` shows as "n/a".

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

/// Bytes of the health log page.
pub const HEALTH_LOG_BYTES: usize = 512;

/// Get Log Page (admin opcode 02h).
const OPCODE_GET_LOG_PAGE: u8 = 0x02;
/// SMART / Health Information (log identifier 02h).
const LOG_ID_HEALTH: u32 = 0x02;
/// The controller's own log, not a namespace's.
const NSID_CONTROLLER: u32 = 0xffff_ffff;

/// `struct nvme_admin_cmd` of `<linux/nvme_ioctl.h>` (72 bytes).
#[repr(C)]
#[derive(Debug, Default)]
struct AdminCommand {
    opcode: u8,
    flags: u8,
    rsvd1: u16,
    nsid: u32,
    cdw2: u32,
    cdw3: u32,
    metadata: u64,
    addr: u64,
    metadata_len: u32,
    data_len: u32,
    cdw10: u32,
    cdw11: u32,
    cdw12: u32,
    cdw13: u32,
    cdw14: u32,
    cdw15: u32,
    timeout_ms: u32,
    result: u32,
}

const _: () = assert!(std::mem::size_of::<AdminCommand>() == 72);

mod ioctl {
    // NVME_IOCTL_ADMIN_CMD = _IOWR('N', 0x41, struct nvme_admin_cmd).
    nix::ioctl_readwrite!(nvme_admin_cmd, b'N', 0x41, super::AdminCommand);
}

/// What `pool status` shows of a device's health log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NvmeHealth {
    /// Critical warning bits (spare below threshold, temperature, reliability, read-only,
    /// volatile backup); 0 when all is well.
    pub critical_warning: u8,
    /// Composite temperature, degrees Celsius.
    pub temperature_celsius: i32,
    /// Spare capacity left, percent.
    pub available_spare_percent: u8,
    /// Estimate of the rated endurance used, percent (may pass 100).
    pub percentage_used: u8,
    /// Unrecovered data integrity errors the controller has seen.
    pub media_errors: u64,
    /// Power-on hours.
    pub power_on_hours: u64,
    /// Shutdowns without a clean notification.
    pub unsafe_shutdowns: u64,
}

/// The 128-bit little-endian counter at `at`, saturated to 64 bits.
fn counter(page: &[u8; HEALTH_LOG_BYTES], at: usize) -> u64 {
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&page[at..at + 16]);
    u64::try_from(u128::from_le_bytes(bytes)).unwrap_or(u64::MAX)
}

/// Decodes a health log page (NVMe Base Specification, "SMART / Health Information").
#[must_use]
pub fn parse_health_log(page: &[u8; HEALTH_LOG_BYTES]) -> NvmeHealth {
    let kelvin = i32::from(u16::from_le_bytes([page[1], page[2]]));
    NvmeHealth {
        critical_warning: page[0],
        temperature_celsius: kelvin - 273,
        available_spare_percent: page[3],
        percentage_used: page[5],
        power_on_hours: counter(page, 128),
        unsafe_shutdowns: counter(page, 144),
        media_errors: counter(page, 160),
    }
}

/// The health of the device at `path`: `None` when it is not an NVMe block device (a file,
/// another kind of disk), else the log page's figures or the error of reading it.
#[must_use]
pub fn read_health(path: &Path) -> Option<std::io::Result<NvmeHealth>> {
    let name = path.file_name()?.to_str()?;
    if !name.starts_with("nvme") {
        return None;
    }
    let file = File::open(path).ok()?;
    if !file.metadata().ok()?.file_type().is_block_device() {
        return None;
    }
    Some(health_of(&file))
}

fn health_of(file: &File) -> std::io::Result<NvmeHealth> {
    let mut page = [0u8; HEALTH_LOG_BYTES];
    let dwords = u32::try_from(HEALTH_LOG_BYTES / 4 - 1).unwrap_or(0);
    let mut cmd = AdminCommand {
        opcode: OPCODE_GET_LOG_PAGE,
        nsid: NSID_CONTROLLER,
        addr: page.as_mut_ptr() as u64,
        data_len: u32::try_from(HEALTH_LOG_BYTES).unwrap_or(0),
        // Number of dwords less one (lower half) in bits 31:16, the log identifier in 7:0.
        cdw10: (dwords << 16) | LOG_ID_HEALTH,
        ..AdminCommand::default()
    };
    // SAFETY: `cmd` is a live `struct nvme_admin_cmd`; the kernel writes at most `data_len`
    // (512) bytes to `addr`, which points at `page`, alive and unaliased until the call
    // returns; no metadata buffer is passed (length 0).
    unsafe { ioctl::nvme_admin_cmd(file.as_raw_fd(), &mut cmd) }.map_err(std::io::Error::from)?;
    Ok(parse_health_log(&page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_health_page_decodes_at_the_specified_offsets() {
        let mut page = [0u8; HEALTH_LOG_BYTES];
        page[0] = 0x04;
        page[1..3].copy_from_slice(&318u16.to_le_bytes());
        page[3] = 97;
        page[5] = 12;
        page[128..144].copy_from_slice(&5000u128.to_le_bytes());
        page[144..160].copy_from_slice(&7u128.to_le_bytes());
        page[160..176].copy_from_slice(&3u128.to_le_bytes());
        let h = parse_health_log(&page);
        assert_eq!(
            h,
            NvmeHealth {
                critical_warning: 4,
                temperature_celsius: 45,
                available_spare_percent: 97,
                percentage_used: 12,
                media_errors: 3,
                power_on_hours: 5000,
                unsafe_shutdowns: 7,
            }
        );
        page[160..176].copy_from_slice(&u128::MAX.to_le_bytes());
        assert_eq!(parse_health_log(&page).media_errors, u64::MAX, "saturates");
    }

    #[test]
    fn files_and_other_devices_have_none() {
        let dir = std::env::temp_dir().join(format!("nvme-health-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("nvme0n1");
        std::fs::write(&file, [0u8; 4096]).expect("file");
        assert!(read_health(&file).is_none(), "a file named like a namespace");
        assert!(read_health(Path::new("/dev/null")).is_none());
        assert!(read_health(Path::new("/dev/nvme-missing")).is_none());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
