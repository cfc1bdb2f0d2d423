//! Replacing a logical unit's medium under logged-in initiators (a snapshot rollback of the
//! volume behind it), treated as a LOGICAL UNIT RESET the device server performs on its own
//! initiative (SAM-5 6.3.2): no command straddles the change, and every I_T nexus is told.
//!
//! [`LogicalUnit::begin_medium_change`] fences the LU (new commands get BUSY, which hosts
//! retry) and waits for the commands in flight to finish against the old contents: a command
//! cannot be cancelled once the volume has it, so the LU drains them instead of aborting them,
//! and none completes after the change. [`LogicalUnit::end_medium_change`] releases an SPC-2
//! reservation (as a LOGICAL UNIT RESET does; persistent reservations stay), raises the unit
//! attention on every nexus, and only then lifts the fence, so the first command of every
//! nexus after the change fails with it. The LU caches no blocks; the pool's read cache names
//! blocks by location and birth txg, so nothing cached can serve the old contents.

use std::time::{Duration, Instant};

use super::logical_unit::{lock, LogicalUnit};
use super::sense::Sense;

/// Why a medium change could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediumChangeError {
    /// Another change of this LU is under way.
    InProgress,
    /// A sanitize operation is running on the LU (it would keep writing the old layout).
    Sanitizing,
    /// Commands were still in flight when the wait ran out (the fence is lifted again).
    Busy { in_flight: u32 },
}

impl std::fmt::Display for MediumChangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MediumChangeError::InProgress => write!(f, "another rollback of it is under way"),
            MediumChangeError::Sanitizing => write!(f, "a SANITIZE operation is running on it"),
            MediumChangeError::Busy { in_flight } => {
                write!(f, "{in_flight} commands were still in flight after the wait")
            }
        }
    }
}

impl std::error::Error for MediumChangeError {}

/// The unit attention a medium change establishes: POWER ON, RESET, OR BUS DEVICE RESET
/// OCCURRED (29h/00h). SPC-4 has no code for "the device server replaced the medium's
/// contents" on a non-removable LU: 28h/00h (NOT READY TO READY CHANGE, MEDIUM MAY HAVE
/// CHANGED) belongs to removable media (we report RMB=0, and hosts act on it only for
/// removable devices), 2Ah/09h to a capacity change and 3Fh/0Eh to the LUN inventory. The
/// change is carried out as a LOGICAL UNIT RESET that no task management function asked for
/// (whose own code, 29h/03h, would tell the initiator it reset the LU itself), and 29h/00h is
/// the reset every host handles by assuming its cached state of the LU is gone.
#[must_use]
pub const fn medium_change_sense() -> Sense {
    Sense::ua_power_on_reset()
}

impl LogicalUnit {
    /// Fences the LU and waits up to `wait` for the commands in flight to finish.
    ///
    /// # Errors
    /// [`MediumChangeError`]; the fence is lifted again unless another change holds it.
    pub async fn begin_medium_change(&self, wait: Duration) -> Result<(), MediumChangeError> {
        if !self.quiesce.fence() {
            return Err(MediumChangeError::InProgress);
        }
        if self.sanitize.running() {
            self.quiesce.unfence();
            return Err(MediumChangeError::Sanitizing);
        }
        let deadline = Instant::now() + wait;
        loop {
            let in_flight = self.quiesce.in_flight();
            if in_flight == 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.quiesce.unfence();
                return Err(MediumChangeError::Busy { in_flight });
            }
            drivers::executor::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Ends a change begun with [`LogicalUnit::begin_medium_change`]. `changed`: the contents
    /// may have changed (then the reset takes effect: SPC-2 reservation released, unit
    /// attention on every nexus); false when the change failed before it touched anything.
    pub fn end_medium_change(&self, changed: bool) {
        if changed {
            {
                let mut r = lock(&self.reservations);
                r.spc2_holder = None;
                self.update_reserved(&r);
            }
            self.raise_unit_attention(None, medium_change_sense());
        }
        self.quiesce.unfence();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::cdb::opcode as op;
    use super::super::status::ScsiStatus;
    use super::super::tests::{block_on, cdb10, check, good, lu, lu_and_two_nexuses, nexus, run};

    const TUR: [u8; 6] = [0; 6];

    #[test]
    fn medium_change_fences_then_raises_reset_on_every_nexus() {
        let (lu, a, b) = lu_and_two_nexuses();
        good(&run(&lu, &a, &TUR, None));
        good(&run(&lu, &b, &TUR, None));
        good(&run(&lu, &a, &[op::RESERVE_6, 0, 0, 0, 0, 0], None));

        block_on(lu.begin_medium_change(Duration::from_secs(1))).expect("no command in flight");
        assert_eq!(
            block_on(lu.begin_medium_change(Duration::ZERO)),
            Err(super::MediumChangeError::InProgress)
        );
        assert_eq!(run(&lu, &b, &TUR, None).status, ScsiStatus::Busy, "fenced");
        lu.end_medium_change(true);

        // Every nexus: POWER ON, RESET, OR BUS DEVICE RESET OCCURRED once, on any command.
        check(&run(&lu, &a, &TUR, None), 0x06, 0x29, 0x00);
        check(&run(&lu, &b, &cdb10(op::READ_10, 0, 1), None), 0x06, 0x29, 0x00);
        good(&run(&lu, &a, &TUR, None));
        // The SPC-2 reservation of nexus 1 was released: nexus 2 writes.
        good(&run(&lu, &b, &cdb10(op::WRITE_10, 0, 1), Some(&[7u8; 512])));
    }

    #[test]
    fn medium_change_that_changed_nothing_raises_nothing() {
        let lu = lu(512, 512);
        let a = nexus(1);
        good(&run(&lu, &a, &TUR, None));
        block_on(lu.begin_medium_change(Duration::from_secs(1))).expect("no command in flight");
        lu.end_medium_change(false);
        good(&run(&lu, &a, &TUR, None));
    }

    #[test]
    fn medium_change_waits_for_commands_in_flight_and_gives_up_unfenced() {
        let lu = lu(512, 512);
        let a = nexus(1);
        let in_flight = lu.quiesce.enter().expect("not fenced");
        assert_eq!(
            block_on(lu.begin_medium_change(Duration::ZERO)),
            Err(super::MediumChangeError::Busy { in_flight: 1 })
        );
        good(&run(&lu, &a, &TUR, None));
        drop(in_flight);
        block_on(lu.begin_medium_change(Duration::ZERO)).expect("drained");
        lu.end_medium_change(false);
    }
}
