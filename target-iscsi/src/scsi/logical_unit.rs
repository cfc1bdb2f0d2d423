//! A SCSI logical unit: the state shared by every session on every core (reservations, unit
//! attentions, mode pages) and the command dispatch. Command handlers live in one file per
//! command family (`read_write.rs`, `verify.rs`, ...), each adding methods to
//! [`LogicalUnit`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use drivers::buffer::IoBuf;
use engine::block_volume::{BlockVolume, VolumeError, VolumeGeometry};
use engine::units::{BlockCount, Lba};

use super::cdb::{self, opcode, BlockIo, Command};
use super::config::{stable_hash, LunConfig};
use super::mode::{ModePages, PageSet};
use super::nexus::ItNexus;
use super::quiesce::Quiesce;
use super::reservation::{PrState, Reservations};
use super::sanitize::SanitizeState;
use super::sense::Sense;
use super::status::{CommandResult, Prepared, ScsiError, ScsiResult, ScsiStatus};
use super::unit_attention::UnitAttentions;

/// Why a logical unit could not be created.
#[derive(Debug)]
pub enum LunError {
    /// The volume's block sizes are not 512/4096 with a physical size that is a multiple.
    BadGeometry(VolumeGeometry),
    /// A state file could not be read.
    StateFile { path: PathBuf, error: std::io::Error },
    /// A state file is not valid JSON of the expected shape.
    StateFormat { path: PathBuf, error: serde_json::Error },
}

impl std::fmt::Display for LunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LunError::BadGeometry(g) => write!(
                f,
                "unsupported block sizes: {} logical, {} physical",
                g.logical_block_bytes, g.physical_block_bytes
            ),
            LunError::StateFile { path, error } => {
                write!(f, "cannot read {}: {error}", path.display())
            }
            LunError::StateFormat { path, error } => {
                write!(f, "bad state file {}: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for LunError {}

/// A command [`LogicalUnit::prepare_command`] decoded and admitted, carried to
/// [`LogicalUnit::execute_prepared`] so its CDB is parsed once.
#[derive(Debug, Clone, Copy)]
pub struct ParsedCommand {
    /// The CDB's operation code (the unit-attention fast path is decided by it).
    opcode: u8,
    command: Command,
}

/// One logical unit. `Send + Sync`; shared through `Arc` by sessions on every core.
pub struct LogicalUnit {
    pub(super) config: LunConfig,
    pub(super) volume: Arc<dyn BlockVolume>,
    /// NAA IEEE Registered designator (NAA 5).
    pub(super) naa_id: u64,
    /// Unit serial number.
    pub(super) serial: String,
    /// Some nexus has a unit attention pending (fast-path check).
    attention: AtomicBool,
    /// Some reservation or registration exists (fast-path check).
    reserved: AtomicBool,
    /// D_SENSE of the control mode page.
    descriptor_sense: AtomicBool,
    /// SWP of the control mode page.
    software_write_protect: AtomicBool,
    pub(super) mode: Mutex<ModePages>,
    pub(super) unit_attentions: Mutex<UnitAttentions>,
    pub(super) reservations: Mutex<Reservations>,
    /// Sanitize operation in progress or failed (shared with the running job).
    pub(super) sanitize: Arc<SanitizeState>,
    /// Commands in flight, and the fence of a medium change (`medium_change.rs`).
    pub(super) quiesce: Quiesce,
}

/// Locks `m`, recovering the data of a poisoned lock (state stays consistent: every critical
/// section validates before it mutates).
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, LunError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|error| LunError::StateFormat { path: path.to_path_buf(), error }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(LunError::StateFile { path: path.to_path_buf(), error }),
    }
}

/// Writes `value` to `path` atomically (temporary file, then rename).
pub(super) fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, path)
}

/// Maps a volume failure to sense data.
pub(super) fn volume_sense(err: VolumeError) -> Sense {
    match err {
        VolumeError::OutOfRange => Sense::lba_out_of_range(),
        VolumeError::Medium { lba } => Sense::unrecovered_read_error(lba.get()),
        VolumeError::NoSpace => Sense::space_allocation_failed(),
        VolumeError::ReadOnly => Sense::write_protected(),
        VolumeError::BadLength | VolumeError::Io(_) => Sense::internal_target_failure(),
    }
}

impl LogicalUnit {
    /// Creates the LU over `volume`, loading saved mode pages and persistent reservations
    /// from the configured state files.
    pub fn new(config: LunConfig, volume: Arc<dyn BlockVolume>) -> Result<LogicalUnit, LunError> {
        let g = volume.geometry();
        let lbs = g.logical_block_bytes;
        if !(lbs == 512 || lbs == 4096)
            || g.physical_block_bytes < lbs
            || !g.physical_block_bytes.is_multiple_of(lbs)
        {
            return Err(LunError::BadGeometry(g));
        }
        let naa_body = config.naa_id.unwrap_or_else(|| {
            stable_hash(&[config.target_name.as_bytes(), &config.lun.to_be_bytes()])
        });
        let naa_id = (5u64 << 60) | (naa_body & 0x0FFF_FFFF_FFFF_FFFF);
        let serial = config.serial.clone().unwrap_or_else(|| format!("{naa_id:016x}"));
        let mut mode = ModePages { current: PageSet::defaults(), saved: None };
        if let Some(path) = &config.mode_state_path {
            let saved: PageSet = read_json(path)?.unwrap_or_else(PageSet::defaults);
            mode.current = saved.clone();
            mode.saved = Some(saved);
        }
        volume.set_write_cache(mode.current.write_cache());
        let mut reservations = Reservations::default();
        if let Some(path) = &config.pr_state_path {
            if let Some(pr) = read_json::<PrState>(path)? {
                if pr.aptpl {
                    reservations.pr = pr;
                }
            }
        }
        Ok(LogicalUnit {
            attention: AtomicBool::new(false),
            reserved: AtomicBool::new(reservations.active()),
            descriptor_sense: AtomicBool::new(mode.current.descriptor_sense()),
            software_write_protect: AtomicBool::new(mode.current.software_write_protect()),
            mode: Mutex::new(mode),
            unit_attentions: Mutex::new(UnitAttentions::default()),
            reservations: Mutex::new(reservations),
            sanitize: Arc::new(SanitizeState::default()),
            quiesce: Quiesce::default(),
            config,
            volume,
            naa_id,
            serial,
        })
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &LunConfig {
        &self.config
    }

    /// The volume's geometry.
    pub(super) fn geometry(&self) -> VolumeGeometry {
        self.volume.geometry()
    }

    /// Logical block size.
    pub(super) fn block_bytes(&self) -> u32 {
        self.geometry().logical_block_bytes
    }

    /// CHECK CONDITION with `sense` in the format D_SENSE selects.
    #[must_use]
    pub fn check_condition(&self, sense: &Sense) -> CommandResult {
        CommandResult::check_condition(sense, self.descriptor_sense.load(Ordering::Relaxed))
    }

    fn fail(&self, err: ScsiError) -> CommandResult {
        match err {
            ScsiError::Check(s) => self.check_condition(&s),
            ScsiError::ReservationConflict => {
                CommandResult::status(ScsiStatus::ReservationConflict)
            }
            ScsiError::Busy => CommandResult::status(ScsiStatus::Busy),
        }
    }

    /// Decodes the CDB before any Data-Out is solicited. `expected_bytes` is the initiator's
    /// expected data transfer length. Returns the Data-Out bytes the command consumes and
    /// its direction, or the result to return at once (invalid CDB, unit attention,
    /// reservation conflict, or a Data-Out the initiator announced too short).
    ///
    /// The transport solicits `min(expected_bytes, data_out_bytes)` and reports the rest as
    /// a residual. A unit attention returned here is consumed. (The tests' entry; the
    /// connection uses [`prepare_command`](Self::prepare_command).)
    #[cfg(test)]
    pub fn prepare(
        &self,
        nexus: &ItNexus,
        cdb: &[u8],
        expected_bytes: u64,
    ) -> Result<Prepared, CommandResult> {
        self.prepare_command(nexus, cdb, expected_bytes).map(|(p, _)| p)
    }

    /// [`prepare`](Self::prepare), also returning the parsed command for
    /// [`execute_prepared`](Self::execute_prepared), so the CDB is decoded once.
    pub fn prepare_command(
        &self,
        nexus: &ItNexus,
        cdb: &[u8],
        expected_bytes: u64,
    ) -> Result<(Prepared, ParsedCommand), CommandResult> {
        // No Data-Out is solicited for a command the fence would refuse (see `execute`).
        if self.quiesce.is_fenced() {
            return Err(CommandResult::status(ScsiStatus::Busy));
        }
        let parsed = self.admit(nexus, cdb).map_err(|e| self.fail(e))?;
        let cmd = parsed.command;
        // A write to a write-protected medium fails on its CDB alone, before any Data-Out is
        // solicited or its length judged.
        if writes_medium(&cmd) && self.write_protected() {
            return Err(self.check_condition(&Sense::write_protected()));
        }
        let bs = self.block_bytes();
        let need = cmd.data_out_bytes(bs);
        // A WRITE whose expected length is short of the CDB's is truncated to what the
        // initiator sends (RFC 7143 §11.4.5.2 residual overflow); `run` writes whole blocks.
        // COMPARE AND WRITE of zero blocks takes no Data-Out; a command that brings some
        // anyway contradicts its CDB (the initiator meant more blocks than the field holds).
        if need == 0 && expected_bytes > 0 && matches!(cmd, Command::CompareAndWrite(_)) {
            return Err(self.check_condition(&Sense::invalid_field_in_cdb(13, None)));
        }
        if need > 0 && !cmd.truncates_data_out() {
            if expected_bytes < need {
                return Err(self.check_condition(&Sense::invalid_field_in_information_unit()));
            }
            if cmd.requires_exact_data_out() && expected_bytes != need {
                return Err(self.check_condition(&Sense::invalid_field_in_cdb(0, None)));
            }
        }
        Ok((Prepared { direction: cmd.direction(bs), data_out_bytes: need }, parsed))
    }

    /// Executes one command from its CDB (decoding and admitting it here). `data_out` holds at
    /// least the bytes `prepare` asked for (extra bytes are ignored). The tests' entry; the
    /// connection runs [`execute_prepared`](Self::execute_prepared).
    #[cfg(test)]
    pub async fn execute(
        &self,
        nexus: &ItNexus,
        cdb: &[u8],
        data_out: Option<IoBuf>,
    ) -> CommandResult {
        // While the medium is being replaced, commands wait outside (BUSY, retried by hosts).
        let Some(_in_flight) = self.quiesce.enter() else {
            return CommandResult::status(ScsiStatus::Busy);
        };
        match self.admit(nexus, cdb) {
            Ok(parsed) => self.perform(nexus, parsed.command, data_out).await,
            Err(e) => self.fail(e),
        }
    }

    /// Executes a command [`prepare_command`](Self::prepare_command) decoded. The CDB is not
    /// parsed again; what may have changed while its Data-Out arrived (unit attentions,
    /// sanitize, reservations) is checked again.
    pub async fn execute_prepared(
        &self,
        nexus: &ItNexus,
        parsed: ParsedCommand,
        data_out: Option<IoBuf>,
    ) -> CommandResult {
        let Some(_in_flight) = self.quiesce.enter() else {
            return CommandResult::status(ScsiStatus::Busy);
        };
        let admitted = self
            .check_attention(nexus, parsed.opcode)
            .and_then(|()| self.check_state(nexus, &parsed.command));
        match admitted {
            Ok(()) => self.perform(nexus, parsed.command, data_out).await,
            Err(e) => self.fail(e),
        }
    }

    /// Runs an admitted command.
    async fn perform(
        &self,
        nexus: &ItNexus,
        cmd: Command,
        data_out: Option<IoBuf>,
    ) -> CommandResult {
        if let Command::Read(io) = cmd {
            // READ sends the volume's own buffers (DESIGN §3): no Data-Out, no protection.
            return match self.read_shared(io).await {
                Ok(data) => CommandResult::good_segments(data),
                Err(e) => self.fail(e),
            };
        }
        match self.run(nexus, &cmd, data_out).await {
            Ok(data) => CommandResult::good(data),
            Err(e) => self.fail(e),
        }
    }

    /// The checks every command passes before it runs: unit attention, CDB decoding,
    /// reservation conflicts. READ and WRITE only look at two atomics unless something is
    /// pending.
    fn admit(&self, nexus: &ItNexus, cdb_bytes: &[u8]) -> Result<ParsedCommand, ScsiError> {
        let opcode = cdb_bytes.first().copied().unwrap_or(0xFF);
        self.check_attention(nexus, opcode)?;
        let command = cdb::parse(cdb_bytes)?;
        self.check_state(nexus, &command)?;
        Ok(ParsedCommand { opcode, command })
    }

    /// Reports (and consumes) a unit attention pending for `nexus`, unless `op` is exempt.
    fn check_attention(&self, nexus: &ItNexus, op: u8) -> Result<(), ScsiError> {
        let fast = matches!(
            op,
            opcode::READ_10
                | opcode::READ_16
                | opcode::WRITE_10
                | opcode::WRITE_16
                | opcode::READ_12
                | opcode::WRITE_12
        );
        if !fast || self.attention.load(Ordering::Acquire) {
            let exempt =
                matches!(op, opcode::INQUIRY | opcode::REPORT_LUNS | opcode::REQUEST_SENSE);
            let mut ua = lock(&self.unit_attentions);
            if ua.see(nexus) && self.config.unit_attention_on_new_nexus {
                ua.push(nexus.nexus_id, Sense::ua_power_on_reset());
                self.attention.store(true, Ordering::Release);
            }
            if !exempt {
                if let Some(s) = ua.pop(nexus.nexus_id) {
                    self.attention.store(ua.any_pending(), Ordering::Release);
                    return Err(ScsiError::Check(s));
                }
            }
        }
        Ok(())
    }

    /// The checks of a decoded command against the unit's state: sanitize, the SANITIZE
    /// CDB's fields against the geometry, reservations.
    fn check_state(&self, nexus: &ItNexus, cmd: &Command) -> Result<(), ScsiError> {
        self.sanitize.admit(cmd)?;
        if let Command::Sanitize(s) = cmd {
            self.check_sanitize_cdb(s)?;
        }
        if self.reserved.load(Ordering::Acquire) {
            lock(&self.reservations).check_access(nexus, cmd)?;
        }
        Ok(())
    }

    async fn run(&self, nexus: &ItNexus, cmd: &Command, data_out: Option<IoBuf>) -> ScsiResult {
        // Write protection is decided by the CDB alone, before the Data-Out is looked at: a
        // write to a protected medium is DATA PROTECT whatever data came with it (or none).
        if writes_medium(cmd) && self.write_protected() {
            return Err(Sense::write_protected().into());
        }
        let (cmd, data_out) = truncate_to_data_out(*cmd, data_out, self.block_bytes())?;
        let cmd = &cmd;
        let need = cmd.data_out_bytes(self.block_bytes());
        let data = take_data_out(data_out, need)?;
        match *cmd {
            Command::TestUnitReady | Command::StartStopUnit { .. } => Ok(None),
            Command::RequestSense { desc, allocation_length } => {
                Ok(self.request_sense(nexus, desc, allocation_length))
            }
            Command::Inquiry { evpd, page_code, allocation_length } => {
                self.inquiry(nexus, evpd, page_code, allocation_length)
            }
            Command::ModeSense(c) => self.mode_sense(&c),
            Command::ModeSelect(c) => self.mode_select(nexus, &c, data.as_deref().unwrap_or(&[])),
            Command::Reserve => self.reserve_spc2(nexus),
            Command::Release => self.release_spc2(nexus),
            Command::ReadCapacity10 { pmi, lba } => self.read_capacity_10(pmi, lba),
            Command::ReadCapacity16 { allocation_length } => {
                self.read_capacity_16(allocation_length)
            }
            Command::GetLbaStatus { lba, allocation_length } => {
                self.get_lba_status(lba, allocation_length).await
            }
            Command::ReadDefectData { twelve, req_plist, req_glist, format, allocation_length } => {
                Ok(super::defect_data::read_defect_data(
                    twelve,
                    req_plist,
                    req_glist,
                    format,
                    allocation_length,
                ))
            }
            Command::Read(io) => self.read(io).await,
            Command::Write(io) => self.write(io, data).await,
            Command::WriteAndVerify(io, check) => self.write_and_verify(io, check, data).await,
            Command::Verify(io, check) => self.verify(io, check, data).await,
            Command::OrWrite(io) => self.orwrite(io, data).await,
            Command::CompareAndWrite(io) => self.compare_and_write(io, data).await,
            Command::PreFetch(r) => self.pre_fetch(r),
            Command::SynchronizeCache(r) => self.synchronize_cache(r).await,
            Command::WriteSame(ws) => self.write_same(ws, data).await,
            Command::Unmap { anchor, .. } => {
                self.unmap(anchor, data.as_deref().unwrap_or(&[])).await
            }
            Command::Sanitize(s) => self.sanitize(s, data.as_deref()).await,
            Command::PersistentReserveIn { service_action, allocation_length } => {
                self.persistent_reserve_in(service_action, allocation_length)
            }
            Command::PersistentReserveOut { service_action, scope, pr_type, .. } => self
                .persistent_reserve_out(
                    nexus,
                    service_action,
                    scope,
                    pr_type,
                    data.as_deref().unwrap_or(&[]),
                ),
            Command::ReportLuns { select, allocation_length } => {
                super::report_luns::report_luns(&[self.config.lun], select, allocation_length)
            }
            Command::ReportSupportedOpcodes {
                rctd,
                options,
                opcode,
                service_action,
                allocation_length,
            } => super::opcodes::report_supported_opcodes(
                self.capabilities(),
                rctd,
                options,
                opcode,
                service_action,
                allocation_length,
            ),
            Command::ReportSupportedTmfs { repd, allocation_length } => {
                Ok(super::opcodes::report_supported_tmfs(repd, allocation_length))
            }
        }
    }

    /// Raises `sense` for every known nexus except `except`.
    pub(super) fn raise_unit_attention(&self, except: Option<u64>, sense: Sense) {
        let mut ua = lock(&self.unit_attentions);
        ua.push_all_except(except, sense);
        self.attention.store(ua.any_pending(), Ordering::Release);
    }

    /// Raises `sense` for the known nexuses `select` picks.
    pub(super) fn raise_unit_attention_where(
        &self,
        except: Option<u64>,
        sense: Sense,
        select: impl Fn(&super::nexus::NexusKey) -> bool,
    ) {
        let mut ua = lock(&self.unit_attentions);
        ua.push_where(except, sense, select);
        self.attention.store(ua.any_pending(), Ordering::Release);
    }

    /// Takes the oldest unit attention pending for `nexus_id` (REQUEST SENSE).
    pub(super) fn take_unit_attention(&self, nexus_id: u64) -> Option<Sense> {
        let mut ua = lock(&self.unit_attentions);
        let s = ua.pop(nexus_id);
        self.attention.store(ua.any_pending(), Ordering::Release);
        s
    }

    /// Re-derives the fast-path reservation flag.
    pub(super) fn update_reserved(&self, r: &Reservations) {
        self.reserved.store(r.active(), Ordering::Release);
    }

    /// Re-derives the fast-path mode flags after a MODE SELECT.
    pub(super) fn update_mode_flags(&self, p: &PageSet) {
        self.descriptor_sense.store(p.descriptor_sense(), Ordering::Relaxed);
        self.software_write_protect.store(p.software_write_protect(), Ordering::Relaxed);
    }

    /// True when writes are refused (read-only LU or SWP).
    pub(super) fn write_protected(&self) -> bool {
        self.config.read_only || self.software_write_protect.load(Ordering::Relaxed)
    }

    /// Registers a nexus at login so it receives unit attentions raised before its first
    /// command.
    pub fn nexus_established(&self, nexus: &ItNexus) {
        let mut ua = lock(&self.unit_attentions);
        if ua.see(nexus) && self.config.unit_attention_on_new_nexus {
            ua.push(nexus.nexus_id, Sense::ua_power_on_reset());
            self.attention.store(true, Ordering::Release);
        }
    }

    /// The session of `nexus_id` ended: drops its unit attentions and SPC-2 reservation
    /// (persistent reservations survive).
    pub fn nexus_lost(&self, nexus_id: u64) {
        {
            let mut ua = lock(&self.unit_attentions);
            ua.forget(nexus_id);
            self.attention.store(ua.any_pending(), Ordering::Release);
        }
        let mut r = lock(&self.reservations);
        r.nexus_lost(nexus_id);
        self.update_reserved(&r);
    }

    /// LUN RESET: releases the SPC-2 reservation and raises BUS DEVICE RESET FUNCTION
    /// OCCURRED for every nexus.
    pub fn lun_reset(&self, by: &ItNexus) {
        self.reset(by, Sense::ua_bus_device_reset());
    }

    /// TARGET WARM RESET (called by [`super::target::ScsiTarget`]): as LUN RESET with POWER ON,
    /// RESET, OR BUS DEVICE RESET OCCURRED.
    pub fn target_reset(&self, by: &ItNexus) {
        self.reset(by, Sense::ua_power_on_reset());
    }

    fn reset(&self, by: &ItNexus, sense: Sense) {
        {
            let mut r = lock(&self.reservations);
            r.spc2_holder = None;
            self.update_reserved(&r);
        }
        lock(&self.unit_attentions).see(by);
        self.raise_unit_attention(None, sense);
    }

    /// The volume's capacity changed: raises CAPACITY DATA HAS CHANGED for every nexus.
    pub fn capacity_changed(&self) {
        self.raise_unit_attention(None, Sense::ua_capacity_changed());
    }

    /// The target's LUN inventory changed: raises REPORTED LUNS DATA HAS CHANGED.
    pub fn reported_luns_changed(&self) {
        self.raise_unit_attention(None, Sense::ua_reported_luns_changed());
    }

    /// Checks that `[lba, lba + blocks)` lies inside the volume.
    pub(super) fn check_range(&self, lba: u64, blocks: u64) -> Result<(), Sense> {
        engine::block_volume::check_range(
            self.geometry().capacity_blocks,
            Lba::new(lba),
            BlockCount::new(blocks),
        )
        .map_err(|_| Sense::lba_out_of_range())
    }

    /// Byte length of `blocks` logical blocks, as a buffer length.
    pub(super) fn bytes_of(&self, blocks: u64) -> Result<usize, Sense> {
        blocks
            .checked_mul(u64::from(self.block_bytes()))
            .and_then(|b| usize::try_from(b).ok())
            .ok_or_else(Sense::internal_target_failure)
    }
}

/// True for the commands refused when the medium is write-protected.
fn writes_medium(cmd: &Command) -> bool {
    matches!(
        cmd,
        Command::Write(_)
            | Command::WriteAndVerify(..)
            | Command::OrWrite(_)
            | Command::CompareAndWrite(_)
            | Command::WriteSame(_)
            | Command::Unmap { .. }
            | Command::Sanitize(_)
    )
}

/// Shortens a WRITE or WRITE AND VERIFY to the whole blocks of Data-Out the initiator sent
/// when that is less than the CDB asks for (the initiator's expected data transfer length was
/// short; the transport reports the overflow). A partial block cannot be written: INVALID
/// FIELD IN INFORMATION UNIT.
fn truncate_to_data_out(
    cmd: Command,
    data_out: Option<IoBuf>,
    block_bytes: u32,
) -> Result<(Command, Option<IoBuf>), ScsiError> {
    if !cmd.truncates_data_out() {
        return Ok((cmd, data_out));
    }
    let need = cmd.data_out_bytes(block_bytes);
    let have = data_out.as_ref().map_or(0, |b| b.len() as u64);
    if have >= need {
        return Ok((cmd, data_out));
    }
    if !have.is_multiple_of(u64::from(block_bytes)) {
        return Err(Sense::invalid_field_in_information_unit().into());
    }
    let blocks = u32::try_from(have / u64::from(block_bytes))
        .map_err(|_| Sense::invalid_field_in_information_unit())?;
    let short = match cmd {
        Command::Write(io) => Command::Write(BlockIo { blocks, ..io }),
        Command::WriteAndVerify(io, check) => {
            Command::WriteAndVerify(BlockIo { blocks, ..io }, check)
        }
        other => other,
    };
    Ok((short, data_out.filter(|_| blocks > 0)))
}

/// Checks the Data-Out against what the command needs, trimming any excess.
fn take_data_out(data_out: Option<IoBuf>, need: u64) -> Result<Option<IoBuf>, ScsiError> {
    if need == 0 {
        return Ok(None);
    }
    let Some(mut buf) = data_out else {
        return Err(Sense::invalid_field_in_information_unit().into());
    };
    let need = usize::try_from(need).map_err(|_| Sense::invalid_field_in_information_unit())?;
    if buf.len() < need {
        return Err(Sense::invalid_field_in_information_unit().into());
    }
    buf.set_len(need);
    Ok(Some(buf))
}
