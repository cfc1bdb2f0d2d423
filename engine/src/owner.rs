//! One pool, one owner: the exclusive claim an importer takes on every device of a pool, and the
//! owner record it keeps in every label (docs/format.md §Owner record, docs/operations.md
//! §One owner per pool).
//!
//! Two defences, because two kinds of second importer exist:
//! - a second process on the same host: every device is claimed exclusively (an OFD lock on a
//!   file, `O_EXCL` on a block device) for as long as the pool is imported; the kernel drops
//!   the claim when the process dies, so a held claim proves a live owner;
//! - a second host sharing the devices, which cannot see this host's locks: the importer
//!   writes an [`OwnerRecord`] (host, pid, import time) into every label and rewrites it every
//!   heartbeat interval with a higher sequence, in the spirit of ZFS multihost. Another host
//!   finding a record of an import it did not make refuses; with `force` it first watches the
//!   heartbeat for a few intervals and still refuses if it advances. A clean export marks the
//!   record exported.
//!
//! The record lives in space every label reserves after its uberblock ring, which no earlier
//! ferrite reads or writes: pools stay at format version 4 and import on both.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytemuck::{Pod, Zeroable};
use drivers::blockdev::BlockDevice;
use drivers::buffer::IoBuf;
use drivers::error::IoError;

use crate::async_lock::AsyncMutex;
use crate::error::{PoolError, PoolResult};
use crate::format::{checksum, label_offset_bytes, Checksum, LABEL_BYTES, LABEL_COUNT};
use crate::label::{DeviceConfig, LABEL_HEADER_BYTES};
use crate::pool::Pool;
use crate::record::{sealed_image, sealed_record, stored_enum, unseal};
use crate::uberblock::{UBERBLOCK_RING_SLOTS, UBERBLOCK_SLOT_BYTES};
use crate::vdev::Stripe;

/// "FERROWNR".
pub const OWNER_MAGIC: u64 = u64::from_le_bytes(*b"FERROWNR");

/// Version of the owner record's own layout (independent of the pool format version).
pub const OWNER_RECORD_VERSION: u32 = 1;

/// Bytes of the structure itself.
pub const OWNER_RECORD_BYTES: usize = 512;

/// Bytes of its slot (the structure, zero padded to one sector).
pub const OWNER_SLOT_BYTES: u64 = 4096;

/// Offset of the owner slot in each label: the first sector after the uberblock ring, in the
/// label's reserved space.
pub const OWNER_SLOT_OFFSET_BYTES: u64 =
    LABEL_HEADER_BYTES as u64 + UBERBLOCK_RING_SLOTS * UBERBLOCK_SLOT_BYTES;

const _: () = assert!(OWNER_SLOT_OFFSET_BYTES + OWNER_SLOT_BYTES <= LABEL_BYTES);

stored_enum! {
    /// [`OwnerRecord::state`]: whether the pool has an owner.
    pub enum OwnerState: u32, from_u32 {
        /// The pool was exported: nobody owns it.
        Exported = 0,
        /// The pool is (or was, until a crash) imported.
        Imported = 1,
    }
}

/// Who imported the pool, and its heartbeat.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq)]
pub struct OwnerRecord {
    /// [`OWNER_MAGIC`].
    pub magic: u64,
    /// [`OWNER_RECORD_VERSION`].
    pub record_version: u32,
    /// [`OwnerState`] as u32.
    pub state: u32,
    /// The pool the record belongs to (a record of another pool is ignored).
    pub pool_guid: u64,
    /// xxh3-128 of the owner's host id (`/etc/machine-id`).
    pub host_id: [u64; 2],
    /// Owner's process id.
    pub pid: u32,
    /// Owner's heartbeat interval.
    pub heartbeat_interval_ms: u32,
    /// When the owner imported the pool, seconds since the Unix epoch.
    pub import_time_secs: u64,
    /// One more than the newest record's on every import: orders records of different imports.
    pub claim: u64,
    /// Rewrites of this import's record; a live owner raises it every heartbeat interval.
    pub heartbeat_seq: u64,
    /// When the record was last written, milliseconds since the Unix epoch (for people: hosts'
    /// clocks differ, so liveness is judged by `heartbeat_seq` alone).
    pub heartbeat_time_ms: u64,
    /// Owner's host name, zero padded.
    pub host_name: [u8; 64],
    /// Owner's program name, zero padded.
    pub program: [u8; 16],
    /// Reserved, zero.
    pub reserved: [u64; 42],
    /// xxh3-128 of every byte before this field.
    pub checksum: Checksum,
}

sealed_record!(OwnerRecord, OWNER_MAGIC, OWNER_RECORD_BYTES);

impl OwnerRecord {
    /// The 4 KiB slot image with the checksum set.
    #[must_use]
    pub fn encode_slot(self) -> Vec<u8> {
        sealed_image(self, OWNER_SLOT_BYTES as usize)
    }

    /// Decodes a slot: `None` for a short, empty, damaged or unknown-version slot (a slot
    /// never written holds zeros, or whatever the device held before).
    #[must_use]
    pub fn decode_slot(slot: &[u8]) -> Option<OwnerRecord> {
        unseal::<OwnerRecord>(slot).ok().filter(|r| r.record_version == OWNER_RECORD_VERSION)
    }

    /// True while the record says the pool is imported.
    #[must_use]
    pub fn is_imported(&self) -> bool {
        OwnerState::from_u32(self.state) == Some(OwnerState::Imported)
    }

    /// Orders records: the newest import first, then its newest rewrite.
    fn age_key(&self) -> (u64, u64) {
        (self.claim, self.heartbeat_seq)
    }

    /// `ferrited pid 4242 on host h1 since 2026-12-07 03:00` (UTC).
    #[must_use]
    pub fn describe(&self) -> String {
        format!(
            "{} pid {} on host {} since {}",
            crate::format::decode_name(&self.program),
            self.pid,
            crate::format::decode_name(&self.host_name),
            utc_minutes(self.import_time_secs)
        )
    }
}

/// Who is importing, and how: the identity written into the owner record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerClaim {
    /// Program name shown to others (`ferrited`).
    pub program: String,
    /// This host's identity (`/etc/machine-id`); two hosts must differ.
    pub host_id: String,
    /// This host's name, shown to others.
    pub host_name: String,
    /// This process.
    pub pid: u32,
    /// Take the pool over from an owner on another host whose heartbeat has stopped.
    pub force: bool,
    /// Claim every device exclusively. Off only to simulate, on one machine, a second host that
    /// cannot see this host's locks (tests).
    pub lock_devices: bool,
    /// How often the record is rewritten while imported.
    pub heartbeat_interval: Duration,
}

impl OwnerClaim {
    /// This process on this host: host id from `/etc/machine-id` (or
    /// `/var/lib/dbus/machine-id`, or the host name), host name from `/proc/sys/kernel/hostname`.
    #[must_use]
    pub fn this_process(program: &str) -> OwnerClaim {
        let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unknown".into());
        let host_id = ["/etc/machine-id", "/var/lib/dbus/machine-id"]
            .iter()
            .find_map(|p| {
                std::fs::read_to_string(p)
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
            })
            .unwrap_or_else(|| format!("hostname:{host_name}"));
        OwnerClaim {
            program: program.into(),
            host_id,
            host_name,
            pid: std::process::id(),
            force: false,
            lock_devices: true,
            heartbeat_interval: Duration::from_secs(1),
        }
    }

    fn host_hash(&self) -> [u64; 2] {
        checksum(self.host_id.as_bytes())
    }
}

/// The owner state of an imported pool: its record and the heartbeat that rewrites it.
pub(crate) struct Ownership {
    devices: Vec<(Arc<dyn BlockDevice>, u64)>,
    pool_name: String,
    record: Mutex<OwnerRecord>,
    /// Serialises the heartbeat's and the export's writes of the record.
    io: AsyncMutex,
    /// Set by export (or when the import failed): the heartbeat stops.
    released: AtomicBool,
    pool: OnceLock<Weak<Pool>>,
    interval: Duration,
}

/// Held by an import while it loads the pool: stops the heartbeat and marks the record
/// exported when the import fails before the pool exists.
pub(crate) struct ClaimGuard(Arc<Ownership>);

impl ClaimGuard {
    /// Hands the claim to the imported pool: the heartbeat now stops when the pool is
    /// exported or dropped.
    pub(crate) fn attach(&self, pool: &Arc<Pool>) {
        let _ = self.0.pool.set(Arc::downgrade(pool));
        let _ = pool.ownership.set(Arc::clone(&self.0));
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        if self.0.pool.get().is_none() {
            // The heartbeat sees this and marks the record exported before it stops.
            self.0.pool.get_or_init(Weak::new);
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `YYYY-MM-DD HH:MM` (UTC) of a Unix time in seconds.
#[must_use]
pub fn utc_minutes(unix_secs: u64) -> String {
    let days = i64::try_from(unix_secs / 86_400).unwrap_or(0);
    let secs_of_day = unix_secs % 86_400;
    // Civil date from a day count (the proleptic Gregorian calendar in 400-year eras).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        secs_of_day / 3600,
        secs_of_day % 3600 / 60
    )
}

/// The newest valid record of pool `guid` in the labels of `devices` (device, size in use).
async fn newest_record(devices: &[(Arc<dyn BlockDevice>, u64)], guid: u64) -> Option<OwnerRecord> {
    let mut newest: Option<OwnerRecord> = None;
    for (dev, size) in devices {
        for l in 0..LABEL_COUNT {
            let offset = label_offset_bytes(l, *size) + OWNER_SLOT_OFFSET_BYTES;
            let len = usize::try_from(OWNER_SLOT_BYTES).unwrap_or(4096);
            let (res, buf) = dev.read(IoBuf::zeroed(len), offset).await;
            if res.is_err() {
                continue;
            }
            let Some(record) = OwnerRecord::decode_slot(&buf) else { continue };
            if record.pool_guid == guid && newest.is_none_or(|n| record.age_key() > n.age_key()) {
                newest = Some(record);
            }
        }
    }
    newest
}

/// Writes `record` into the owner slot of every label of every device; with `durable`, then
/// flushes each device.
async fn write_record(
    devices: &[(Arc<dyn BlockDevice>, u64)],
    record: OwnerRecord,
    durable: bool,
) -> PoolResult<()> {
    let slot = record.encode_slot();
    for (dev, size) in devices {
        for l in 0..LABEL_COUNT {
            let offset = label_offset_bytes(l, *size) + OWNER_SLOT_OFFSET_BYTES;
            let (res, _) = dev.write(IoBuf::from_slice(&slot), offset).await;
            res?;
        }
        if durable {
            dev.flush().await?;
        }
    }
    Ok(())
}

fn in_use(pool: &str, record: &OwnerRecord, hint: &str) -> PoolError {
    PoolError::InUse(format!("pool {pool} is imported by {} ({hint})", record.describe()))
}

/// What [`claim_devices`] found.
enum Locks {
    /// Every device is claimed by this process.
    Held,
    /// Another open holds the claim of this device.
    HeldElsewhere(String),
    /// The file system has no locks (or locking is off): only the record protects the pool.
    Unavailable,
}

fn claim_devices(devs: &Stripe, claim: &OwnerClaim) -> PoolResult<Locks> {
    if !claim.lock_devices {
        return Ok(Locks::Unavailable);
    }
    let mut unavailable = false;
    for leaf in devs.leaves() {
        let dev = leaf.device();
        match dev.claim_exclusive() {
            Ok(true) => {}
            Ok(false) => return Ok(Locks::HeldElsewhere(dev.info().name.clone())),
            Err(IoError::Unsupported(errno)) => {
                log::warn!(
                    "{}: the file system cannot lock it (errno {errno}); only the owner record \
                     guards the pool against a second importer",
                    dev.info().name
                );
                unavailable = true;
            }
            Err(e) => return Err(PoolError::Io(e)),
        }
    }
    Ok(if unavailable { Locks::Unavailable } else { Locks::Held })
}

/// How long an importer waits for the kernel to drop the device claims of an owner on this
/// host whose process no longer exists.
const DEAD_OWNER_RELEASE: Duration = Duration::from_secs(10);

/// True when a process `pid` exists on this host (signal 0 reaches it, or it belongs to
/// another user).
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else { return false };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill(2) with signal 0 sends nothing; it only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Watches the record of an owner on another host for up to a few of its heartbeat intervals:
/// true as soon as it changes (the owner is alive).
async fn heartbeat_advances(
    devices: &[(Arc<dyn BlockDevice>, u64)],
    guid: u64,
    seen: &OwnerRecord,
    ours: Duration,
) -> bool {
    let theirs = Duration::from_millis(u64::from(seen.heartbeat_interval_ms));
    let wait = (theirs.max(ours) * 3).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let step = Duration::from_millis(200);
    let deadline = std::time::Instant::now() + wait;
    while std::time::Instant::now() < deadline {
        drivers::executor::sleep(step).await;
        if newest_record(devices, guid).await.is_some_and(|r| r.age_key() != seen.age_key()) {
            return true;
        }
    }
    false
}

/// Claims pool `guid` (named `name`) on `devs` for `claim`: takes every device's exclusive
/// claim, checks the owner record, writes this importer's record and starts its heartbeat.
///
/// # Errors
/// [`PoolError::InUse`] with one line naming the owner when another process or host holds the
/// pool; a device error.
pub(crate) async fn claim(
    devs: &Stripe,
    configs: &[DeviceConfig],
    guid: u64,
    name: &str,
    claim: &OwnerClaim,
) -> PoolResult<ClaimGuard> {
    let devices: Vec<(Arc<dyn BlockDevice>, u64)> = configs
        .iter()
        .zip(devs.leaves())
        .map(|(c, leaf)| (Arc::clone(leaf.device()), c.size_bytes))
        .collect();
    let host = claim.host_hash();
    let mut locks = claim_devices(devs, claim)?;
    let found = newest_record(&devices, guid).await.filter(OwnerRecord::is_imported);
    if let (Locks::HeldElsewhere(_), Some(r)) = (&locks, &found) {
        if r.host_id == host && !process_alive(r.pid) {
            // The owner on this host is gone (killed), but the kernel has not dropped its
            // claim yet: io_uring requests in flight when it died keep its open files until
            // they complete. Give that a few seconds before calling the pool in use.
            log::info!(
                "pool {name}: {} no longer runs; waiting up to {} s for the kernel to release \
                 its devices",
                r.describe(),
                DEAD_OWNER_RELEASE.as_secs()
            );
            let deadline = std::time::Instant::now() + DEAD_OWNER_RELEASE;
            while matches!(locks, Locks::HeldElsewhere(_)) && std::time::Instant::now() < deadline {
                drivers::executor::sleep(Duration::from_millis(50)).await;
                locks = claim_devices(devs, claim)?;
            }
        }
    }
    match (&locks, found) {
        (Locks::HeldElsewhere(device), None) => {
            return Err(PoolError::InUse(format!(
                "pool {name}: device {device} is locked by another process on this host"
            )));
        }
        (Locks::HeldElsewhere(_), Some(r)) => {
            let hint = if claim.force {
                "a live process on this host holds its devices: --force-import cannot take them"
            } else {
                "use --force-import only if that host is down"
            };
            return Err(in_use(name, &r, hint));
        }
        (_, None) => {}
        // Same host and every device claimed: the kernel dropped the owner's locks, so it is
        // gone (killed or crashed without export).
        (Locks::Held, Some(r)) if r.host_id == host => {
            log::info!("pool {name} was not exported by {}; taking it over", r.describe());
        }
        (_, Some(r)) => {
            if !claim.force {
                return Err(in_use(name, &r, "use --force-import only if that host is down"));
            }
            if heartbeat_advances(&devices, guid, &r, claim.heartbeat_interval).await {
                return Err(in_use(
                    name,
                    &r,
                    "its heartbeat is advancing, so that host is up: --force-import refused",
                ));
            }
            log::warn!(
                "pool {name}: taking it over from {} (--force-import; its heartbeat has stopped)",
                r.describe()
            );
        }
    }
    let previous_claim = newest_record(&devices, guid).await.map_or(0, |r| r.claim);
    let mut record = OwnerRecord {
        magic: OWNER_MAGIC,
        record_version: OWNER_RECORD_VERSION,
        state: OwnerState::Imported as u32,
        pool_guid: guid,
        host_id: host,
        pid: claim.pid,
        heartbeat_interval_ms: u32::try_from(claim.heartbeat_interval.as_millis())
            .unwrap_or(u32::MAX),
        import_time_secs: now_ms() / 1000,
        claim: previous_claim + 1,
        heartbeat_seq: 0,
        heartbeat_time_ms: now_ms(),
        ..Zeroable::zeroed()
    };
    if let Some(h) = crate::format::encode_name::<64>(&claim.host_name) {
        record.host_name = h;
    }
    if let Some(p) = crate::format::encode_name::<16>(&claim.program) {
        record.program = p;
    }
    write_record(&devices, record, true).await?;
    let ownership = Arc::new(Ownership {
        devices,
        pool_name: name.to_string(),
        record: Mutex::new(record),
        io: AsyncMutex::default(),
        released: AtomicBool::new(false),
        pool: OnceLock::new(),
        interval: claim.heartbeat_interval,
    });
    let _heartbeat = drivers::executor::spawn(heartbeat(Arc::clone(&ownership)));
    Ok(ClaimGuard(ownership))
}

/// [`claim`] when `claim` is given (ferrited always gives it); nothing otherwise.
///
/// # Errors
/// As for [`claim`].
pub(crate) async fn claim_if_asked(
    devs: &Stripe,
    configs: &[DeviceConfig],
    guid: u64,
    name: &str,
    claim_with: Option<&OwnerClaim>,
) -> PoolResult<Option<ClaimGuard>> {
    match claim_with {
        Some(c) => Ok(Some(claim(devs, configs, guid, name, c).await?)),
        None => Ok(None),
    }
}

/// Rewrites the record every interval until the pool is exported or dropped. When a newer
/// record of another importer appears (a host that forced an import), the pool is suspended:
/// two owners must never both write.
async fn heartbeat(own: Arc<Ownership>) {
    // Logged once per run of failures, not every interval.
    let mut failing = false;
    loop {
        drivers::executor::sleep(own.interval).await;
        let _io = own.io.lock().await;
        if own.released.load(Ordering::SeqCst) {
            return;
        }
        let pool = match own.pool.get() {
            None => None,
            Some(weak) => match weak.upgrade() {
                Some(pool) => Some(pool),
                // The import failed, or the pool was dropped without export.
                None => {
                    own.released.store(true, Ordering::SeqCst);
                    let _ = own.write_exported().await;
                    for (dev, _) in &own.devices {
                        dev.release_exclusive();
                    }
                    return;
                }
            },
        };
        let ours = *crate::pool::lock(&own.record);
        let guid = ours.pool_guid;
        if let Some(newer) = newest_record(&own.devices, guid).await {
            if newer.claim != ours.claim {
                log::error!(
                    "pool {}: imported elsewhere by {}; suspending it here",
                    own.pool_name,
                    newer.describe()
                );
                own.released.store(true, Ordering::SeqCst);
                if let Some(pool) = pool {
                    pool.suspended.store(true, Ordering::SeqCst);
                    pool.txg.kick.wake_all();
                }
                return;
            }
        }
        let mut next = ours;
        next.heartbeat_seq += 1;
        next.heartbeat_time_ms = now_ms();
        *crate::pool::lock(&own.record) = next;
        match write_record(&own.devices, next, false).await {
            Err(e) if !failing => {
                log::warn!("pool {}: heartbeat write failed: {e}", own.pool_name);
                failing = true;
            }
            Err(_) => {}
            Ok(()) => failing = false,
        }
    }
}

impl Ownership {
    async fn write_exported(&self) -> PoolResult<()> {
        let mut record = *crate::pool::lock(&self.record);
        record.state = OwnerState::Exported as u32;
        record.heartbeat_seq += 1;
        record.heartbeat_time_ms = now_ms();
        *crate::pool::lock(&self.record) = record;
        write_record(&self.devices, record, true).await
    }

    /// Marks the record exported (durable), stops the heartbeat and gives up the devices'
    /// exclusive claims.
    ///
    /// # Errors
    /// A device error.
    pub(crate) async fn release(&self) -> PoolResult<()> {
        let _io = self.io.lock().await;
        if self.released.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let written = self.write_exported().await;
        for (dev, _) in &self.devices {
            dev.release_exclusive();
        }
        written
    }
}

/// For tools that read a pool without importing it (ferrite-inspect): one line saying who has
/// the pool imported, when a live process on this host holds its devices or the record says
/// it is imported; `None` when it is exported (or carries no record).
pub async fn owner_note(devices: &[Arc<dyn BlockDevice>]) -> Option<String> {
    let locked = devices.iter().any(|d| d.claimed_elsewhere().unwrap_or(false));
    let (guid, name, configs, devs) = crate::pool::open_devices(devices.to_vec()).await.ok()?;
    let list: Vec<(Arc<dyn BlockDevice>, u64)> = configs
        .iter()
        .zip(devs.leaves())
        .map(|(c, leaf)| (Arc::clone(leaf.device()), c.size_bytes))
        .collect();
    let record = newest_record(&list, guid).await.filter(OwnerRecord::is_imported);
    match (locked, record) {
        (true, Some(r)) => Some(format!(
            "pool {name} is imported by {} (a live process holds its devices; read-only, \
             figures may lag the live pool)",
            r.describe()
        )),
        (true, None) => Some(format!(
            "pool {name}: another process holds its devices (read-only, figures may lag)"
        )),
        (false, Some(r)) => Some(format!(
            "pool {name} was imported by {} and not exported (if that host is up, figures \
             may lag)",
            r.describe()
        )),
        (false, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::DocumentedImage;

    #[test]
    fn record_round_trips_and_damage_is_ignored() {
        let record = OwnerRecord {
            magic: OWNER_MAGIC,
            record_version: OWNER_RECORD_VERSION,
            state: OwnerState::Imported as u32,
            pool_guid: 7,
            pid: 4242,
            import_time_secs: 1_796_612_400,
            ..Zeroable::zeroed()
        };
        let mut slot = record.encode_slot();
        let back = OwnerRecord::decode_slot(&slot).expect("valid");
        assert_eq!(back.pid, 4242);
        slot[20] ^= 1;
        assert!(OwnerRecord::decode_slot(&slot).is_none());
        assert!(OwnerRecord::decode_slot(&[0u8; 4096]).is_none());
    }

    #[test]
    fn utc_minutes_formats_civil_time() {
        assert_eq!(utc_minutes(0), "1970-01-01 00:00");
        // 2026-12-07 03:00 UTC.
        assert_eq!(utc_minutes(1_796_612_400), "2026-12-07 03:00");
        assert_eq!(utc_minutes(951_782_400), "2000-02-29 00:00");
    }

    /// The slot image, byte for byte: the fields at their documented offsets
    /// (docs/format.md §Owner record), zeros elsewhere, the checksum over the first 496.
    #[test]
    fn slot_bytes_are_pinned() {
        let mut record = OwnerRecord {
            magic: OWNER_MAGIC,
            record_version: OWNER_RECORD_VERSION,
            state: OwnerState::Imported as u32,
            pool_guid: 0xfeed,
            host_id: [0x11, 0x22],
            pid: 4242,
            heartbeat_interval_ms: 1000,
            import_time_secs: 1_796_612_400,
            claim: 3,
            heartbeat_seq: 9,
            heartbeat_time_ms: 77,
            ..Zeroable::zeroed()
        };
        record.host_name[..2].copy_from_slice(b"h1");
        record.program[..8].copy_from_slice(b"ferrited");
        let slot = record.encode_slot();
        let mut fields = DocumentedImage::default();
        fields.bytes(b"FERROWNR").u32(1).u32(1).u64(0xfeed).u64(0x11).u64(0x22);
        // pid, heartbeat_interval_ms, import_time_secs, claim, heartbeat_seq, heartbeat_time_ms.
        fields.u32(4242).u32(1000).u64(1_796_612_400).u64(3).u64(9).u64(77);
        fields.bytes(b"h1").zeros(62).bytes(b"ferrited");
        let (want, sum) = fields.sealed(496, 4096);
        assert_eq!(slot, want);
        assert_eq!(sum, [0x8f41_5cef_952c_4e29, 0xd505_3a91_8fbd_579a], "the image's checksum");
    }
}
