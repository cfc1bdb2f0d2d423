//! Malformed PDUs on one connection while another session does verified I/O: each bad
//! connection gets the answer its case names — a Reject PDU, or the connection closed —
//! within the hostile connection's 5 s read timeout (a target that ignores the PDU and keeps
//! the connection open fails); the good session sees no error and no changed data.

mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use target_iscsi::initiator::{Initiator, LoginOptions};
use target_iscsi::pdu::{Bhs, ScsiCommand, TaskAttribute};

const IQN: &str = "iqn.2026-11.io.ferrite:robust";

/// Two shards, one memory LUN.
fn config() -> String {
    common::config("shards = 2", "", IQN, &common::memory_lun(0, "64M"))
}

fn opts(isid: u8) -> LoginOptions {
    let mut o = LoginOptions::new("iqn.2026-11.io.ferrite:tester", IQN);
    o.isid = [0x80, 0, 0, 0, 0, isid];
    o.timeout = Duration::from_secs(10);
    o
}

/// A hostile connection's options: its read timeout bounds how long the target may take to
/// answer a malformed PDU.
fn hostile_opts(isid: u8) -> LoginOptions {
    let mut o = opts(isid);
    o.timeout = Duration::from_secs(5);
    o
}

/// What happened to a hostile connection.
#[derive(Debug, PartialEq, Eq)]
enum Fate {
    /// A Reject PDU came back.
    Rejected,
    /// The target closed the connection (end of stream or reset).
    Closed,
    /// Nothing came back within the read timeout and the connection stayed open.
    TimedOut,
    /// Another PDU (its opcode).
    Other(u8),
    /// Another socket error.
    Failed(std::io::ErrorKind),
}

fn fate(ini: &mut Initiator) -> Fate {
    use std::io::ErrorKind;
    match ini.recv_pdu() {
        Ok((bhs, _)) if bhs.bytes[0] & 0x3f == 0x3f => Fate::Rejected,
        Ok((bhs, _)) => Fate::Other(bhs.bytes[0] & 0x3f),
        Err(e) => match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => Fate::TimedOut,
            ErrorKind::UnexpectedEof
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted => Fate::Closed,
            other => Fate::Failed(other),
        },
    }
}

fn write_command(ini: &Initiator, cmd_sn: u32, expected_transfer: u32, dsl: u32) -> Bhs {
    let mut cdb = [0u8; 16];
    cdb[0] = 0x8a; // WRITE(16) of expected_transfer/512 blocks at LBA 100000
    cdb[2..10].copy_from_slice(&100_000u64.to_be_bytes());
    cdb[10..14].copy_from_slice(&(expected_transfer / 512).to_be_bytes());
    ScsiCommand {
        immediate: false,
        final_bit: true,
        read: false,
        write: true,
        attr: TaskAttribute::Simple,
        lun: 0,
        itt: 0x7000,
        expected_data_transfer_length: expected_transfer,
        cmd_sn,
        exp_stat_sn: ini.exp_stat_sn(),
        cdb,
        total_ahs_length_words: 0,
        data_segment_length: dsl,
    }
    .encode()
}

/// Each case: its name, the outcome it must have, and the outcome it had.
fn hostile(addr: SocketAddr) -> Vec<(&'static str, Fate, Fate)> {
    let mut out = Vec::new();

    let mut ini = Initiator::login(addr, &hostile_opts(2)).expect("login");
    let mut bhs = Bhs::default();
    bhs.bytes[0] = 0x1e; // reserved initiator opcode
    bhs.bytes[1] = 0x80;
    ini.send_pdu(&bhs, &[]).expect("send");
    out.push(("bad opcode is rejected", Fate::Rejected, fate(&mut ini)));

    let mut ini = Initiator::login(addr, &hostile_opts(3)).expect("login");
    let mut bhs = write_command(&ini, ini.cmd_sn(), 4096, 0);
    bhs.set_lengths(0, 0x00ff_ffff); // data segment far beyond MaxRecvDataSegmentLength
    ini.send_raw(&bhs.bytes).expect("send");
    out.push(("bad data segment length is rejected", Fate::Rejected, fate(&mut ini)));
    // The stream cannot be resynchronised after a length past the limit.
    out.push(("bad data segment length then closes the connection", Fate::Closed, fate(&mut ini)));

    let mut ini = Initiator::login(addr, &hostile_opts(4)).expect("login");
    let bhs = write_command(&ini, ini.cmd_sn(), 4096, 8192); // immediate data past the transfer
    ini.send_pdu(&bhs, &vec![0xab; 8192]).expect("send");
    out.push(("data past the expected transfer is rejected", Fate::Rejected, fate(&mut ini)));

    let mut ini = Initiator::login(addr, &hostile_opts(5)).expect("login");
    let bhs = write_command(&ini, ini.cmd_sn().wrapping_add(1000), 512, 512);
    ini.send_pdu(&bhs, &[0u8; 512]).expect("send");
    out.push(("CmdSN outside the window is rejected", Fate::Rejected, fate(&mut ini)));

    let mut o = hostile_opts(6);
    o.digests = true;
    let mut ini = Initiator::login(addr, &o).expect("login with digests");
    assert!(ini.digests(), "target must accept CRC32C digests");
    let bhs = write_command(&ini, ini.cmd_sn(), 512, 0);
    let mut raw = bhs.bytes.to_vec();
    raw.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]); // wrong header digest
    ini.send_raw(&raw).expect("send");
    out.push(("bad header digest closes the connection", Fate::Closed, fate(&mut ini)));

    let mut ini = Initiator::login(addr, &hostile_opts(7)).expect("login");
    let mut bhs = write_command(&ini, ini.cmd_sn(), 512, 0);
    bhs.bytes[1] = 0x20 | 0x40; // W and R without F and a reserved attribute mix
    bhs.bytes[1] |= 0x07;
    ini.send_pdu(&bhs, &[]).expect("send");
    out.push(("invalid flags are rejected", Fate::Rejected, fate(&mut ini)));

    // A truncated header followed by a close must not disturb anything.
    let mut ini = Initiator::login(addr, &hostile_opts(8)).expect("login");
    ini.send_raw(&[0x01, 0x80, 0, 0]).expect("send");
    drop(ini);
    out
}

#[test]
fn malformed_pdus_are_rejected_without_disturbing_other_sessions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = common::Daemon::start(dir.path(), &config(), &[]);
    let addr = daemon.portal;
    let stop = Arc::new(AtomicBool::new(false));
    let stop_good = Arc::clone(&stop);
    let good = std::thread::spawn(move || {
        let mut ini = Initiator::login(addr, &opts(1)).expect("good login");
        let mut rounds = 0u64;
        while !stop_good.load(Ordering::SeqCst) || rounds < 20 {
            let lba = (rounds % 64) * 16;
            let data: Vec<u8> = (0..16 * 512).map(|i| (i as u64 ^ lba ^ rounds) as u8).collect();
            let w = ini.write16(0, lba, 512, &data, false).expect("good write");
            assert_eq!(w.status, 0, "good session write failed: {w:?}");
            let r = ini.read16(0, lba, 512, 16).expect("good read");
            assert_eq!(r.status, 0, "good session read failed");
            assert_eq!(r.data, data, "good session read back other data at LBA {lba}");
            rounds += 1;
        }
        ini.logout().expect("logout");
        rounds
    });
    let fates = hostile(addr);
    stop.store(true, Ordering::SeqCst);
    let rounds = good.join().expect("good session thread");
    println!("good session: {rounds} verified write/read rounds");
    for (case, _, got) in &fates {
        println!("{case}: {got:?}");
    }
    for (case, want, got) in &fates {
        assert_eq!(got, want, "{case}: got {got:?}, want {want:?}");
    }
    // The daemon is still healthy: a new session works.
    let mut ini = Initiator::login(addr, &opts(9)).expect("login after the attacks");
    let r = ini.read16(0, 0, 512, 1).expect("read");
    assert_eq!(r.status, 0);
    let mut sink = Vec::new();
    let _ = (&[] as &[u8]).read_to_end(&mut sink);
    assert!(daemon.stop(), "ferrited must exit cleanly on SIGTERM");
}
