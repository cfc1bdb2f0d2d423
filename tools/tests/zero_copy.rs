//! The zero-copy data path, measured (DESIGN §3): 4 KiB and 128 KiB reads and writes over
//! iSCSI to a pool volume copy no payload byte with compression off — not on receive, into the
//! dirty blocks, at the txg sync, from the cache or a device read, nor on send — while a
//! sub-block write counts exactly its read-modify-write merge, and with compression on the sync
//! and a device read count exactly their compression work. The report must name every path,
//! and the iSCSI counters must count the copies those paths do make (ping data in and out,
//! COMPARE AND WRITE's write half), so their zeros are measured. The counters are ferrited's
//! own, read through the `stats_copies_get` RPC.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use serde_json::json;
use target_iscsi::initiator::{Initiator, LoginOptions};

const IQN: &str = "iqn.2026-11.io.ferrite:zerocopy";
/// LUN 0 a volume of 4 KiB blocks (`tank/plain`), LUN 1 one of 64 KiB blocks (`tank/packed`).
fn luns() -> String {
    common::volume_lun(0, "tank/plain", "64M")
        + &common::lun(1, "volume", "64M", "volume = \"tank/packed\"\nvolblock_size = \"64K\"\n")
}

/// Every path the counters cover: a report missing one would leave it out of the checks.
const PATHS: [&str; 8] = [
    "iscsi_receive",
    "iscsi_send",
    "volume_write",
    "volume_read",
    "sync_write",
    "log_write",
    "compression",
    "dedup",
];

/// Bytes copied and I/Os per path, by name; the report must hold exactly [`PATHS`].
fn copies(socket: &Path) -> HashMap<String, (u64, u64)> {
    let v = common::rpc(socket, "stats_copies_get", &json!({}));
    let out: HashMap<String, (u64, u64)> = v["paths"]
        .as_array()
        .expect("paths")
        .iter()
        .map(|p| {
            let name = p["path"].as_str().expect("name").to_string();
            (name, (p["bytes_copied"].as_u64().expect("bytes"), p["ios"].as_u64().expect("ios")))
        })
        .collect();
    let mut names: Vec<&str> = out.keys().map(String::as_str).collect();
    let mut want = PATHS.to_vec();
    names.sort_unstable();
    want.sort_unstable();
    assert_eq!(names, want, "stats_copies_get must report every copy path once: {v}");
    out
}

fn delta(
    after: &HashMap<String, (u64, u64)>,
    before: &HashMap<String, (u64, u64)>,
    path: &str,
) -> (u64, u64) {
    let a = after[path];
    let b = before.get(path).copied().unwrap_or((0, 0));
    (a.0 - b.0, a.1 - b.1)
}

/// Data that never reads as zeros: a 64-byte phrase per 4 KiB block, each block's different.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 64) as u8 ^ seed ^ (i >> 12) as u8 | 0x80).collect()
}

fn write_read(ini: &mut Initiator, lun: u64, lba: u64, data: &[u8]) {
    let w = ini.write16(lun, lba, 512, data, false).expect("write");
    assert_eq!(w.status, 0, "write sense {:02x?}", w.sense);
    let blocks = u32::try_from(data.len() / 512).expect("blocks");
    let r = ini.read16(lun, lba, 512, blocks).expect("read");
    assert_eq!(r.status, 0, "read sense {:02x?}", r.sense);
    assert!(r.data == data, "read back differs at LBA {lba}");
}

fn read_check(ini: &mut Initiator, lun: u64, lba: u64, data: &[u8]) {
    let blocks = u32::try_from(data.len() / 512).expect("blocks");
    let r = ini.read16(lun, lba, 512, blocks).expect("read");
    assert_eq!(r.status, 0, "read sense {:02x?}", r.sense);
    assert!(r.data == data, "read back differs at LBA {lba}");
}

#[test]
fn four_k_and_128k_reads_and_writes_copy_no_payload_byte_a_merge_and_compression_count_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon =
        common::Daemon::start(dir.path(), &common::pool_config("tank.img", IQN, &luns()), &[]);
    let socket = dir.path().join("data/ferrited.sock");
    common::rpc(
        &socket,
        "volume_set",
        &json!({"name": "tank/plain", "properties": {"compression": "off"}}),
    );

    let mut opts = LoginOptions::new("iqn.2026-11.io.ferrite:zc-test", IQN);
    opts.timeout = Duration::from_secs(20);
    // Data digests are computed over the segments as they are sent; a response without data
    // carries no data digest.
    opts.digests = true;
    let mut ini = Initiator::login(daemon.portal, &opts).expect("login");

    // Compression off: writes land in dirty blocks, reads come from dirty blocks, then the
    // sync writes them, then reads come from the device (a miss) and the cache (a hit).
    let small = pattern(4096, 1);
    let large = pattern(128 * 1024, 2);
    let before = copies(&socket);
    write_read(&mut ini, 0, 0, &small);
    write_read(&mut ini, 0, 1024, &large);
    assert_eq!(ini.synchronize_cache(0).expect("sync").status, 0);
    for _ in 0..2 {
        read_check(&mut ini, 0, 0, &small);
        read_check(&mut ini, 0, 1024, &large);
    }
    let after = copies(&socket);
    for (path, (bytes, _)) in &after {
        let (d_bytes, _) = delta(&after, &before, path);
        assert_eq!(d_bytes, 0, "{path} copied {d_bytes} payload bytes (total {bytes})");
    }
    let ios = |p: &str| delta(&after, &before, p).1;
    println!(
        "compression off: iscsi_receive {} ios, iscsi_send {}, volume_write {}, volume_read {}, \
         sync_write {}, all with 0 bytes copied",
        ios("iscsi_receive"),
        ios("iscsi_send"),
        ios("volume_write"),
        ios("volume_read"),
        ios("sync_write")
    );
    assert!(ios("iscsi_receive") >= 2 && ios("volume_write") >= 2, "the writes were counted");
    assert!(ios("iscsi_send") >= 6 && ios("volume_read") >= 6, "the reads were counted");
    assert!(ios("sync_write") >= 1, "the sync wrote the blocks");

    // A 512-byte write into a written 4 KiB block is a read-modify-write: it copies the old
    // block and its own 512 bytes, exactly.
    let before = copies(&socket);
    let sector = pattern(512, 3);
    write_read(&mut ini, 0, 2, &sector);
    let after = copies(&socket);
    assert_eq!(delta(&after, &before, "volume_write").0, 4096 + 512);
    assert_eq!(delta(&after, &before, "volume_read").0, 0);

    // Compression on (64 KiB blocks, where LZ4 can save whole sectors): the sync compresses
    // each block into a buffer of its own and a read from the device decompresses it; both
    // are counted on the compression path, and nothing else copies.
    common::rpc(
        &socket,
        "volume_set",
        &json!({"name": "tank/packed", "properties": {"compression": "lz4"}}),
    );
    let packed = pattern(128 * 1024, 4);
    let before = copies(&socket);
    write_read(&mut ini, 1, 0, &packed);
    assert_eq!(ini.synchronize_cache(1).expect("sync").status, 0);
    let synced = copies(&socket);
    let compressed = delta(&synced, &before, "compression").0;
    assert!(
        compressed > 0 && compressed < 128 * 1024,
        "the sync stored {compressed} compressed bytes for 128 KiB of repetitive data"
    );
    read_check(&mut ini, 1, 0, &packed);
    let first_read = copies(&socket);
    assert_eq!(delta(&first_read, &synced, "compression").0, 128 * 1024, "device read");
    read_check(&mut ini, 1, 0, &packed);
    let second_read = copies(&socket);
    assert_eq!(delta(&second_read, &first_read, "compression").0, 0, "cache hit");
    for path in second_read.keys() {
        if path != "compression" {
            assert_eq!(delta(&second_read, &before, path).0, 0, "{path} copied payload bytes");
        }
    }
    println!("compression on: {compressed} bytes compressed at sync, 131072 decompressed on read");

    // The iSCSI counters see the copies those paths do make, so their zeros above mean
    // something: a NOP-Out's ping data is copied when it arrives and again into the NOP-In
    // that echoes it; COMPARE AND WRITE copies its write half out of the Data-Out buffer.
    let before = copies(&socket);
    let ping = pattern(4096, 5);
    assert!(ini.ping(&ping).expect("ping") == ping, "the NOP-In echoes the ping data");
    let pinged = copies(&socket);
    assert_eq!(delta(&pinged, &before, "iscsi_receive").0, 4096, "ping data received");
    assert_eq!(delta(&pinged, &before, "iscsi_send").0, 4096, "ping data echoed");
    let mut caw = [0u8; 16];
    caw[0] = 0x89; // COMPARE AND WRITE of one block at LBA 2, which holds `sector`
    caw[2..10].copy_from_slice(&2u64.to_be_bytes());
    caw[13] = 1;
    let mut compare_and_write = sector.clone();
    compare_and_write.extend_from_slice(&pattern(512, 6));
    let r = ini.command(0, &caw, Some(&compare_and_write), 0).expect("compare and write");
    assert_eq!(r.status, 0, "compare and write sense {:02x?}", r.sense);
    let compared = copies(&socket);
    assert_eq!(delta(&compared, &pinged, "iscsi_receive").0, 512, "the write half is copied");
    assert_eq!(delta(&compared, &pinged, "iscsi_send").0, 0, "GOOD status carries no data");

    ini.logout().expect("logout");
    assert!(daemon.stop());
}
