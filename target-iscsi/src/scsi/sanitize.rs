//! SANITIZE (SBC-4 5.30) and the sanitize state of a logical unit (SBC-4 4.11).
//!
//! Executed service actions: OVERWRITE (the initiator's pattern, OVERWRITE COUNT passes,
//! INVERT between passes) and BLOCK ERASE (every block deallocated; offered only on a thin
//! volume whose deallocated blocks read as zeros, so nothing of the old data stays
//! readable), plus EXIT FAILURE MODE. CRYPTOGRAPHIC ERASE is refused by the parser: ferrite
//! does not store user data encrypted, so there is no key whose destruction would erase it.
//!
//! A sanitize operation is a job of its own, not part of the command: it runs in bounded
//! pieces with a yield between them (other sessions keep flowing), survives ABORT TASK, resets
//! and the loss of the session that sent it, and while it runs every command but INQUIRY,
//! REPORT LUNS and REQUEST SENSE gets NOT READY, SANITIZE IN PROGRESS with the fraction
//! done. A failed operation leaves the LU in sanitize failure mode: commands that access the
//! medium get MEDIUM ERROR, SANITIZE COMMAND FAILED until a sanitize operation succeeds or,
//! when the failed one had AUSE set, EXIT FAILURE MODE is received.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drivers::buffer::IoBuf;
use engine::block_volume::{BlockVolume, VolumeGeometry};
use engine::units::{BlockCount, Lba};

use super::cdb::{opcode as op, Command, SanitizeCdb};
use super::config::BackgroundWork;
use super::limits;
use super::logical_unit::{lock, LogicalUnit};
use super::sense::Sense;
use super::status::ScsiResult;
use super::yield_now::yield_now;

/// Bytes of the OVERWRITE parameter list header.
const OVERWRITE_HEADER_BYTES: usize = 4;

/// What a sanitize operation does to every logical block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// Write `block` (the initialization pattern repeated over one logical block) `passes`
    /// times; with `invert`, passes alternate between the block and its complement, the last
    /// pass writing the block itself.
    Overwrite { block: Vec<u8>, invert: bool, passes: u8 },
    /// Deallocate every block.
    BlockErase,
}

impl Method {
    /// Logical block writes or deallocations the operation makes on a volume of
    /// `capacity_blocks`.
    #[must_use]
    pub fn total_blocks(&self, capacity_blocks: u64) -> u64 {
        match self {
            Method::Overwrite { passes, .. } => capacity_blocks * u64::from(*passes),
            Method::BlockErase => capacity_blocks,
        }
    }
}

/// Decodes an OVERWRITE parameter list (SBC-4 5.30.3) for `block_bytes`-byte blocks. The CDB
/// already guaranteed more than the 4-byte header and at most one block of pattern.
pub fn parse_overwrite(list: &[u8], block_bytes: u32) -> Result<Method, Sense> {
    if list.len() <= OVERWRITE_HEADER_BYTES {
        return Err(Sense::parameter_list_length_error());
    }
    let invert = list[0] & 0x80 != 0;
    if list[0] & 0x60 != 0 {
        // TEST: only 00b (a normal operation) is defined for use.
        return Err(Sense::invalid_field_in_parameter_list(0, Some(6)));
    }
    let passes = list[0] & 0x1F;
    if passes == 0 {
        return Err(Sense::invalid_field_in_parameter_list(0, Some(4)));
    }
    if list[1] != 0 {
        return Err(Sense::invalid_field_in_parameter_list(1, None));
    }
    let pattern_bytes = usize::from(u16::from_be_bytes([list[2], list[3]]));
    let bs = block_bytes as usize;
    if pattern_bytes == 0
        || pattern_bytes > bs
        || OVERWRITE_HEADER_BYTES + pattern_bytes > list.len()
    {
        return Err(Sense::invalid_field_in_parameter_list(2, None));
    }
    let pattern = &list[OVERWRITE_HEADER_BYTES..OVERWRITE_HEADER_BYTES + pattern_bytes];
    let block: Vec<u8> = pattern.iter().copied().cycle().take(bs).collect();
    Ok(Method::Overwrite { block, invert, passes })
}

/// The block pass `pass` (0-based) of `passes` writes: with INVERT, the last pass writes the
/// pattern and each earlier one the complement of the next (SBC-4 5.30.3).
#[must_use]
pub fn pass_inverted(invert: bool, pass: u8, passes: u8) -> bool {
    invert && (passes - 1 - pass) % 2 == 1
}

/// Where the LU stands with respect to sanitize operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Running {
        done_blocks: u64,
        total_blocks: u64,
        ause: bool,
    },
    /// The last operation failed; `ause` tells whether EXIT FAILURE MODE may leave the mode.
    Failed {
        ause: bool,
    },
}

/// Sanitize state shared by the LU and its running job.
#[derive(Debug)]
pub struct SanitizeState {
    /// Not idle (fast path for READ/WRITE admission).
    busy: AtomicBool,
    phase: Mutex<Phase>,
}

impl Default for SanitizeState {
    fn default() -> Self {
        SanitizeState { busy: AtomicBool::new(false), phase: Mutex::new(Phase::Idle) }
    }
}

impl SanitizeState {
    fn set(&self, phase: &mut Phase, next: Phase) {
        *phase = next;
        self.busy.store(next != Phase::Idle, Ordering::Release);
    }

    /// The check every command passes: NOT READY while an operation runs (except INQUIRY,
    /// REPORT LUNS and REQUEST SENSE), MEDIUM ERROR for medium access in failure mode.
    pub fn admit(&self, cmd: &Command) -> Result<(), Sense> {
        if !self.busy.load(Ordering::Acquire) {
            return Ok(());
        }
        match *lock(&self.phase) {
            Phase::Idle => Ok(()),
            Phase::Running { .. }
                if matches!(
                    cmd,
                    Command::Inquiry { .. }
                        | Command::ReportLuns { .. }
                        | Command::RequestSense { .. }
                ) =>
            {
                Ok(())
            }
            Phase::Running { done_blocks, total_blocks, .. } => {
                Err(Sense::sanitize_in_progress(progress(done_blocks, total_blocks)))
            }
            Phase::Failed { .. } if accesses_medium(cmd) => Err(Sense::sanitize_failed()),
            Phase::Failed { .. } => Ok(()),
        }
    }

    /// What REQUEST SENSE reports when no unit attention is pending: the progress of a
    /// running operation, or nothing.
    pub fn pollable_sense(&self) -> Option<Sense> {
        match *lock(&self.phase) {
            Phase::Running { done_blocks, total_blocks, .. } => {
                Some(Sense::sanitize_in_progress(progress(done_blocks, total_blocks)))
            }
            _ => None,
        }
    }

    /// True while an operation runs.
    #[must_use]
    pub fn running(&self) -> bool {
        matches!(*lock(&self.phase), Phase::Running { .. })
    }

    /// Enters the running phase for an operation of `total_blocks` block operations.
    /// After a failure in the restricted completion mode (AUSE 0), only a new operation that
    /// also has AUSE 0 may leave the failure mode (SBC-4 4.11.3).
    fn start(&self, total_blocks: u64, ause: bool) -> Result<(), Sense> {
        let mut phase = lock(&self.phase);
        match *phase {
            Phase::Running { done_blocks, total_blocks, .. } => {
                return Err(Sense::sanitize_in_progress(progress(done_blocks, total_blocks)));
            }
            Phase::Failed { ause: false } if ause => {
                return Err(Sense::invalid_field_in_cdb(1, Some(5)));
            }
            _ => {}
        }
        self.set(&mut phase, Phase::Running { done_blocks: 0, total_blocks, ause });
        Ok(())
    }

    fn advance(&self, blocks: u64) {
        let mut phase = lock(&self.phase);
        if let Phase::Running { done_blocks, .. } = &mut *phase {
            *done_blocks += blocks;
        }
    }

    fn finish(&self, ok: bool) {
        let mut phase = lock(&self.phase);
        let ause = match *phase {
            Phase::Running { ause, .. } => ause,
            _ => false,
        };
        self.set(&mut phase, if ok { Phase::Idle } else { Phase::Failed { ause } });
    }

    /// EXIT FAILURE MODE: leaves the failure mode of an operation that had AUSE set;
    /// refused after a failure in the restricted completion mode. Without a failure there is
    /// nothing to leave.
    fn exit_failure_mode(&self) -> Result<(), Sense> {
        let mut phase = lock(&self.phase);
        match *phase {
            Phase::Failed { ause: false } => Err(Sense::invalid_field_in_cdb(1, Some(4))),
            Phase::Failed { ause: true } => {
                self.set(&mut phase, Phase::Idle);
                Ok(())
            }
            Phase::Running { done_blocks, total_blocks, .. } => {
                Err(Sense::sanitize_in_progress(progress(done_blocks, total_blocks)))
            }
            Phase::Idle => Ok(()),
        }
    }
}

/// `done / total` in 65536ths, as the progress indication field holds it.
fn progress(done: u64, total: u64) -> u16 {
    if total == 0 {
        return 0;
    }
    let p = u128::from(done.min(total)) * 65536 / u128::from(total);
    u16::try_from(p).unwrap_or(u16::MAX)
}

/// Commands that read or write user data, refused in sanitize failure mode.
fn accesses_medium(cmd: &Command) -> bool {
    matches!(
        cmd,
        Command::Read(_)
            | Command::Write(_)
            | Command::WriteAndVerify(..)
            | Command::Verify(..)
            | Command::OrWrite(_)
            | Command::CompareAndWrite(_)
            | Command::PreFetch(_)
            | Command::WriteSame(_)
            | Command::Unmap { .. }
    )
}

/// True when BLOCK ERASE can be executed honestly on a volume of geometry `g` configured
/// with `enabled` (see `LunConfig::block_erase`): every block can be deallocated and a
/// deallocated block reads as zeros.
#[must_use]
pub fn block_erase_supported(g: &VolumeGeometry, enabled: bool) -> bool {
    enabled && g.thin_provisioned && g.unmapped_reads_zero
}

/// Holds a job to `bytes_per_s`: after `done_bytes`, waits until the time they are due.
struct Pace {
    start: Instant,
    bytes_per_s: Option<u64>,
}

impl Pace {
    async fn after(&self, done_bytes: u64) {
        let Some(rate) = self.bytes_per_s.filter(|r| *r > 0) else {
            yield_now().await;
            return;
        };
        let due = Duration::from_secs_f64(done_bytes as f64 / rate as f64);
        match due.checked_sub(self.start.elapsed()) {
            Some(wait) if !wait.is_zero() => drivers::executor::sleep(wait).await,
            _ => yield_now().await,
        }
    }
}

/// Runs one sanitize operation to its end, updating `state`; the volume is flushed before
/// the operation counts as done.
async fn run_job(
    volume: Arc<dyn BlockVolume>,
    state: Arc<SanitizeState>,
    method: Method,
    bytes_per_s: Option<u64>,
) -> Result<(), Sense> {
    let pace = Pace { start: Instant::now(), bytes_per_s };
    let res = match method {
        Method::Overwrite { block, invert, passes } => {
            overwrite(&*volume, &state, &pace, &block, invert, passes).await
        }
        Method::BlockErase => block_erase(&*volume, &state).await,
    };
    let res = match res {
        Ok(()) => volume.flush().await.map_err(|_| ()),
        Err(()) => Err(()),
    };
    state.finish(res.is_ok());
    res.map_err(|()| Sense::sanitize_failed())
}

async fn overwrite(
    volume: &dyn BlockVolume,
    state: &SanitizeState,
    pace: &Pace,
    block: &[u8],
    invert: bool,
    passes: u8,
) -> Result<(), ()> {
    let g = volume.geometry();
    let bs = block.len();
    let piece = limits::piece_blocks(g.logical_block_bytes).min(g.capacity_blocks.max(1));
    let piece_bytes = usize::try_from(piece).map_err(|_| ())? * bs;
    let mut buf = IoBuf::zeroed(piece_bytes);
    let mut written_bytes = 0u64;
    for pass in 0..passes {
        let flip = if pass_inverted(invert, pass, passes) { 0xFF } else { 0x00 };
        buf.set_len(piece_bytes);
        for chunk in buf.chunks_mut(bs) {
            for (d, s) in chunk.iter_mut().zip(block) {
                *d = s ^ flip;
            }
        }
        let mut lba = 0;
        while lba < g.capacity_blocks {
            let n = piece.min(g.capacity_blocks - lba);
            buf.set_len(usize::try_from(n).map_err(|_| ())? * bs);
            let (res, back) = volume.write(Lba::new(lba), buf, false).await;
            buf = back;
            res.map_err(|_| ())?;
            lba += n;
            state.advance(n);
            written_bytes += n * bs as u64;
            pace.after(written_bytes).await;
        }
    }
    Ok(())
}

async fn block_erase(volume: &dyn BlockVolume, state: &SanitizeState) -> Result<(), ()> {
    let g = volume.geometry();
    let piece = limits::piece_blocks(g.logical_block_bytes);
    let mut lba = 0;
    while lba < g.capacity_blocks {
        let n = piece.min(g.capacity_blocks - lba);
        volume.unmap(Lba::new(lba), BlockCount::new(n)).await.map_err(|_| ())?;
        lba += n;
        state.advance(n);
        yield_now().await;
    }
    Ok(())
}

impl LogicalUnit {
    /// The checks of a SANITIZE CDB that depend on the LU: the OVERWRITE parameter list holds
    /// at most one block of pattern, and BLOCK ERASE needs a volume that can deallocate.
    pub(super) fn check_sanitize_cdb(&self, s: &SanitizeCdb) -> Result<(), Sense> {
        let g = self.geometry();
        match s.service_action {
            op::SA_SANITIZE_OVERWRITE
                if s.parameter_list_length
                    > g.logical_block_bytes + OVERWRITE_HEADER_BYTES as u32 =>
            {
                Err(Sense::invalid_field_in_cdb(7, None))
            }
            op::SA_SANITIZE_BLOCK_ERASE if !block_erase_supported(&g, self.config.block_erase) => {
                Err(Sense::invalid_field_in_cdb(1, Some(4)))
            }
            _ => Ok(()),
        }
    }

    /// SANITIZE: validates, starts the operation as a job of its own, and waits for it unless
    /// IMMED is set.
    pub(super) async fn sanitize(&self, s: SanitizeCdb, data: Option<&[u8]>) -> ScsiResult {
        self.check_sanitize_cdb(&s)?;
        let g = self.geometry();
        let method = match s.service_action {
            op::SA_SANITIZE_EXIT_FAILURE_MODE => {
                self.sanitize.exit_failure_mode()?;
                return Ok(None);
            }
            op::SA_SANITIZE_OVERWRITE => {
                parse_overwrite(data.unwrap_or(&[]), g.logical_block_bytes)?
            }
            op::SA_SANITIZE_BLOCK_ERASE => Method::BlockErase,
            _ => return Err(Sense::invalid_field_in_cdb(1, Some(4)).into()),
        };
        self.sanitize.start(method.total_blocks(g.capacity_blocks), s.ause)?;
        let res = match self.config.background {
            BackgroundWork::Reactor => {
                let rate = self.config.sanitize_bytes_per_s;
                let job =
                    run_job(Arc::clone(&self.volume), Arc::clone(&self.sanitize), method, rate);
                // Dropping the handle (IMMED, or this command aborted) detaches the job.
                let handle = drivers::executor::spawn(job);
                if s.immed {
                    return Ok(None);
                }
                handle.await
            }
            BackgroundWork::InCommand => {
                run_job(Arc::clone(&self.volume), Arc::clone(&self.sanitize), method, None).await
            }
        };
        res.map(|()| None).map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(byte0: u8, pattern_bytes: u16) -> Vec<u8> {
        let [hi, lo] = pattern_bytes.to_be_bytes();
        vec![byte0, 0, hi, lo]
    }

    #[test]
    fn overwrite_pattern_is_repeated_over_the_block() {
        let mut list = header(0x01, 3);
        list.extend_from_slice(&[1, 2, 3]);
        let Ok(Method::Overwrite { block, invert, passes }) = parse_overwrite(&list, 512) else {
            panic!("not an overwrite");
        };
        assert_eq!((invert, passes), (false, 1));
        assert_eq!(block.len(), 512);
        assert_eq!(&block[..7], &[1, 2, 3, 1, 2, 3, 1]);
        assert_eq!(block[511], 512u32.rem_euclid(3) as u8);
    }

    #[test]
    fn overwrite_list_errors_point_at_their_fields() {
        let mut zero_count = header(0x00, 4);
        zero_count.extend_from_slice(&[0; 4]);
        assert_eq!(
            parse_overwrite(&zero_count, 512),
            Err(Sense::invalid_field_in_parameter_list(0, Some(4)))
        );
        let mut test_field = header(0x21, 4);
        test_field.extend_from_slice(&[0; 4]);
        assert_eq!(
            parse_overwrite(&test_field, 512),
            Err(Sense::invalid_field_in_parameter_list(0, Some(6)))
        );
        for pattern_bytes in [0u16, 513] {
            let mut l = header(0x01, pattern_bytes);
            l.resize(4 + 512, 0);
            assert_eq!(
                parse_overwrite(&l, 512),
                Err(Sense::invalid_field_in_parameter_list(2, None)),
                "pattern length {pattern_bytes}"
            );
        }
        // The pattern length claims more than the list holds.
        let mut short = header(0x01, 8);
        short.extend_from_slice(&[0; 4]);
        assert_eq!(
            parse_overwrite(&short, 512),
            Err(Sense::invalid_field_in_parameter_list(2, None))
        );
    }

    #[test]
    fn invert_alternates_and_the_last_pass_writes_the_pattern() {
        let seq = |passes| (0..passes).map(|p| pass_inverted(true, p, passes)).collect::<Vec<_>>();
        assert_eq!(seq(1), [false]);
        assert_eq!(seq(2), [true, false]);
        assert_eq!(seq(3), [false, true, false]);
        assert!((0..4).all(|p| !pass_inverted(false, p, 4)));
    }

    #[test]
    fn progress_is_in_65536ths() {
        assert_eq!(progress(0, 10), 0);
        assert_eq!(progress(5, 10), 0x8000);
        assert_eq!(progress(10, 10), u16::MAX);
        assert_eq!(progress(1, 0), 0);
    }

    #[test]
    fn failure_modes_follow_ause() {
        let st = SanitizeState::default();
        st.start(10, false).expect("idle LU starts");
        assert_eq!(st.start(10, false), Err(Sense::sanitize_in_progress(0)));
        st.advance(5);
        assert_eq!(st.pollable_sense(), Some(Sense::sanitize_in_progress(0x8000)));
        st.finish(false);
        // Restricted completion mode: neither EXIT FAILURE MODE nor AUSE 1 leaves it.
        assert_eq!(st.exit_failure_mode(), Err(Sense::invalid_field_in_cdb(1, Some(4))));
        assert_eq!(st.start(10, true), Err(Sense::invalid_field_in_cdb(1, Some(5))));
        let read = Command::Read(super::super::cdb::BlockIo {
            lba: 0,
            blocks: 1,
            dpo: false,
            fua: false,
            cdb_bytes: 10,
        });
        assert_eq!(st.admit(&read), Err(Sense::sanitize_failed()));
        assert_eq!(st.admit(&Command::TestUnitReady), Ok(()));
        // A successful operation leaves it.
        st.start(10, false).expect("restricted mode accepts AUSE 0");
        st.finish(true);
        assert_eq!(st.admit(&read), Ok(()));
        // Unrestricted: EXIT FAILURE MODE leaves it.
        st.start(10, true).expect("idle LU starts");
        st.finish(false);
        assert_eq!(st.exit_failure_mode(), Ok(()));
        assert_eq!(st.admit(&read), Ok(()));
    }
}
