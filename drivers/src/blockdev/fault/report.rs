//! Power cuts and what a [`FaultDevice`] reports: how a cut resolves the unflushed log, the
//! fate of each unflushed operation, and the counters of what the device injected.

use super::OpKind;
#[cfg(doc)]
use super::{Fault, FaultConfig, FaultDevice};

/// What a power cut does to the writes not yet covered by a completed flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerCutMode {
    /// Every unflushed operation is lost.
    DropAll,
    /// Each unflushed operation is independently kept, lost, or torn (a prefix of whole tear
    /// units lands), as the seed dictates.
    TearRandom,
    /// Every unflushed operation survives.
    KeepAll,
}

/// The fate of one unflushed operation at a power cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Reached the durable image entirely.
    Kept,
    /// Lost entirely.
    Dropped,
    /// Only the first `kept_bytes` (a whole number of tear units, neither 0 nor all) landed.
    Torn {
        /// Length of the prefix that landed.
        kept_bytes: u64,
    },
}

/// One unflushed operation and what the power cut did to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnflushedOutcome {
    /// Write, Discard or WriteZeroes.
    pub op: OpKind,
    /// Where it started.
    pub offset_bytes: u64,
    /// Its length.
    pub len_bytes: u64,
    /// What happened to it.
    pub fate: Fate,
}

/// Result of a power cut: one outcome per unflushed operation, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PowerCutReport {
    /// Outcomes in submission order.
    pub outcomes: Vec<UnflushedOutcome>,
}

/// Counters of what the device injected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Operations seen, per [`OpKind`] (indexed in declaration order).
    pub ops: [u64; OpKind::COUNT],
    /// Operations failed by a [`Fault::Error`] rule.
    pub errors_injected: u64,
    /// Bits flipped on read or write.
    pub bit_flips: u64,
    /// Writes torn by a [`Fault::TornWrite`] rule.
    pub torn_writes: u64,
    /// Operations refused because the power was cut.
    pub refused_after_cut: u64,
    /// Power cuts.
    pub power_cuts: u64,
    /// Unflushed operations kept / lost / torn by power cuts (durable writes that had
    /// completed are not counted: they are durable).
    pub cut_kept: u64,
    /// See `cut_kept`.
    pub cut_dropped: u64,
    /// See `cut_kept`.
    pub cut_torn: u64,
    /// Log entries moved to the durable image by flushes or by the log bound.
    pub destaged: u64,
    /// Durable writes ([`FaultConfig::durable_writes`]) that completed.
    pub durable_writes: u64,
}

impl FaultStats {
    /// Operations of `kind` seen so far.
    #[must_use]
    pub fn ops_of(&self, kind: OpKind) -> u64 {
        self.ops[kind.index()]
    }
}
