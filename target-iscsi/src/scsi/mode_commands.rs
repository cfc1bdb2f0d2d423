//! MODE SENSE and MODE SELECT (6)/(10) (SPC-4 6.11-6.14) on a logical unit: applies the
//! write-cache and sense-format switches, saves pages, raises MODE PARAMETERS CHANGED.

use super::cdb::{ModeSelectCdb, ModeSenseCdb};
use super::logical_unit::{lock, write_json, LogicalUnit};
use super::mode::DeviceInfo;
use super::nexus::ItNexus;
use super::sense::Sense;
use super::status::{data_in, ScsiResult};

impl LogicalUnit {
    fn device_info(&self) -> DeviceInfo {
        let g = self.geometry();
        DeviceInfo {
            block_bytes: g.logical_block_bytes,
            capacity_blocks: g.capacity_blocks,
            write_protected: self.write_protected(),
        }
    }

    /// MODE SENSE (6)/(10).
    pub(super) fn mode_sense(&self, cdb: &ModeSenseCdb) -> ScsiResult {
        let dev = self.device_info();
        let mut mode = lock(&self.mode);
        // WCE mirrors the volume, which may have been switched by someone else.
        mode.current.set_write_cache(self.volume.write_cache());
        let d = mode.sense(cdb, dev)?;
        Ok(data_in(&d, cdb.allocation_length as usize))
    }

    /// MODE SELECT (6)/(10).
    pub(super) fn mode_select(
        &self,
        nexus: &ItNexus,
        cdb: &ModeSelectCdb,
        list: &[u8],
    ) -> ScsiResult {
        let (changed, current, saved) = {
            let mut mode = lock(&self.mode);
            mode.current.set_write_cache(self.volume.write_cache());
            let changed = mode.select(cdb, list, self.block_bytes())?;
            (changed, mode.current.clone(), mode.saved.clone())
        };
        self.volume.set_write_cache(current.write_cache());
        self.update_mode_flags(&current);
        if cdb.sp {
            if let (Some(path), Some(saved)) = (&self.config.mode_state_path, &saved) {
                write_json(path, saved).map_err(|_| Sense::internal_target_failure())?;
            }
        }
        if changed {
            self.raise_unit_attention(Some(nexus.nexus_id), Sense::ua_mode_parameters_changed());
        }
        Ok(None)
    }
}
