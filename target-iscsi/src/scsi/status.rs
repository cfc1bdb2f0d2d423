//! What a command returns to the transport: [`ScsiStatus`], [`CommandResult`], and the
//! pre-flight [`Prepared`] answer; plus [`ScsiError`], how command handlers fail.

use drivers::buffer::{IoBuf, SharedBuf};

use super::sense::Sense;

/// SCSI STATUS codes (SAM-5 table 30) the command layer produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ScsiStatus {
    /// The command completed.
    Good = 0x00,
    /// The command failed; sense data says why.
    CheckCondition = 0x02,
    /// PRE-FETCH: the blocks fit in the cache.
    ConditionMet = 0x04,
    /// The logical unit is busy; retry later.
    Busy = 0x08,
    /// Another I_T nexus holds a conflicting reservation.
    ReservationConflict = 0x18,
    /// The task set is full.
    TaskSetFull = 0x28,
}

/// The outcome of one command.
///
/// `data_in` is the whole Data-In the command produced, already cut to the CDB's ALLOCATION
/// LENGTH; the transport sends at most the initiator's expected data transfer length of it
/// and reports the difference as a residual.
#[derive(Debug)]
pub struct CommandResult {
    /// SCSI status.
    pub status: ScsiStatus,
    /// Encoded sense data (fixed or descriptor format) with CHECK CONDITION.
    pub sense: Option<Vec<u8>>,
    /// Data-In, when the command transfers any.
    pub data_in: Option<DataIn>,
}

/// A command's Data-In: shared segments sent in order as they are (cache buffers, dirty
/// blocks, read buffers, zeros), never assembled into one buffer.
#[derive(Debug, Clone, Default)]
pub struct DataIn {
    /// The segments, in order.
    pub segments: Vec<SharedBuf>,
}

impl DataIn {
    /// Total length.
    #[must_use]
    pub fn len(&self) -> usize {
        self.segments.iter().map(|s| s.len()).sum()
    }

    /// True when there is no byte to send.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of every byte, in order (tests and diagnostics only).
    #[must_use]
    pub fn to_vec(&self) -> Vec<u8> {
        self.segments.iter().flat_map(|s| s.iter().copied()).collect()
    }
}

impl From<IoBuf> for DataIn {
    fn from(buf: IoBuf) -> DataIn {
        DataIn { segments: vec![SharedBuf::new(buf)] }
    }
}

impl CommandResult {
    /// GOOD with optional Data-In.
    #[must_use]
    pub fn good(data_in: Option<IoBuf>) -> CommandResult {
        CommandResult { status: ScsiStatus::Good, sense: None, data_in: data_in.map(DataIn::from) }
    }

    /// GOOD with Data-In made of shared segments.
    #[must_use]
    pub fn good_segments(data_in: DataIn) -> CommandResult {
        CommandResult { status: ScsiStatus::Good, sense: None, data_in: Some(data_in) }
    }

    /// CHECK CONDITION with `sense` encoded in the chosen format.
    #[must_use]
    pub fn check_condition(sense: &Sense, descriptor_format: bool) -> CommandResult {
        CommandResult {
            status: ScsiStatus::CheckCondition,
            sense: Some(sense.encode(descriptor_format)),
            data_in: None,
        }
    }

    /// A status without sense or data (RESERVATION CONFLICT, BUSY, TASK SET FULL).
    #[must_use]
    pub fn status(status: ScsiStatus) -> CommandResult {
        CommandResult { status, sense: None, data_in: None }
    }
}

/// Direction of the command's data transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataDirection {
    /// No data.
    None,
    /// Target to initiator.
    In,
    /// Initiator to target.
    Out,
}

/// What a command needs before it can run (answer of `LogicalUnit::prepare`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prepared {
    /// Direction of the data transfer.
    pub direction: DataDirection,
    /// Data-Out bytes the command consumes (the SCSI-layer's SPDTL); 0 unless `Out`.
    pub data_out_bytes: u64,
}

/// How a command handler fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScsiError {
    /// CHECK CONDITION with this sense.
    Check(Sense),
    /// RESERVATION CONFLICT.
    ReservationConflict,
    /// BUSY.
    Busy,
}

impl From<Sense> for ScsiError {
    fn from(sense: Sense) -> ScsiError {
        ScsiError::Check(sense)
    }
}

/// Result of a command handler: Data-In (if any) or the failure.
pub type ScsiResult<T = Option<IoBuf>> = Result<T, ScsiError>;

/// Copies `data` into an [`IoBuf`] cut to `allocation_length` bytes.
#[must_use]
pub fn data_in(data: &[u8], allocation_length: usize) -> Option<IoBuf> {
    let n = data.len().min(allocation_length);
    Some(IoBuf::from_slice(&data[..n]))
}
