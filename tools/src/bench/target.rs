//! What ferrite-bench drives. A [`TargetSpec`] is parsed from `--target`; opening it gives a
//! [`Target`] shared by every shard, and each shard attaches its own [`ShardIo`] inside its
//! reactor (a device handle today; a volume handle or an iSCSI session per shard when `volume:`
//! and `iscsi://` targets arrive). The I/O loop is generic over [`ShardIo`].
//!
//! - `file:PATH` runs through [`drivers::blockdev::uring::UringDevice`] and the
//!   [`BlockDevice`] trait (O_DIRECT, fixed files, fixed buffers), the path the engine uses;
//!   with `--direct 0` a buffered descriptor is driven with the same ring operations.
//! - `mem:SIZE` is a [`MemoryDevice`]: no kernel I/O, so it measures the loop's own cost.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use drivers::blockdev::memory::MemoryDevice;
use drivers::blockdev::uring::UringDevice;
use drivers::blockdev::BlockDevice;
use drivers::buffer::{IoBuf, SharedBuf};
use drivers::error::{IoError, IoResult};
use drivers::ops::{self, FileRef};

use ferrite_tools::size::parse_bytes;

use super::BenchError;

/// A target named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    /// `file:PATH`: a regular file or a block device, through the shard's ring.
    File(PathBuf),
    /// `mem:SIZE`: RAM, to measure the benchmark loop without a device.
    Memory(u64),
    /// `volume:PATH`: a pool engine volume on the file PATH (created or imported).
    Volume(PathBuf),
    /// `volume-mem:SIZE`: a pool engine volume of SIZE bytes on a memory device (no kernel
    /// I/O), to measure the engine's own CPU cost and how it scales with shards.
    VolumeMemory(u64),
    /// `group:LAYOUT@BACKING`: a redundancy group of the device layer ([`super::group`]).
    Group(super::group::GroupSpec),
}

impl FromStr for TargetSpec {
    type Err = String;
    fn from_str(text: &str) -> Result<TargetSpec, String> {
        if let Some(path) = text.strip_prefix("file:") {
            if path.is_empty() {
                return Err("target 'file:' needs a path, e.g. file:/work/bench.img".into());
            }
            return Ok(TargetSpec::File(PathBuf::from(path)));
        }
        if let Some(size) = text.strip_prefix("mem:") {
            return match parse_bytes(size) {
                Ok(0) | Err(_) => Err(format!("target '{text}' needs a size, e.g. mem:1g")),
                Ok(size_bytes) => Ok(TargetSpec::Memory(size_bytes)),
            };
        }
        if let Some(size) = text.strip_prefix("volume-mem:") {
            return match parse_bytes(size) {
                Ok(0) | Err(_) => Err(format!("target '{text}' needs a size, e.g. volume-mem:1g")),
                Ok(size_bytes) => Ok(TargetSpec::VolumeMemory(size_bytes)),
            };
        }
        if let Some(spec) = text.strip_prefix("group:") {
            return spec.parse().map(TargetSpec::Group);
        }
        if let Some(path) = text.strip_prefix("volume:") {
            if path.is_empty() {
                return Err("target 'volume:' needs a path, e.g. volume:/work/pool.img".into());
            }
            return Ok(TargetSpec::Volume(PathBuf::from(path)));
        }
        if text.starts_with("iscsi://") {
            return Err(format!(
                "unsupported target '{text}': iscsi:// targets are not available yet (use \
                 file:PATH, mem:SIZE, volume:PATH, volume-mem:SIZE or group:LAYOUT@BACKING)"
            ));
        }
        Err(format!(
            "unsupported target '{text}': expected file:PATH, mem:SIZE, volume:PATH, \
             volume-mem:SIZE or group:LAYOUT@BACKING"
        ))
    }
}

impl std::fmt::Display for TargetSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetSpec::File(path) => write!(f, "file:{}", path.display()),
            TargetSpec::Memory(size_bytes) => write!(f, "mem:{size_bytes}"),
            TargetSpec::Volume(path) => write!(f, "volume:{}", path.display()),
            TargetSpec::VolumeMemory(size_bytes) => write!(f, "volume-mem:{size_bytes}"),
            TargetSpec::Group(spec) => write!(f, "group:{spec}"),
        }
    }
}

/// How to open a target.
#[derive(Debug, Clone, Copy)]
pub struct OpenOptionsBench {
    /// O_DIRECT.
    pub direct: bool,
    /// Create a missing file of this size.
    pub create_size_bytes: Option<u64>,
}

/// Facts the I/O loop needs.
#[derive(Debug, Clone, Copy)]
pub struct TargetInfo {
    /// Addressable bytes.
    pub size_bytes: u64,
    /// Offsets and sizes must be multiples of this.
    pub logical_block_bytes: u32,
}

/// One shard's handle on a target; lives on the shard's thread.
#[allow(async_fn_in_trait, reason = "used with static dispatch only; futures stay on the shard")]
pub trait ShardIo: 'static {
    /// Reads `buf.len()` bytes at `offset_bytes` (all or error).
    async fn read(&self, buf: IoBuf, offset_bytes: u64) -> (IoResult<()>, IoBuf);
    /// Writes all of `buf` at `offset_bytes` (all or error).
    async fn write(&self, buf: IoBuf, offset_bytes: u64) -> (IoResult<()>, IoBuf);
    /// True when the target keeps references to written buffers (an engine volume holds them
    /// until its txg sync), so that [`ShardIo::write`] must copy a buffer to give it back, and
    /// it takes [`ShardIo::write_shared`] without that copy.
    fn keeps_written_buffers(&self) -> bool {
        false
    }
    /// Writes all of the shared `buf` at `offset_bytes`; the target may keep the view. The
    /// default copies it into a buffer of its own for [`ShardIo::write`].
    async fn write_shared(&self, buf: SharedBuf, offset_bytes: u64) -> IoResult<()> {
        self.write(IoBuf::from_slice(&buf), offset_bytes).await.0
    }
    /// Runs after the shard's measured I/O has ended (outside the measurement).
    async fn detach(&self) {}
}

/// An opened target, shared by every shard.
pub trait Target: Send + Sync + 'static {
    /// The per-shard handle.
    type Shard: ShardIo;
    /// Size and alignment.
    fn info(&self) -> TargetInfo;
    /// Attaches the calling shard (runs inside its reactor).
    ///
    /// # Errors
    /// When the shard cannot reach the target (for example no fixed-file slot left).
    fn attach(&self) -> Result<Self::Shard, BenchError>;
}

/// Any [`BlockDevice`], shared by every shard; each I/O goes through the trait.
pub struct DeviceTarget<D: BlockDevice + 'static> {
    device: Arc<D>,
}

impl<D: BlockDevice + 'static> DeviceTarget<D> {
    /// Wraps an opened device.
    pub fn new(device: D) -> DeviceTarget<D> {
        DeviceTarget { device: Arc::new(device) }
    }
}

/// Opens `file:PATH` as a [`UringDevice`]; a missing file is created with
/// `options.create_size_bytes` and preallocated, so reads hit allocated blocks.
///
/// # Errors
/// [`BenchError::Open`] with the path and the OS error.
pub fn open_uring_device(
    path: &std::path::Path,
    options: OpenOptionsBench,
) -> Result<DeviceTarget<UringDevice>, BenchError> {
    let open_err = |source: std::io::Error| BenchError::Open { path: path.to_owned(), source };
    if let Some(size_bytes) = create_missing(path, options).map_err(open_err)? {
        eprintln!("ferrite-bench: created {} ({size_bytes} bytes)", path.display());
    }
    let device = UringDevice::open(path).map_err(|e| open_err(io_error_to_std(e)))?;
    if !device.is_direct() {
        eprintln!("ferrite-bench: {} opened without O_DIRECT", path.display());
    }
    Ok(DeviceTarget::new(device))
}

/// Creates `path` with `options.create_size_bytes`, preallocated, when it is missing and a
/// size is given: the size it was created with, or `None` when nothing was created.
pub(super) fn create_missing(
    path: &std::path::Path,
    options: OpenOptionsBench,
) -> std::io::Result<Option<u64>> {
    let (false, Some(size_bytes)) = (path.exists(), options.create_size_bytes) else {
        return Ok(None);
    };
    let file = OpenOptions::new().read(true).write(true).create_new(true).open(path)?;
    preallocate(&file, size_bytes)?;
    Ok(Some(size_bytes))
}

fn io_error_to_std(err: IoError) -> std::io::Error {
    std::io::Error::other(err.to_string())
}

impl<D: BlockDevice + 'static> Target for DeviceTarget<D> {
    type Shard = DeviceShard<D>;

    fn info(&self) -> TargetInfo {
        let info = self.device.info();
        TargetInfo { size_bytes: info.size_bytes, logical_block_bytes: info.logical_block_bytes }
    }

    fn attach(&self) -> Result<DeviceShard<D>, BenchError> {
        Ok(DeviceShard { device: Arc::clone(&self.device) })
    }
}

/// A shard's handle on a [`DeviceTarget`].
pub struct DeviceShard<D: BlockDevice + 'static> {
    device: Arc<D>,
}

impl<D: BlockDevice + 'static> ShardIo for DeviceShard<D> {
    async fn read(&self, buf: IoBuf, offset_bytes: u64) -> (IoResult<()>, IoBuf) {
        self.device.read(buf, offset_bytes).await
    }

    async fn write(&self, buf: IoBuf, offset_bytes: u64) -> (IoResult<()>, IoBuf) {
        self.device.write(buf, offset_bytes).await
    }
}

/// A memory device target of `size_bytes`.
#[must_use]
pub fn memory_device(size_bytes: u64) -> DeviceTarget<MemoryDevice> {
    DeviceTarget::new(MemoryDevice::new(size_bytes, 512))
}

/// A regular file or block device opened once (buffered, for `--direct 0`) and registered in
/// every shard's fixed-file table.
#[derive(Debug)]
pub struct FileTarget {
    file: File,
    info: TargetInfo,
}

impl FileTarget {
    /// Opens `path` for reading and writing; creates and preallocates it when missing and
    /// `options.create_size_bytes` is given.
    ///
    /// # Errors
    /// [`BenchError::Open`] with the path and the OS error.
    pub fn open(
        path: &std::path::Path,
        options: OpenOptionsBench,
    ) -> Result<FileTarget, BenchError> {
        let open_err = |source: std::io::Error| BenchError::Open { path: path.to_owned(), source };
        let flags = if options.direct { libc::O_DIRECT } else { 0 };
        let created = create_missing(path, options).map_err(open_err)?.is_some();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(flags)
            .open(path)
            .map_err(open_err)?;
        let size_bytes = file.seek(SeekFrom::End(0)).map_err(open_err)?;
        if created {
            eprintln!("ferrite-bench: created {} ({size_bytes} bytes)", path.display());
        }
        Ok(FileTarget { file, info: TargetInfo { size_bytes, logical_block_bytes: 512 } })
    }
}

fn preallocate(file: &File, size_bytes: u64) -> std::io::Result<()> {
    let len = libc::off_t::try_from(size_bytes)
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: fallocate(2) on a descriptor we own, with no pointers.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
    if rc == 0 {
        Ok(())
    } else {
        // Filesystems without fallocate still get the size.
        file.set_len(size_bytes)
    }
}

impl Target for FileTarget {
    type Shard = FileShard;

    fn info(&self) -> TargetInfo {
        self.info
    }

    fn attach(&self) -> Result<FileShard, BenchError> {
        let file = ops::register_file(self.file.as_raw_fd())
            .map_err(|source| BenchError::Io { what: "registering the target file", source })?;
        Ok(FileShard { file })
    }
}

/// A shard's fixed-file slot for a [`FileTarget`].
#[derive(Debug)]
pub struct FileShard {
    file: FileRef,
}

fn whole(res: IoResult<usize>, want: usize) -> IoResult<()> {
    match res {
        Ok(n) if n == want => Ok(()),
        Ok(n) => Err(IoError::Short { expected_bytes: want, done_bytes: n }),
        Err(e) => Err(e),
    }
}

impl ShardIo for FileShard {
    async fn read(&self, buf: IoBuf, offset_bytes: u64) -> (IoResult<()>, IoBuf) {
        let want = buf.len();
        let (res, buf) = ops::read_at(self.file, buf, offset_bytes).await;
        (whole(res, want), buf)
    }

    async fn write(&self, buf: IoBuf, offset_bytes: u64) -> (IoResult<()>, IoBuf) {
        let want = buf.len();
        let (res, buf) = ops::write_at(self.file, buf, offset_bytes).await;
        (whole(res, want), buf)
    }
}

impl Drop for FileShard {
    fn drop(&mut self) {
        ops::unregister_file(self.file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_file_targets_and_rejects_others() {
        let good = [
            ("file:/work/a.img", TargetSpec::File(PathBuf::from("/work/a.img"))),
            ("mem:1g", TargetSpec::Memory(1 << 30)),
            ("volume:/work/p.img", TargetSpec::Volume(PathBuf::from("/work/p.img"))),
            ("volume-mem:1g", TargetSpec::VolumeMemory(1 << 30)),
        ];
        for (text, spec) in good {
            assert_eq!(text.parse::<TargetSpec>(), Ok(spec), "{text}");
        }
        for text in ["file:", "mem:", "volume:", "volume-mem:"] {
            assert!(text.parse::<TargetSpec>().is_err(), "{text}");
        }
        for (text, says) in
            [("iscsi://host/iqn/0", "not available"), ("/work/a.img", "expected file:PATH")]
        {
            assert!(text.parse::<TargetSpec>().expect_err("must fail").contains(says), "{text}");
        }
    }
}
