//! One pool, one owner (engine `owner.rs`): a second importer on this host is refused by the
//! devices' exclusive locks, one on another host by the owner record and its heartbeat, and a
//! forced import takes over only once the heartbeat has stopped.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use drivers::blockdev::uring::UringDevice;
use drivers::blockdev::BlockDevice;
use drivers::executor::{Reactor, ReactorConfig};
use engine::owner::OwnerClaim;
use engine::{CreateOptions, Pool, PoolError, PoolTunables};

const LINE_END: &str = "(use --force-import only if that host is down)";

fn reactor() -> Reactor {
    Reactor::new(&ReactorConfig::default()).expect("reactor")
}

/// `host` importing as process `pid`; `lock` false poses as another machine, which cannot see
/// this machine's locks.
fn claim(host: &str, pid: u32, lock: bool) -> OwnerClaim {
    OwnerClaim {
        program: "ferrited".into(),
        host_id: format!("machine-id-of-{host}"),
        host_name: host.into(),
        pid,
        force: false,
        lock_devices: lock,
        heartbeat_interval: Duration::from_millis(100),
    }
}

fn tunables(owner: OwnerClaim) -> PoolTunables {
    PoolTunables { owner: Some(owner), ..PoolTunables::default() }
}

/// A temporary directory and the path of the pool file in it (`tank0.img`, not created).
fn pool_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tank0.img");
    (dir, path)
}

fn open(path: &Path) -> Vec<Arc<dyn BlockDevice>> {
    vec![Arc::new(UringDevice::open(path).expect("open device"))]
}

async fn create(path: &Path, owner: OwnerClaim) -> Arc<Pool> {
    let dev: Arc<dyn BlockDevice> =
        Arc::new(UringDevice::create_file(path, 64 << 20).expect("create file"));
    let options = CreateOptions {
        name: "tank".into(),
        guid: Some(11),
        log_chain_bytes: 1 << 20,
        tunables: tunables(owner),
        ..CreateOptions::default()
    };
    Pool::create(vec![dev], None, options).await.expect("create pool")
}

/// Imports the pool at `path` as `owner`.
async fn import_as(path: &Path, owner: OwnerClaim) -> Result<Arc<Pool>, PoolError> {
    Pool::import(open(path), tunables(owner)).await
}

/// Imports the pool at `path` as `owner`, which must succeed (`why`), and exports it.
async fn import_then_export(path: &Path, owner: OwnerClaim, why: &str) {
    import_as(path, owner).await.expect(why).export().await.expect("export");
}

fn refusal(res: Result<Arc<Pool>, PoolError>) -> String {
    match res {
        Err(PoolError::InUse(line)) => line,
        Err(e) => panic!("expected the pool to be refused as in use, got {e}"),
        Ok(_) => panic!("a second importer was accepted"),
    }
}

#[test]
fn second_importer_on_this_host_is_refused_by_the_device_lock() {
    let (_dir, path) = pool_file();
    reactor().block_on(async {
        let me = std::process::id();
        let first = create(&path, claim("h1", me, true)).await;
        // Same host, a fresh open of the same file: the lock tells that the owner is alive.
        let line = refusal(import_as(&path, claim("h1", 4343, true)).await);
        assert!(
            line.starts_with(&format!(
                "pool tank is imported by ferrited pid {me} on host h1 since "
            )) && line.ends_with(LINE_END),
            "refusal line: {line}"
        );
        first.export().await.expect("export");
        // Exported: the record says so and the lock is gone.
        import_then_export(&path, claim("h1", 4343, true), "import after a clean export").await;
    });
}

#[test]
fn importer_on_another_host_is_refused_while_the_heartbeat_lives() {
    let (_dir, path) = pool_file();
    reactor().block_on(async {
        let first = create(&path, claim("h1", 4242, true)).await;
        let line = refusal(import_as(&path, claim("h2", 99, false)).await);
        assert!(
            line.starts_with("pool tank is imported by ferrited pid 4242 on host h1 since ")
                && line.ends_with(LINE_END),
            "refusal line: {line}"
        );
        let forced = OwnerClaim { force: true, ..claim("h2", 99, false) };
        let line = refusal(import_as(&path, forced).await);
        assert!(line.contains("heartbeat is advancing"), "forced import of a live pool: {line}");
        first.export().await.expect("export");
        import_then_export(
            &path,
            claim("h2", 99, false),
            "another host imports an exported pool without force",
        )
        .await;
    });
}

#[test]
fn forced_import_takes_over_once_the_heartbeat_has_stopped() {
    let (dir, path) = pool_file();
    let frozen = dir.path().join("frozen.img");
    reactor().block_on(async {
        let first = create(&path, claim("h1", 4242, true)).await;
        // A copy taken while h1 has the pool imported: its record stays "imported by h1" and
        // its heartbeat never moves again, as when h1 loses power.
        std::fs::copy(&path, &frozen).expect("copy");
        first.export().await.expect("export");
        let line = refusal(import_as(&frozen, claim("h2", 99, false)).await);
        assert!(line.ends_with(LINE_END), "stale owner without --force-import: {line}");
        let forced = OwnerClaim { force: true, ..claim("h2", 99, false) };
        let pool =
            import_as(&frozen, forced).await.expect("forced import once the heartbeat stopped");
        // The new owner's record is now the newest: h1 coming back is refused.
        let line = refusal(import_as(&frozen, claim("h1", 4242, false)).await);
        assert!(line.contains("pid 99 on host h2"), "after the takeover: {line}");
        pool.export().await.expect("export");
    });
}

/// A pid that no process has now: a child that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().expect("spawn true");
    let pid = child.id();
    child.wait().expect("wait");
    pid
}

#[test]
fn a_dead_owners_lingering_lock_is_waited_for_and_a_live_owners_is_not() {
    let (dir, path) = pool_file();
    reactor().block_on(async {
        create(&path, claim("h1", 4242, true)).await.export().await.expect("export");
        for (owner_pid, live) in [(dead_pid(), false), (std::process::id(), true)] {
            // A pool left imported by `owner_pid` on this host (a copy taken while imported),
            // whose device claim another open still holds for a second, as a killed owner's
            // in-flight requests hold its files for a moment after it is gone.
            let frozen = dir.path().join(format!("frozen-{owner_pid}.img"));
            let pool = import_as(&path, claim("h1", owner_pid, false))
                .await
                .expect("import without locks");
            std::fs::copy(&path, &frozen).expect("copy");
            pool.export().await.expect("export");
            let holder: Arc<dyn BlockDevice> =
                Arc::new(UringDevice::open(&frozen).expect("open device"));
            assert!(holder.claim_exclusive().expect("claim"), "the holder takes the claim");
            let release = drivers::executor::spawn(async move {
                drivers::executor::sleep(Duration::from_secs(1)).await;
                holder.release_exclusive();
            });
            let start = std::time::Instant::now();
            let res = import_as(&frozen, claim("h1", 555, true)).await;
            let waited = start.elapsed();
            release.await;
            if live {
                let line = refusal(res);
                assert!(line.contains(&format!("pid {owner_pid} on host h1")), "{line}");
                assert!(waited < Duration::from_secs(1), "a live owner's claim was waited for");
            } else {
                let pool = res.expect("the dead owner's claim is released and the pool taken over");
                assert!(waited >= Duration::from_millis(900), "taken over after {waited:?}");
                pool.export().await.expect("export");
            }
        }
    });
}
