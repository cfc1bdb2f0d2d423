//! PERSISTENT RESERVE IN/OUT (SPC-4 6.15, 6.16) and SPC-2 RESERVE/RELEASE on a logical unit:
//! runs the state machine of `reservation.rs`, persists APTPL state, raises the unit
//! attentions it decides.

use super::logical_unit::{lock, write_json, LogicalUnit};
use super::nexus::ItNexus;
use super::sense::Sense;
use super::status::{data_in, ScsiResult};

impl LogicalUnit {
    /// PERSISTENT RESERVE IN.
    pub(super) fn persistent_reserve_in(
        &self,
        service_action: u8,
        allocation_length: u32,
    ) -> ScsiResult {
        let d = lock(&self.reservations)
            .persistent_reserve_in(service_action, self.config.pr_state_path.is_some())?;
        Ok(data_in(&d, allocation_length as usize))
    }

    /// PERSISTENT RESERVE OUT.
    pub(super) fn persistent_reserve_out(
        &self,
        nexus: &ItNexus,
        service_action: u8,
        scope: u8,
        pr_type: u8,
        list: &[u8],
    ) -> ScsiResult {
        let notices = {
            let mut r = lock(&self.reservations);
            let notices = r.persistent_reserve_out(
                nexus,
                service_action,
                scope,
                pr_type,
                list,
                self.config.pr_state_path.is_some(),
            )?;
            self.update_reserved(&r);
            if let Some(path) = &self.config.pr_state_path {
                let res = if r.pr.aptpl {
                    write_json(path, &r.pr)
                } else {
                    match std::fs::remove_file(path) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                        _ => Ok(()),
                    }
                };
                res.map_err(|_| Sense::internal_target_failure())?;
            }
            notices
        };
        for n in notices {
            self.raise_unit_attention_where(Some(nexus.nexus_id), n.sense, |k| n.to.covers(k));
        }
        Ok(None)
    }

    /// RESERVE (6)/(10).
    pub(super) fn reserve_spc2(&self, nexus: &ItNexus) -> ScsiResult {
        let mut r = lock(&self.reservations);
        r.reserve_spc2(nexus)?;
        self.update_reserved(&r);
        Ok(None)
    }

    /// RELEASE (6)/(10).
    pub(super) fn release_spc2(&self, nexus: &ItNexus) -> ScsiResult {
        let mut r = lock(&self.reservations);
        r.release_spc2(nexus)?;
        self.update_reserved(&r);
        Ok(None)
    }
}
