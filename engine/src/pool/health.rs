//! The health of a pool's devices: the vdev tree with each device's state and error counters,
//! for `pool status` (the READ, WRITE and CKSUM columns).

use std::sync::atomic::Ordering;

use crate::label::DeviceRole;
use crate::vdev::{ChildState, Leaf, Vdev};

use super::Pool;

/// One device of the pool, as `pool status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceHealth {
    /// The device's name (its path for a file or block device).
    pub name: String,
    /// `ONLINE` or `FAULTED`.
    pub state: &'static str,
    /// Reads that failed.
    pub read_errors: u64,
    /// Writes that failed.
    pub write_errors: u64,
    /// Copies read from the device that failed their checksum.
    pub checksum_errors: u64,
    /// Bytes rewritten on the device from redundancy.
    pub repaired_bytes: u64,
}

/// One top-level vdev of the pool: a device on its own, or a redundancy group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupHealth {
    /// `disk`, `mirror`, or the RAID-Z level.
    pub kind: String,
    /// `data` or `log`.
    pub role: &'static str,
    /// `ONLINE`, or `DEGRADED` for a mirror with a device FAULTED (the group still holds
    /// every block: a mirror never faults its last device).
    pub state: &'static str,
    /// Its devices, in configuration order.
    pub devices: Vec<DeviceHealth>,
}

fn device(leaf: &Leaf, state: ChildState) -> DeviceHealth {
    let e = leaf.errors();
    DeviceHealth {
        name: leaf.device().info().name.clone(),
        state: match state {
            ChildState::Online => "ONLINE",
            ChildState::Faulted => "FAULTED",
        },
        read_errors: e.read.load(Ordering::Relaxed),
        write_errors: e.write.load(Ordering::Relaxed),
        checksum_errors: e.checksum.load(Ordering::Relaxed),
        repaired_bytes: e.repaired_bytes.load(Ordering::Relaxed),
    }
}

fn group(vdev: &Vdev) -> (String, &'static str, Vec<DeviceHealth>) {
    match vdev {
        Vdev::Leaf(leaf) => ("disk".into(), "ONLINE", vec![device(leaf, ChildState::Online)]),
        Vdev::Mirror(m) => {
            let devices: Vec<DeviceHealth> =
                m.leaves().iter().zip(m.child_states()).map(|(l, s)| device(l, s)).collect();
            let state = if m.is_degraded() { "DEGRADED" } else { "ONLINE" };
            ("mirror".into(), state, devices)
        }
        // A RAID-Z group has no per-child state yet: a failed column write is an error.
        Vdev::RaidZ(z) => (
            format!("raidz{}", z.geometry().parity),
            "ONLINE",
            z.leaves().iter().map(|l| device(l, ChildState::Online)).collect(),
        ),
    }
}

impl Pool {
    /// Zeroes every device's read, write and checksum error counts (`pool clear`, once the
    /// cause is dealt with); returns how many errors they held. The pool's own counters
    /// (metrics) keep counting.
    pub fn clear_device_errors(&self) -> u64 {
        self.devs.leaves().map(|leaf| leaf.errors().clear()).sum()
    }

    /// Every top-level vdev of the pool with its devices' states and error counters, in
    /// configuration order.
    #[must_use]
    pub fn device_health(&self) -> Vec<GroupHealth> {
        let mut first_leaf = 0;
        let mut groups = Vec::new();
        for vdev in
            (0..self.devs.len()).filter_map(|i| self.devs.child(u16::try_from(i).ok()?).ok())
        {
            // The labels list the leaves in tree order; a group's role is its first leaf's.
            let log = self
                .device_configs
                .get(first_leaf)
                .is_some_and(|c| c.role == DeviceRole::Log as u32);
            first_leaf += vdev.leaves().len();
            let (kind, state, devices) = group(vdev);
            groups.push(GroupHealth {
                kind,
                role: if log { "log" } else { "data" },
                state,
                devices,
            });
        }
        groups
    }
}
