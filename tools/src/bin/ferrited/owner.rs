//! Who ferrited says it is when it claims a pool (engine `owner.rs`): this process on this
//! host, with `--force-import` when given.

use engine::owner::OwnerClaim;

/// Test-only: poses as another host of this name, which cannot see this host's device locks
/// (docs/operations.md §One owner per pool), so that the owner record's heartbeat check can
/// be exercised on one machine.
pub const TEST_HOST_ENV: &str = "FERRITE_TEST_HOST_ID";

/// The claim this daemon makes on every pool it imports or creates.
pub fn claim(force: bool) -> OwnerClaim {
    let mut claim = OwnerClaim::this_process("ferrited");
    claim.force = force;
    if let Some(host) = std::env::var_os(TEST_HOST_ENV).and_then(|h| h.into_string().ok()) {
        log::warn!(
            "{TEST_HOST_ENV}={host}: posing as host {host}, without device locks (tests only)"
        );
        claim.host_id = format!("test-host:{host}");
        claim.host_name = host;
        claim.lock_devices = false;
    }
    claim
}
