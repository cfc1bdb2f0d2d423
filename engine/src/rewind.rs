//! Choosing the uberblock a pool is opened from, and saying so when it is not the newest.
//!
//! Import (and ferrite-inspect) try the valid uberblocks newest first and open the first whose
//! metadata loads. Passing over a newer one rewinds the pool: what the newer txgs committed
//! (writes, snapshot and volume destroys, ...) is gone, except what the intent log replays.
//! That is never silent: [`RewindReport`] names every txg passed over and the object that
//! failed in it, and the txg opened.

use std::fmt;

use crate::error::{PoolError, PoolResult};
use crate::label::DeviceConfig;
use crate::pool::{read_uberblocks, Loaded, Pool};
use crate::uberblock::Uberblock;
use crate::vdev::Stripe;

/// A txg whose uberblock verified but whose metadata did not load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedTxg {
    /// The txg.
    pub txg: u64,
    /// Why it did not load (names the object that failed, and where it lies).
    pub reason: String,
}

/// The pool was opened from an older txg than the newest uberblock on its devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewindReport {
    /// Txg opened.
    pub imported_txg: u64,
    /// Newer txgs passed over, newest first.
    pub rejected: Vec<RejectedTxg>,
}

impl RewindReport {
    /// Newest txg found on the devices (the first one rejected).
    #[must_use]
    pub fn newest_txg(&self) -> u64 {
        self.rejected.first().map_or(self.imported_txg, |r| r.txg)
    }
}

impl fmt::Display for RewindReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rewound to txg {}, losing what txgs {}..={} committed (except intent-log records): ",
            self.imported_txg,
            self.imported_txg + 1,
            self.newest_txg()
        )?;
        for (i, r) in self.rejected.iter().enumerate() {
            let sep = if i == 0 { "" } else { "; " };
            write!(f, "{sep}txg {} rejected: {}", r.txg, r.reason)?;
        }
        Ok(())
    }
}

/// The state of the newest uberblock whose metadata loads, and the newer ones passed over.
pub(crate) struct Chosen {
    pub(crate) ub: Uberblock,
    pub(crate) loaded: Loaded,
    pub(crate) rejected: Vec<RejectedTxg>,
}

impl Chosen {
    /// `None` when the newest uberblock was opened.
    pub(crate) fn rewind_report(&self) -> Option<RewindReport> {
        (!self.rejected.is_empty())
            .then(|| RewindReport { imported_txg: self.ub.txg, rejected: self.rejected.clone() })
    }
}

/// Loads the newest uberblock of the pool whose metadata loads.
///
/// # Errors
/// [`PoolError::IncompatibleVersion`] at once; when no uberblock loads, the error of the
/// newest one (with the count of the others that failed).
pub(crate) async fn load_newest(
    devs: &Stripe,
    configs: &[DeviceConfig],
    guid: u64,
) -> PoolResult<Chosen> {
    let ubs = read_uberblocks(devs, configs, guid).await?;
    let mut rejected = Vec::new();
    let mut newest_err = None;
    for ub in ubs {
        match Pool::load(devs, configs, &ub).await {
            Ok(loaded) => return Ok(Chosen { ub, loaded, rejected }),
            Err(e @ PoolError::IncompatibleVersion { .. }) => return Err(e),
            Err(e) => {
                rejected.push(RejectedTxg { txg: ub.txg, reason: e.to_string() });
                newest_err.get_or_insert(e);
            }
        }
    }
    Err(match newest_err {
        Some(PoolError::Corrupt(why)) if rejected.len() > 1 => PoolError::Corrupt(format!(
            "{why} (txg {}; the {} older uberblocks failed too)",
            rejected[0].txg,
            rejected.len() - 1
        )),
        Some(e) => e,
        None => PoolError::NotAPool("no valid uberblock".into()),
    })
}
