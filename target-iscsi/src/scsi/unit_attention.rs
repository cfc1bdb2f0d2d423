//! Unit attention conditions queued per I_T nexus (SAM-5 5.14, SPC-4 5.6 and 7.4).
//!
//! The LU keeps the set of nexuses it has seen so it can raise a condition for "every other
//! nexus" (MODE PARAMETERS CHANGED) or for the nexuses of some registrations (RESERVATIONS
//! PREEMPTED). Each queue is bounded; a repeated condition is queued once.

use std::collections::{HashMap, VecDeque};

use super::nexus::{ItNexus, NexusKey};
use super::sense::Sense;

/// Most conditions queued for one nexus; the oldest is dropped beyond it.
pub const MAX_PENDING_PER_NEXUS: usize = 16;
/// Most nexuses tracked per LU.
pub const MAX_NEXUSES: usize = 4096;

/// Pending unit attentions of one LU.
#[derive(Debug, Default)]
pub struct UnitAttentions {
    known: HashMap<u64, NexusKey>,
    pending: HashMap<u64, VecDeque<Sense>>,
}

impl UnitAttentions {
    /// Records `nexus`; returns true the first time it is seen.
    pub fn see(&mut self, nexus: &ItNexus) -> bool {
        if self.known.contains_key(&nexus.nexus_id) {
            return false;
        }
        if self.known.len() >= MAX_NEXUSES {
            return false;
        }
        self.known.insert(nexus.nexus_id, NexusKey::of(nexus));
        true
    }

    /// Forgets a nexus whose session ended, with its pending conditions.
    pub fn forget(&mut self, nexus_id: u64) {
        self.known.remove(&nexus_id);
        self.pending.remove(&nexus_id);
    }

    /// Queues `sense` for nexus `nexus_id`.
    pub fn push(&mut self, nexus_id: u64, sense: Sense) {
        let q = self.pending.entry(nexus_id).or_default();
        if q.contains(&sense) {
            return;
        }
        if q.len() >= MAX_PENDING_PER_NEXUS {
            q.pop_front();
        }
        q.push_back(sense);
    }

    /// Queues `sense` for every known nexus except `except`.
    pub fn push_all_except(&mut self, except: Option<u64>, sense: Sense) {
        let ids: Vec<u64> = self.known.keys().copied().filter(|id| Some(*id) != except).collect();
        for id in ids {
            self.push(id, sense);
        }
    }

    /// Queues `sense` for every known nexus whose identity satisfies `select`, except `except`.
    pub fn push_where(
        &mut self,
        except: Option<u64>,
        sense: Sense,
        select: impl Fn(&NexusKey) -> bool,
    ) {
        let ids: Vec<u64> = self
            .known
            .iter()
            .filter(|(id, key)| Some(**id) != except && select(key))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.push(id, sense);
        }
    }

    /// Takes the oldest condition pending for `nexus_id`.
    pub fn pop(&mut self, nexus_id: u64) -> Option<Sense> {
        let q = self.pending.get_mut(&nexus_id)?;
        let s = q.pop_front();
        if q.is_empty() {
            self.pending.remove(&nexus_id);
        }
        s
    }

    /// Drops pending conditions of `nexus_id` with this ASC/ASCQ (REPORT LUNS clears
    /// REPORTED LUNS DATA HAS CHANGED).
    pub fn clear_matching(&mut self, nexus_id: u64, asc: u8, ascq: u8) {
        if let Some(q) = self.pending.get_mut(&nexus_id) {
            q.retain(|s| (s.asc, s.ascq) != (asc, ascq));
            if q.is_empty() {
                self.pending.remove(&nexus_id);
            }
        }
    }

    /// True when any nexus has a condition pending.
    #[must_use]
    pub fn any_pending(&self) -> bool {
        !self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nexus(id: u64) -> ItNexus {
        ItNexus::new(id, "iqn.init", [0, 0, 0, 0, 0, id as u8], "iqn.tgt", 1)
    }

    #[test]
    fn queue_is_fifo_deduplicated_and_bounded() {
        let mut ua = UnitAttentions::default();
        assert!(ua.see(&nexus(1)));
        assert!(!ua.see(&nexus(1)));
        ua.push(1, Sense::ua_power_on_reset());
        ua.push(1, Sense::ua_power_on_reset());
        ua.push(1, Sense::ua_mode_parameters_changed());
        assert_eq!(ua.pop(1), Some(Sense::ua_power_on_reset()));
        assert_eq!(ua.pop(1), Some(Sense::ua_mode_parameters_changed()));
        assert_eq!(ua.pop(1), None);
        assert!(!ua.any_pending());
        for i in 0..100u8 {
            ua.push(1, Sense::new(super::super::sense::SenseKey::UnitAttention, 0x2A, i));
        }
        let mut n = 0;
        while ua.pop(1).is_some() {
            n += 1;
        }
        assert_eq!(n, MAX_PENDING_PER_NEXUS);
    }

    #[test]
    fn push_all_except_skips_origin_and_forget_drops() {
        let mut ua = UnitAttentions::default();
        ua.see(&nexus(1));
        ua.see(&nexus(2));
        ua.push_all_except(Some(1), Sense::ua_mode_parameters_changed());
        assert_eq!(ua.pop(1), None);
        assert_eq!(ua.pop(2), Some(Sense::ua_mode_parameters_changed()));
        ua.push(2, Sense::ua_capacity_changed());
        ua.forget(2);
        assert!(!ua.any_pending());
    }
}
