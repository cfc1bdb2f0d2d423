//! What a [`FaultDevice`] is told to do: the operation kinds, the fault rules (trigger and
//! fault), the latency, and the device's settings.

use std::time::Duration;

#[cfg(doc)]
use super::FaultDevice;
#[cfg(doc)]
use crate::blockdev::BlockDevice;
#[cfg(doc)]
use crate::error::IoError;

/// The kind of a block operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OpKind {
    /// [`BlockDevice::read`].
    Read,
    /// [`BlockDevice::write`].
    Write,
    /// [`BlockDevice::flush`].
    Flush,
    /// [`BlockDevice::discard`].
    Discard,
    /// [`BlockDevice::write_zeroes`].
    WriteZeroes,
}

impl OpKind {
    pub(super) const COUNT: usize = 5;

    pub(super) fn index(self) -> usize {
        self as usize
    }
}

/// When a rule fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// On every operation of the rule's kind.
    Always,
    /// On the `n`th operation of the rule's kind (1-based, counted since the device was made).
    Nth(u64),
    /// On each operation of the rule's kind with this probability (parts per million).
    Probability {
        /// Chance per operation, out of 1 000 000.
        per_million: u32,
    },
    /// On operations whose byte range overlaps `[offset_bytes, offset_bytes + len_bytes)`.
    Overlaps {
        /// Start of the range.
        offset_bytes: u64,
        /// Length of the range.
        len_bytes: u64,
    },
}

/// What a rule does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The operation fails with [`IoError::Injected`] and has no effect.
    Error,
    /// One bit is flipped: in the data returned by a read, or in the data a write stores (the
    /// caller's buffer is left intact). `offset_bytes` is a device offset (the flip happens
    /// only when the request covers it); `None` picks a byte of the request from the seed.
    /// `bit` is 0..=7; `None` picks one from the seed.
    FlipBit {
        /// Device byte offset to corrupt, or a seeded choice inside the request.
        offset_bytes: Option<u64>,
        /// Bit of that byte, or a seeded choice.
        bit: Option<u8>,
    },
    /// Writes only: a seeded prefix of whole tear units (possibly none) lands, the rest does
    /// not. With `silent` the write reports success (a lost tail only checksums can catch);
    /// otherwise it fails with [`IoError::Injected`].
    TornWrite {
        /// Report success despite the lost tail.
        silent: bool,
    },
}

/// One fault-injection rule: on operations of kind `op` matching `trigger`, inject `fault`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRule {
    /// Operation kind the rule watches.
    pub op: OpKind,
    /// When it fires.
    pub trigger: Trigger,
    /// What it does.
    pub fault: Fault,
}

impl FaultRule {
    /// Shorthand for a rule.
    #[must_use]
    pub fn new(op: OpKind, trigger: Trigger, fault: Fault) -> FaultRule {
        FaultRule { op, trigger, fault }
    }
}

/// Delay added before every operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Latency {
    /// No delay.
    #[default]
    None,
    /// Yield to the shard's other tasks this many times (deterministic interleaving).
    Yields(u32),
    /// Yield a seeded number of times in `0..=max`.
    RandomYields {
        /// Upper bound of the yield count.
        max: u32,
    },
    /// Sleep on the reactor's timer (wall-clock; not deterministic in interleaving).
    Sleep(Duration),
}

/// Settings of a [`FaultDevice`].
#[derive(Debug, Clone)]
pub struct FaultConfig {
    /// Seed of every random decision.
    pub seed: u64,
    /// Rules, evaluated in order on every operation.
    pub rules: Vec<FaultRule>,
    /// Delay before every operation.
    pub latency: Latency,
    /// Granularity of torn writes and power-cut tears; `None` means the inner device's
    /// logical block size. Must be a multiple of it.
    pub tear_unit_bytes: Option<u32>,
    /// Bound on the unflushed log; older entries are destaged beyond it.
    pub max_unflushed_ops: usize,
    /// The device makes a single [`BlockDevice::write_durable`] durable by itself (as a
    /// `RWF_DSYNC` or FUA write does) instead of writing and flushing.
    pub durable_writes: bool,
}

impl FaultConfig {
    /// A device that is gone: every read and write fails (while the rules are armed).
    #[must_use]
    pub fn gone() -> FaultConfig {
        let rules = vec![
            FaultRule::new(OpKind::Read, Trigger::Always, Fault::Error),
            FaultRule::new(OpKind::Write, Trigger::Always, Fault::Error),
        ];
        FaultConfig { rules, ..FaultConfig::default() }
    }
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            seed: 0,
            rules: Vec::new(),
            latency: Latency::None,
            tear_unit_bytes: None,
            max_unflushed_ops: 4096,
            durable_writes: false,
        }
    }
}
