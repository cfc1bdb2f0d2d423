//! An open regular file or block device, its geometry, and whole-length transfers on it.
//!
//! Shared by the file-backed devices ([`super::uring::UringDevice`], [`super::sync::SyncDevice`]):
//! opening with O_DIRECT, probing the logical/physical block size, the size and discard
//! support, and the loops that turn the (possibly short) transfers of [`crate::ops`] into
//! all-or-error ones.

use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::blockdev::{Allocation, DeviceInfo};
use crate::buffer::{IoBuf, SharedBuf};
use crate::error::{IoError, IoResult};
use crate::ops::{self, FallocateMode, FileRef};

/// Retries of an operation that keeps failing with EINTR/EAGAIN before giving up.
const MAX_RETRIES: u32 = 16;
/// Size of the zero buffer used when the kernel cannot zero a range itself.
const ZERO_CHUNK_BYTES: u64 = 1 << 20;
/// Physical block size assumed for regular files (the atomic unit of common file systems).
const FILE_PHYSICAL_BLOCK_BYTES: u32 = 4096;

// BLKGETSIZE64 = _IOR(0x12, 114, size_t); BLKSSZGET and BLKPBSZGET are "bad" ioctls (no size
// encoded), taken from libc.
nix::ioctl_read!(blk_getsize64, 0x12, 114, u64);
nix::ioctl_read_bad!(blk_sszget, libc::BLKSSZGET, libc::c_int);
nix::ioctl_read_bad!(blk_pbszget, libc::BLKPBSZGET, libc::c_uint);

/// What the descriptor refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    /// A regular file: flush is fdatasync, discard is a punched hole.
    Regular,
    /// A block device: flush is fsync, discard and zeroing go through blkdev_fallocate.
    Block,
}

/// An open file or block device and its probed geometry.
pub(crate) struct DeviceFile {
    fd: OwnedFd,
    kind: FileKind,
    direct: bool,
    info: DeviceInfo,
    path: PathBuf,
    /// A block device's exclusive claim: a second descriptor opened with `O_EXCL`, held while
    /// this object lives (see [`DeviceFile::claim_exclusive`]).
    block_claim: Mutex<Option<OwnedFd>>,
}

impl DeviceFile {
    /// Opens an existing file or block device for reading and writing.
    pub(crate) fn open(path: &Path) -> IoResult<DeviceFile> {
        let (fd, direct) = open_fd(path, None, true)?;
        DeviceFile::probe(path, fd, direct)
    }

    /// Opens an existing file or block device for reading only: every write fails (EBADF).
    pub(crate) fn open_read_only(path: &Path) -> IoResult<DeviceFile> {
        let (fd, direct) = open_fd(path, None, false)?;
        DeviceFile::probe(path, fd, direct)
    }

    /// Creates (or reuses) a regular file and sets its size to `size_bytes` (sparse). A new
    /// file is created with mode 0600 (before the umask): it holds every volume's data.
    pub(crate) fn create(path: &Path, size_bytes: u64) -> IoResult<DeviceFile> {
        let (fd, direct) = open_fd(path, Some(size_bytes), true)?;
        DeviceFile::probe(path, fd, direct)
    }

    fn probe(path: &Path, fd: OwnedFd, direct: bool) -> IoResult<DeviceFile> {
        let meta = std::fs::File::from(fd.try_clone()?).metadata()?;
        let name = path.display().to_string();
        let (kind, info) = if meta.file_type().is_block_device() {
            (FileKind::Block, block_device_info(fd.as_raw_fd(), name)?)
        } else if meta.file_type().is_file() {
            (FileKind::Regular, regular_file_info(fd.as_raw_fd(), name, meta.len(), direct))
        } else {
            return Err(IoError::InvalidInput(libc::ENODEV));
        };
        if info.size_bytes == 0 {
            return Err(IoError::InvalidInput(libc::EINVAL));
        }
        Ok(DeviceFile {
            fd,
            kind,
            direct,
            info,
            path: path.to_path_buf(),
            block_claim: Mutex::new(None),
        })
    }

    /// Takes the device's exclusive claim for as long as this object lives: an OFD write lock
    /// on the whole of a regular file (`F_OFD_SETLK`, released when the descriptor closes,
    /// whatever else the process opens), or an `O_EXCL` open of a block device (kept as a
    /// second descriptor). `Ok(false)` when another open holds it.
    ///
    /// # Errors
    /// [`IoError::Unsupported`] when the file system has no such locks (`ENOLCK`, `EINVAL`);
    /// another errno as its typed error.
    pub(crate) fn claim_exclusive(&self) -> IoResult<bool> {
        match self.kind {
            FileKind::Regular => {
                ofd_lock(self.raw_fd(), libc::F_OFD_SETLK, libc::F_WRLCK).map(|held| !held)
            }
            FileKind::Block => {
                let mut claim =
                    self.block_claim.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if claim.is_some() {
                    return Ok(true);
                }
                match open_exclusive(&self.path) {
                    Ok(fd) => {
                        *claim = Some(fd);
                        Ok(true)
                    }
                    Err(libc::EBUSY) => Ok(false),
                    Err(errno) => Err(IoError::from_errno(errno)),
                }
            }
        }
    }

    /// Gives up the claim [`DeviceFile::claim_exclusive`] took.
    pub(crate) fn release_exclusive(&self) {
        match self.kind {
            FileKind::Regular => {
                let _ = ofd_lock(self.raw_fd(), libc::F_OFD_SETLK, libc::F_UNLCK);
            }
            FileKind::Block => {
                self.block_claim.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
            }
        }
    }

    /// True when another open holds the device's exclusive claim (see
    /// [`DeviceFile::claim_exclusive`]); a block device also counts as claimed while it is
    /// mounted or otherwise held exclusively. Takes nothing.
    ///
    /// # Errors
    /// As for [`DeviceFile::claim_exclusive`].
    pub(crate) fn claimed_elsewhere(&self) -> IoResult<bool> {
        match self.kind {
            FileKind::Regular => ofd_lock(self.raw_fd(), libc::F_OFD_GETLK, libc::F_WRLCK),
            FileKind::Block => {
                if self
                    .block_claim
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .is_some()
                {
                    return Ok(false);
                }
                match open_exclusive(&self.path) {
                    Ok(_probe) => Ok(false),
                    Err(libc::EBUSY) => Ok(true),
                    Err(errno) => Err(IoError::from_errno(errno)),
                }
            }
        }
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub(crate) fn kind(&self) -> FileKind {
        self.kind
    }

    pub(crate) fn is_direct(&self) -> bool {
        self.direct
    }

    pub(crate) fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// True when [`DeviceFile::allocation`] can see holes: a regular file on a file system
    /// that punches them. A block device does not say which of its blocks are allocated.
    pub(crate) fn reports_allocation(&self) -> bool {
        self.kind == FileKind::Regular && self.info.supports_discard
    }

    /// Allocation at `offset_bytes` of a (validated) range of `len_bytes`, from
    /// `lseek(SEEK_DATA / SEEK_HOLE)`: a metadata lookup that does not block on the data
    /// path, so it runs inline. Block devices, and file systems without SEEK_DATA (EINVAL),
    /// report the range mapped.
    pub(crate) fn allocation(&self, offset_bytes: u64, len_bytes: u64) -> IoResult<Allocation> {
        let whole = Allocation { mapped: true, run_bytes: len_bytes };
        if !self.reports_allocation() {
            return Ok(whole);
        }
        let block = u64::from(self.info.logical_block_bytes);
        // A hole or data run, clipped to the range and rounded to whole logical blocks (file
        // system blocks are multiples of them; a partial block counts as mapped).
        let clip = |mapped: bool, end: u64| {
            let end = end.min(offset_bytes + len_bytes);
            let run = if mapped {
                (end - offset_bytes).next_multiple_of(block)
            } else {
                (end - offset_bytes) / block * block
            };
            match run {
                0 => Allocation { mapped: true, run_bytes: block },
                run => Allocation { mapped, run_bytes: run.min(len_bytes) },
            }
        };
        match seek(self.raw_fd(), offset_bytes, libc::SEEK_DATA) {
            // No data from here to the end of the file: one hole.
            Err(libc::ENXIO) => Ok(clip(false, u64::MAX)),
            Err(libc::EINVAL) => Ok(whole),
            Err(errno) => Err(IoError::from(std::io::Error::from_raw_os_error(errno))),
            Ok(data) if data > offset_bytes => Ok(clip(false, data)),
            Ok(_) => match seek(self.raw_fd(), offset_bytes, libc::SEEK_HOLE) {
                Ok(hole) => Ok(clip(true, hole)),
                Err(libc::ENXIO | libc::EINVAL) => Ok(whole),
                Err(errno) => Err(IoError::from(std::io::Error::from_raw_os_error(errno))),
            },
        }
    }
}

/// An OFD lock request of `ltype` over the whole file: `F_OFD_SETLK` takes it, `F_OFD_GETLK`
/// only asks. True when another open file description holds a conflicting lock.
fn ofd_lock(fd: RawFd, cmd: libc::c_int, ltype: libc::c_int) -> IoResult<bool> {
    // SAFETY: flock is plain old data; all-zero is a valid value (start 0, length 0 = the
    // whole file, pid 0 as OFD locks require).
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    #[allow(clippy::cast_possible_truncation)]
    {
        lock.l_type = ltype as libc::c_short;
        lock.l_whence = libc::SEEK_SET as libc::c_short;
    }
    // SAFETY: fcntl with an OFD lock command reads and (GETLK) writes the live `lock`.
    let rc = unsafe { libc::fcntl(fd, cmd, std::ptr::from_mut(&mut lock)) };
    if rc < 0 {
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
        return match errno {
            libc::EAGAIN | libc::EACCES => Ok(true),
            libc::ENOLCK | libc::EINVAL => Err(IoError::Unsupported(errno)),
            other => Err(IoError::from_errno(other)),
        };
    }
    if cmd == libc::F_OFD_GETLK {
        return Ok(i32::from(lock.l_type) != libc::F_UNLCK);
    }
    Ok(false)
}

/// Opens a block device read-only with `O_EXCL`: the kernel's exclusive claim (refused with
/// `EBUSY` while another exclusive open or a mount holds it). The errno on failure.
fn open_exclusive(path: &Path) -> Result<OwnedFd, libc::c_int> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| libc::EINVAL)?;
    // SAFETY: open(2) with a NUL-terminated path that outlives the call.
    let fd =
        unsafe { libc::open(c_path.as_ptr(), libc::O_RDONLY | libc::O_EXCL | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO));
    }
    // SAFETY: a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `lseek(fd, offset, whence)`, the resulting offset or the errno.
fn seek(fd: RawFd, offset_bytes: u64, whence: libc::c_int) -> Result<u64, libc::c_int> {
    let offset = libc::off_t::try_from(offset_bytes).map_err(|_| libc::EINVAL)?;
    // SAFETY: plain syscall on our descriptor; it only moves the file offset, which no other
    // code uses (every transfer is positioned).
    let at = unsafe { libc::lseek(fd, offset, whence) };
    u64::try_from(at)
        .map_err(|_| std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO))
}

/// Opens with O_DIRECT, falling back to buffered I/O (with one log line) where the file system
/// refuses it (EINVAL, for example tmpfs before Linux 6.6). `create` carries the size to give a
/// newly created file.
fn open_fd(path: &Path, create: Option<u64>, write: bool) -> IoResult<(OwnedFd, bool)> {
    let open = |direct: bool| {
        let mut opts = OpenOptions::new();
        opts.read(true).write(write).create(create.is_some()).mode(0o600);
        let flags = if direct { libc::O_DIRECT | libc::O_CLOEXEC } else { libc::O_CLOEXEC };
        opts.custom_flags(flags);
        opts.open(path)
    };
    let (file, direct) = match open(true) {
        Ok(file) => (file, true),
        Err(err) if err.raw_os_error() == Some(libc::EINVAL) => {
            log::warn!(
                "{} does not support O_DIRECT; using buffered I/O (data reaches the device only \
                 on flush)",
                path.display()
            );
            (open(false)?, false)
        }
        Err(err) => return Err(IoError::from(err)),
    };
    if let Some(size_bytes) = create {
        file.set_len(size_bytes)?;
    }
    Ok((OwnedFd::from(file), direct))
}

fn block_device_info(fd: RawFd, name: String) -> IoResult<DeviceInfo> {
    let mut size_bytes: u64 = 0;
    let mut logical: libc::c_int = 0;
    let mut physical: libc::c_uint = 0;
    // SAFETY: each ioctl writes one integer of the declared type into a live local.
    unsafe {
        blk_getsize64(fd, &mut size_bytes)?;
        blk_sszget(fd, &mut logical)?;
        blk_pbszget(fd, &mut physical)?;
    }
    let logical_block_bytes = u32::try_from(logical)
        .ok()
        .filter(|b| b.is_power_of_two() && *b >= 512)
        .ok_or(IoError::InvalidInput(libc::EINVAL))?;
    let physical_block_bytes = if physical.is_power_of_two() && physical >= logical_block_bytes {
        physical
    } else {
        logical_block_bytes
    };
    Ok(DeviceInfo {
        name,
        size_bytes: size_bytes - size_bytes % u64::from(logical_block_bytes),
        logical_block_bytes,
        physical_block_bytes,
        supports_discard: block_device_discards(fd),
    })
}

/// Reads `/sys/dev/block/MAJ:MIN/queue/discard_max_bytes`; a device that cannot discard says 0.
fn block_device_discards(fd: RawFd) -> bool {
    // SAFETY: fstat writes into a zeroed, live stat buffer; the result is checked.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return false;
    }
    let path = format!(
        "/sys/dev/block/{}:{}/queue/discard_max_bytes",
        libc::major(st.st_rdev),
        libc::minor(st.st_rdev)
    );
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .is_some_and(|max| max > 0)
}

fn regular_file_info(fd: RawFd, name: String, len_bytes: u64, direct: bool) -> DeviceInfo {
    let logical_block_bytes = if direct { direct_io_alignment(fd) } else { 512 };
    DeviceInfo {
        name,
        size_bytes: len_bytes - len_bytes % u64::from(logical_block_bytes),
        logical_block_bytes,
        physical_block_bytes: FILE_PHYSICAL_BLOCK_BYTES.max(logical_block_bytes),
        supports_discard: punch_hole_supported(fd, len_bytes),
    }
}

/// The file offset alignment O_DIRECT needs: `statx(STATX_DIOALIGN)` where the kernel reports
/// it (Linux 6.1+), otherwise `st_blksize`; clamped to a power of two in 512..=4096.
fn direct_io_alignment(fd: RawFd) -> u32 {
    // SAFETY: statx is plain old data; all-zero is a valid value.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: AT_EMPTY_PATH with an empty C string queries `fd` itself; statx writes only into
    // the live buffer.
    let rc = unsafe {
        libc::statx(fd, c"".as_ptr(), libc::AT_EMPTY_PATH, libc::STATX_DIOALIGN, &mut stx)
    };
    let reported = if rc == 0 && stx.stx_mask & libc::STATX_DIOALIGN != 0 {
        stx.stx_dio_offset_align
    } else {
        0
    };
    let align = if reported != 0 {
        reported
    } else {
        // SAFETY: fstat writes into a zeroed, live stat buffer; the result is checked.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let ok = unsafe { libc::fstat(fd, &mut st) } == 0;
        if ok {
            u32::try_from(st.st_blksize).unwrap_or(4096)
        } else {
            4096
        }
    };
    if align.is_power_of_two() {
        align.clamp(512, 4096)
    } else {
        4096
    }
}

/// Probes FALLOC_FL_PUNCH_HOLE past the end of the file, where it changes nothing.
fn punch_hole_supported(fd: RawFd, len_bytes: u64) -> bool {
    let Ok(past_end) = libc::off_t::try_from(len_bytes.next_multiple_of(4096) + 4096) else {
        return false;
    };
    // SAFETY: plain syscall on our descriptor; KEEP_SIZE and an offset past EOF leave the
    // file's contents and size untouched.
    let rc = unsafe {
        libc::fallocate(fd, libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, past_end, 4096)
    };
    rc == 0
}

/// Reads exactly `buf.len()` bytes at `offset_bytes`: retries EINTR/EAGAIN, finishes short
/// reads with aligned bounce buffers, and reports end of file as [`IoError::Short`].
pub(crate) async fn read_full(
    file: FileRef,
    mut buf: IoBuf,
    offset_bytes: u64,
) -> (IoResult<()>, IoBuf) {
    let want = buf.len();
    let mut progress = Progress::new(want);
    while progress.done < want {
        let done = progress.done;
        let res = if done == 0 {
            let (res, back) = ops::read_at(file, buf, offset_bytes).await;
            buf = back;
            res
        } else {
            let (res, tail) =
                ops::read_at(file, IoBuf::zeroed(want - done), offset_bytes + done as u64).await;
            if let Ok(n) = res {
                buf[done..done + n].copy_from_slice(&tail[..n]);
            }
            res
        };
        if let Err(e) = progress.count(res) {
            return (Err(e), buf);
        }
    }
    (Ok(()), buf)
}

/// How far a transfer that must complete got: `done` of `want` bytes, and the EINTR/EAGAIN
/// retries so far.
struct Progress {
    want: usize,
    done: usize,
    retries: u32,
}

impl Progress {
    fn new(want: usize) -> Progress {
        Progress { want, done: 0, retries: 0 }
    }

    /// Counts one read or write: the bytes it moved (0 for a retry), or the error that ends
    /// the transfer (nothing moved, or a retry past [`MAX_RETRIES`]).
    fn count(&mut self, res: IoResult<usize>) -> IoResult<usize> {
        match res {
            Ok(0) => Err(IoError::Short { expected_bytes: self.want, done_bytes: self.done }),
            Ok(n) => {
                self.done += n;
                Ok(n)
            }
            Err(IoError::Retry(_)) if self.retries < MAX_RETRIES => {
                self.retries += 1;
                Ok(0)
            }
            Err(e) => Err(e),
        }
    }
}

/// Writes all of `buf` at `offset_bytes`: retries EINTR/EAGAIN and finishes short writes with
/// aligned bounce buffers.
pub(crate) async fn write_full(
    file: FileRef,
    buf: IoBuf,
    offset_bytes: u64,
) -> (IoResult<()>, IoBuf) {
    write_full_flags(file, buf, offset_bytes, 0).await
}

/// Checks the request against `info`, then writes all of `buf` with `pwritev2` flags
/// `rw_flags` (`RWF_DSYNC`: durable when it completes).
pub(crate) async fn write_checked(
    info: &crate::blockdev::DeviceInfo,
    file: FileRef,
    buf: IoBuf,
    offset_bytes: u64,
    rw_flags: i32,
) -> (IoResult<()>, IoBuf) {
    if let Err(e) = crate::blockdev::check_request(info, offset_bytes, buf.len() as u64) {
        return (Err(e), buf);
    }
    write_full_flags(file, buf, offset_bytes, rw_flags).await
}

async fn write_full_flags(
    file: FileRef,
    mut buf: IoBuf,
    offset_bytes: u64,
    rw_flags: i32,
) -> (IoResult<()>, IoBuf) {
    let mut progress = Progress::new(buf.len());
    while progress.done < progress.want {
        let done = progress.done;
        let res = if done == 0 {
            let (res, back) = ops::write_at_flags(file, buf, offset_bytes, rw_flags).await;
            buf = back;
            res
        } else {
            let tail = IoBuf::from_slice(&buf[done..]);
            ops::write_at_flags(file, tail, offset_bytes + done as u64, rw_flags).await.0
        };
        if let Err(e) = progress.count(res) {
            return (Err(e), buf);
        }
    }
    (Ok(()), buf)
}

/// Writes all of `bufs` back to back at `offset_bytes` with vectored writes: retries
/// EINTR/EAGAIN and continues a short write from the first byte not written.
pub(crate) async fn writev_full(
    file: FileRef,
    mut bufs: Vec<SharedBuf>,
    offset_bytes: u64,
) -> IoResult<()> {
    let mut progress = Progress::new(bufs.iter().map(|b| b.len()).sum());
    while progress.done < progress.want {
        let at = offset_bytes + progress.done as u64;
        let (res, back) = ops::writev_shared_at(file, bufs, at).await;
        bufs = back;
        let mut skip = progress.count(res)?;
        if skip == 0 {
            continue; // a retry
        }
        while let Some(first) = bufs.first() {
            if skip < first.len() {
                let rest = first.slice(skip..first.len());
                bufs[0] = rest;
                break;
            }
            skip -= first.len();
            bufs.remove(0);
        }
    }
    Ok(())
}

/// Makes `[offset, offset + len)` read as zeros: FALLOC_FL_ZERO_RANGE (for block devices the
/// kernel turns it into REQ_OP_WRITE_ZEROES, writing zeros itself where the device lacks it),
/// or written zero buffers where the file system does not support it.
pub(crate) async fn zero_range(file: FileRef, offset_bytes: u64, len_bytes: u64) -> IoResult<()> {
    if len_bytes == 0 {
        return Ok(());
    }
    match ops::fallocate(file, FallocateMode::ZeroRange, offset_bytes, len_bytes).await {
        Err(IoError::Unsupported(_)) => write_zero_buffers(file, offset_bytes, len_bytes).await,
        other => other,
    }
}

/// Deallocates `[offset, offset + len)` so it reads as zeros: FALLOC_FL_PUNCH_HOLE (for block
/// devices the kernel issues a write-zeroes that may unmap, which unlike BLKDISCARD guarantees
/// zeros on read-back), falling back to [`zero_range`].
pub(crate) async fn punch_range(file: FileRef, offset_bytes: u64, len_bytes: u64) -> IoResult<()> {
    if len_bytes == 0 {
        return Ok(());
    }
    match ops::fallocate(file, FallocateMode::PunchHole, offset_bytes, len_bytes).await {
        Err(IoError::Unsupported(_)) => zero_range(file, offset_bytes, len_bytes).await,
        other => other,
    }
}

async fn write_zero_buffers(file: FileRef, offset_bytes: u64, len_bytes: u64) -> IoResult<()> {
    let chunk = usize::try_from(len_bytes.min(ZERO_CHUNK_BYTES)).unwrap_or(1 << 20);
    let mut zeros = IoBuf::zeroed(chunk);
    let mut done = 0u64;
    while done < len_bytes {
        let step = (len_bytes - done).min(ZERO_CHUNK_BYTES);
        zeros.set_len(usize::try_from(step).unwrap_or(chunk));
        let (res, back) = write_full(file, zeros, offset_bytes + done).await;
        zeros = back;
        res?;
        done += step;
    }
    Ok(())
}

/// Flush of a file: fdatasync for regular files (metadata other than the size is not needed
/// to read the data back), fsync for block devices.
pub(crate) async fn flush(file: FileRef, kind: FileKind) -> IoResult<()> {
    match kind {
        FileKind::Regular => ops::fdatasync(file).await,
        FileKind::Block => ops::fsync(file).await,
    }
}

/// Implements [`BlockDevice`](crate::blockdev::BlockDevice) and `Debug` for a device made of a
/// `file: DeviceFile` and a `file_ref(&self) -> FileRef` method: the io_uring device and the
/// fallback device differ only in how the current shard names the file.
macro_rules! impl_file_block_device {
    ($ty:ty) => {
        impl $crate::blockdev::BlockDevice for $ty {
            fn info(&self) -> &$crate::blockdev::DeviceInfo {
                self.file.info()
            }

            fn read(
                &self,
                buf: $crate::buffer::IoBuf,
                offset_bytes: u64,
            ) -> $crate::LocalBoxFuture<'_, ($crate::error::IoResult<()>, $crate::buffer::IoBuf)>
            {
                Box::pin(async move {
                    if let Err(e) = $crate::blockdev::check_request(
                        self.file.info(),
                        offset_bytes,
                        buf.len() as u64,
                    ) {
                        return (Err(e), buf);
                    }
                    $crate::blockdev::file::read_full(self.file_ref(), buf, offset_bytes).await
                })
            }

            fn write(
                &self,
                buf: $crate::buffer::IoBuf,
                offset_bytes: u64,
            ) -> $crate::LocalBoxFuture<'_, ($crate::error::IoResult<()>, $crate::buffer::IoBuf)>
            {
                Box::pin($crate::blockdev::file::write_checked(
                    self.file.info(),
                    self.file_ref(),
                    buf,
                    offset_bytes,
                    0,
                ))
            }

            fn writes_vectored(&self) -> bool {
                true
            }

            fn durable_writes(&self) -> bool {
                true
            }

            fn write_durable(
                &self,
                buf: $crate::buffer::IoBuf,
                offset_bytes: u64,
            ) -> $crate::LocalBoxFuture<'_, ($crate::error::IoResult<()>, $crate::buffer::IoBuf)>
            {
                Box::pin($crate::blockdev::file::write_checked(
                    self.file.info(),
                    self.file_ref(),
                    buf,
                    offset_bytes,
                    libc::RWF_DSYNC,
                ))
            }

            fn write_vectored(
                &self,
                bufs: Vec<$crate::buffer::SharedBuf>,
                offset_bytes: u64,
            ) -> $crate::LocalBoxFuture<'_, $crate::error::IoResult<()>> {
                Box::pin(async move {
                    let len: usize = bufs.iter().map(|b| b.len()).sum();
                    $crate::blockdev::check_request(self.file.info(), offset_bytes, len as u64)?;
                    $crate::blockdev::file::writev_full(self.file_ref(), bufs, offset_bytes).await
                })
            }

            fn flush(&self) -> $crate::LocalBoxFuture<'_, $crate::error::IoResult<()>> {
                Box::pin(async move {
                    $crate::blockdev::file::flush(self.file_ref(), self.file.kind()).await
                })
            }

            fn discard(
                &self,
                offset_bytes: u64,
                len_bytes: u64,
            ) -> $crate::LocalBoxFuture<'_, $crate::error::IoResult<()>> {
                Box::pin(async move {
                    $crate::blockdev::check_request(self.file.info(), offset_bytes, len_bytes)?;
                    $crate::blockdev::file::punch_range(self.file_ref(), offset_bytes, len_bytes)
                        .await
                })
            }

            fn write_zeroes(
                &self,
                offset_bytes: u64,
                len_bytes: u64,
            ) -> $crate::LocalBoxFuture<'_, $crate::error::IoResult<()>> {
                Box::pin(async move {
                    $crate::blockdev::check_request(self.file.info(), offset_bytes, len_bytes)?;
                    $crate::blockdev::file::zero_range(self.file_ref(), offset_bytes, len_bytes)
                        .await
                })
            }

            fn reports_allocation(&self) -> bool {
                self.file.reports_allocation()
            }

            fn claim_exclusive(&self) -> $crate::error::IoResult<bool> {
                self.file.claim_exclusive()
            }

            fn release_exclusive(&self) {
                self.file.release_exclusive();
            }

            fn claimed_elsewhere(&self) -> $crate::error::IoResult<bool> {
                self.file.claimed_elsewhere()
            }

            fn allocation(
                &self,
                offset_bytes: u64,
                len_bytes: u64,
            ) -> $crate::LocalBoxFuture<'_, $crate::error::IoResult<$crate::blockdev::Allocation>>
            {
                let res =
                    $crate::blockdev::check_request(self.file.info(), offset_bytes, len_bytes)
                        .and_then(|()| self.file.allocation(offset_bytes, len_bytes));
                Box::pin(std::future::ready(res))
            }
        }

        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("info", self.file.info())
                    .field("direct", &self.is_direct())
                    .finish()
            }
        }
    };
}
pub(crate) use impl_file_block_device;
