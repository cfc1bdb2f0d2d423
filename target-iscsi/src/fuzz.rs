//! Entry points of the cargo-fuzz targets in `target-iscsi/fuzz` (except `cdb_parse`, in
//! [`crate::scsi::fuzz`]), and the generator of their seed corpora.
//!
//! They live in the library so that `cargo test` replays the committed seeds and regression
//! inputs deterministically, without libFuzzer (`fuzz::tests::committed_inputs_replay`).
//!
//! - [`pdu_parse`]: BHS, AHS and digest parsers; what parses re-encodes to the same.
//! - [`login_text`]: the text parser, then the login state machine fed the text in pieces.
//! - [`login_sequence`]: the login state machine driven by a stream of Login Request PDUs as
//!   they arrive on the wire (BHS, then the padded data segment), against an open target, a
//!   CHAP target with an ACL, and discovery.
//! - [`connection()`]: the full-feature phase of one connection ([`connection::full_feature_phase`]
//!   with its writer) over a socketpair on a local epoll reactor, against a 512-byte-block
//!   in-memory LUN. The input is the byte stream the initiator sends after login: SCSI
//!   commands with immediate data, Data-Out, NOP-Out, task management, text and logout PDUs,
//!   in any order. The login phase is not run (the session is established directly), so digests
//!   are off and the negotiated parameters come from byte 0 of the input.

use std::cell::RefCell;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use drivers::error::IoError;
use drivers::executor::{self, BackendChoice, Reactor, ReactorConfig};
use engine::fuzz::specimen;
pub use engine::fuzz::Specimen;
use engine::memory_volume::MemoryVolume;

use crate::chap::{ChapCredentials, ChapSecret};
use crate::connection;
use crate::digest::{verify_data_digest, verify_header_digest};
use crate::ffp::{ConnEnd, Established, FfpParams, Keepalive};
use crate::login::{Login, LoginConfig, LoginOutcome, SessionKind, TargetConfig};
use crate::negotiation::LOGIN_MAX_RECV_DATA_SEGMENT_LENGTH;
use crate::pdu::{
    padded_len, Ahs, Bhs, Cdb, InitiatorPdu, Isid, LoginRequest, LogoutReason, LogoutRequest,
    NopOut, ScsiCommand, ScsiDataOut, Stage, TargetPdu, TaskAttribute, TaskMgmtRequest,
    TextRequest, TmfFunction, BHS_LEN, RESERVED_TAG,
};
use crate::scsi::nexus::ItNexus;
use crate::scsi::{LogicalUnit, LunConfig, ScsiTarget};
use crate::server::{Server, TargetNode};
use crate::text::{parse_binary, parse_number, parse_pairs};
use crate::transport::tcp::TcpTransport;
use crate::writer::{self, Digests};

/// The target's name without CHAP.
pub const OPEN_TARGET: &str = "iqn.2024-01.org.ferrite:open";
/// The target's name with CHAP (mutual) and an ACL.
pub const SECURE_TARGET: &str = "iqn.2024-01.org.ferrite:secure";
/// The initiator the ACL admits.
pub const INITIATOR: &str = "iqn.2024-01.org.example:host";

fn login_config() -> LoginConfig {
    LoginConfig {
        targets: vec![
            TargetConfig::open(OPEN_TARGET, Some("open"), 1),
            TargetConfig {
                acl: Some(vec![INITIATOR.into()]),
                chap: Some(ChapCredentials {
                    initiator: ChapSecret {
                        username: "u".into(),
                        secret: b"secret-one-12".to_vec(),
                    },
                    mutual: Some(ChapSecret {
                        username: "t".into(),
                        secret: b"secret-two-12".to_vec(),
                    }),
                }),
                ..TargetConfig::open(SECURE_TARGET, None, 1)
            },
        ],
        ..LoginConfig::default()
    }
}

/// PDU parsers: BHS (initiator and target opcodes), AHS and digests. Anything that parses must
/// re-encode to a header that parses the same.
pub fn pdu_parse(data: &[u8]) {
    let Some(bhs) = Bhs::from_slice(data) else {
        return;
    };
    let rest = &data[BHS_LEN..];
    // The limit the target declared, taken from the input so every bound is exercised.
    let limit = rest
        .get(..4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(8192, |b| u32::from_be_bytes(b) & 0x00ff_ffff);
    if let Ok(pdu) = InitiatorPdu::parse(&bhs, limit) {
        assert_eq!(InitiatorPdu::parse(&pdu.encode(), limit), Ok(pdu));
        if let InitiatorPdu::ScsiCommand(cmd) = pdu {
            let ahs_len = usize::from(cmd.total_ahs_length_words) * 4;
            if let Some(ahs_bytes) = rest.get(..ahs_len) {
                if let Ok(ahs) = Ahs::parse(ahs_bytes) {
                    let cdb = Cdb::assemble(&cmd.cdb, ahs.extended_cdb);
                    assert!(cdb.as_bytes().len() >= 16);
                }
            }
        }
    }
    if let Ok(pdu) = TargetPdu::parse(&bhs) {
        assert_eq!(TargetPdu::parse(&pdu.encode()), Ok(pdu));
    }
    let _ = Ahs::parse(rest);
    if let Some(digest) = rest.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()) {
        let _ = verify_header_digest(&bhs.bytes, digest);
        let _ = verify_data_digest(&rest[4..], digest);
    }
}

/// The login text parser, then the login state machine fed the text split into up to four
/// Login Request PDUs (byte 0 chooses stages, T and C bits).
pub fn login_text(data: &[u8]) {
    if let Ok(pairs) = parse_pairs(data) {
        for kv in &pairs {
            let _ = parse_number(kv.value);
            let _ = parse_binary(kv.value);
        }
    }
    let Some((&control, text)) = data.split_first() else {
        return;
    };
    let config = login_config();
    let mut login = Login::new();
    let pieces = text.len().div_ceil(4).max(1);
    for (i, chunk) in text.chunks(pieces).enumerate() {
        let bits = control.rotate_left(u32::try_from(i * 2).unwrap_or(0));
        let csg = if bits & 1 == 0 {
            Stage::SecurityNegotiation
        } else {
            Stage::LoginOperationalNegotiation
        };
        let transit = bits & 2 != 0;
        let req = LoginRequest {
            transit,
            continue_bit: !transit && bits & 4 != 0,
            csg,
            nsg: transit.then_some(Stage::FullFeaturePhase),
            version_max: 0,
            version_min: 0,
            isid: Isid([0x40, 0, 0, 1, 0, 0]),
            tsih: u16::from(bits & 8 != 0),
            itt: 1,
            cid: 0,
            cmd_sn: 0,
            exp_stat_sn: 0,
            data_segment_length: u32::try_from(chunk.len()).unwrap_or(u32::MAX),
        };
        if !check_step(&config, &mut login, &req, chunk) {
            break;
        }
    }
}

/// One login step with the invariants every reply keeps. False once the login is over.
fn check_step(config: &LoginConfig, login: &mut Login, req: &LoginRequest, text: &[u8]) -> bool {
    let reply = login.step(config, req, text);
    assert!(reply.text.len() <= LOGIN_MAX_RECV_DATA_SEGMENT_LENGTH as usize);
    assert_eq!(reply.response.data_segment_length as usize, reply.text.len());
    match reply.outcome {
        LoginOutcome::Continue => true,
        LoginOutcome::Fail(status) => {
            assert_eq!(reply.response.status, status);
            assert!(reply.text.is_empty());
            false
        }
        LoginOutcome::FullFeature(result) => {
            assert!(!result.initiator_name.is_empty());
            if let SessionKind::Normal { target_index } = result.kind {
                let target = &config.targets[target_index];
                assert!(target.allows(&result.initiator_name));
                // The CHAP challenge is random: no input can answer it, so reaching full
                // feature phase on the CHAP target would be an authentication bypass.
                assert!(target.chap.is_none(), "CHAP target reached without authentication");
            }
            false
        }
    }
}

/// Login Request PDUs as they arrive on a connection: BHS, then the data segment padded to 4
/// bytes. Each one that parses is a step of one login, until it fails or completes.
pub fn login_sequence(data: &[u8]) {
    let config = login_config();
    let mut login = Login::new();
    let mut rest = data;
    for _ in 0..16 {
        let Some(bhs) = Bhs::from_slice(rest) else { return };
        rest = &rest[BHS_LEN..];
        let dsl = bhs.data_segment_length() as usize;
        let text = &rest[..dsl.min(rest.len())];
        rest = &rest[padded_len(dsl).min(rest.len())..];
        let Ok(req) = LoginRequest::parse(&bhs, LOGIN_MAX_RECV_DATA_SEGMENT_LENGTH) else {
            return;
        };
        assert!(req.data_segment_length <= LOGIN_MAX_RECV_DATA_SEGMENT_LENGTH);
        if !check_step(&config, &mut login, &req, text) {
            return;
        }
    }
}

struct Harness {
    reactor: Reactor,
    server: Arc<Server>,
}

thread_local! {
    static HARNESS: RefCell<Option<Harness>> = const { RefCell::new(None) };
}

fn harness() -> Harness {
    let reactor = Reactor::new(&ReactorConfig {
        backend: BackendChoice::Epoll,
        buffer_count: 16,
        buffer_bytes: 64 * 1024,
        blocking_threads: 1,
        ..ReactorConfig::default()
    })
    .expect("epoll reactor");
    let volume = Arc::new(MemoryVolume::new(512, 4096, 256));
    let mut lun = LunConfig::new(OPEN_TARGET, 0);
    // Sanitize runs inside its command: nothing outlives one input.
    lun.background = crate::scsi::config::BackgroundWork::InCommand;
    let unit = Arc::new(LogicalUnit::new(lun, volume).expect("logical unit"));
    let node = Arc::new(TargetNode {
        name: OPEN_TARGET.into(),
        scsi: Arc::new(ScsiTarget::new(OPEN_TARGET, vec![(0, unit)])),
    });
    let server =
        Server::new(login_config(), vec![node], Vec::new(), Server::default_keepalive(), 1);
    Harness { reactor, server: Arc::new(server) }
}

fn socketpair() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: socketpair(2) writes two descriptors into `fds`, checked before use.
    let rc = unsafe {
        libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr())
    };
    assert_eq!(rc, 0, "socketpair: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors are fresh and owned by nobody else.
    let pair = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: fcntl(2) on our own descriptor.
    unsafe {
        let flags = libc::fcntl(pair.0.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(pair.0.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    pair
}

/// Byte 0: bit 0 ImmediateData, bit 1 InitialR2T, bit 2 a discovery session (no target), bits
/// 3-4 MaxRecvDataSegmentLength (512 << n). The rest is what the initiator sends after login.
pub fn connection(data: &[u8]) {
    let Some((end, _)) = run_connection(data) else { return };
    // Whatever the initiator sends, the target never reads past its own buffers: that shows
    // as an invalid-argument error from the socket layer.
    assert!(
        !matches!(end, ConnEnd::Io(IoError::InvalidInput(_))),
        "the connection ended on its own invalid read: {end:?}"
    );
}

/// Runs one input through a connection: how it ended and how many bytes the target answered.
fn run_connection(data: &[u8]) -> Option<(ConnEnd, usize)> {
    let (&sel, stream) = data.split_first()?;
    let stream = stream.to_vec();
    HARNESS.with(|h| {
        let mut h = h.borrow_mut();
        let h = h.get_or_insert_with(harness);
        let (ours, theirs) = socketpair();
        // The initiator: sends the stream, half-closes, reads every answer until the target
        // closes.
        let initiator = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let mut sock = std::os::unix::net::UnixStream::from(theirs);
            let _ = sock.write_all(&stream);
            let _ = sock.shutdown(std::net::Shutdown::Write);
            let mut answers = Vec::new();
            let _ = sock.read_to_end(&mut answers);
            answers.len()
        });
        let target =
            (sel & 4 == 0).then(|| Arc::clone(h.server.target(OPEN_TARGET).expect("target")));
        let max_recv_data_segment_length = 512u32 << ((sel >> 3) & 3);
        let est = Established {
            params: FfpParams {
                initiator_max_recv_segment: max_recv_data_segment_length,
                target_max_recv_segment: max_recv_data_segment_length,
                first_burst_length: 4 * max_recv_data_segment_length,
                max_burst_length: 8 * max_recv_data_segment_length,
                max_outstanding_r2t: 1,
                immediate_data: sel & 1 != 0,
                initial_r2t: sel & 2 != 0,
                digests: Digests::default(),
            },
            target: target.clone(),
            nexus: ItNexus::new(
                h.server.next_nexus_id(),
                INITIATOR,
                [0x40, 0, 0, 0, 0, 1],
                if target.is_some() { OPEN_TARGET } else { "discovery" },
                1,
            ),
            tsih: 1,
            stat_sn: 1,
            exp_cmd_sn: 1,
            tpgt: 1,
        };
        if let Some(t) = &target {
            t.scsi.nexus_established(&est.nexus);
        }
        let server = Arc::clone(&h.server);
        let fd = ours.as_raw_fd();
        let end = h.reactor.block_on(async move {
            let transport = TcpTransport::new(fd);
            let (sender, writer_fut) = writer::writer(&transport);
            let writer_task = executor::spawn(writer_fut);
            let keepalive =
                Keepalive { interval: Duration::from_secs(60), timeout: Duration::from_secs(60) };
            let end =
                connection::full_feature_phase(transport, server, sender.clone(), est, keepalive)
                    .await;
            sender.close();
            let _ = executor::timeout_after(Duration::from_secs(5), writer_task).await;
            end
        });
        // SAFETY: shutdown(2) on our own socket, so the initiator thread sees the end.
        unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        drop(ours);
        let answered = initiator.join().unwrap_or(0);
        Some((end, answered))
    })
}

/// Appends `bhs` and its data segment, padded to 4 bytes.
fn pdu(out: &mut Vec<u8>, bhs: &Bhs, data: &[u8]) {
    out.extend_from_slice(&bhs.bytes);
    out.extend_from_slice(data);
    out.resize(out.len() + padded_len(data.len()) - data.len(), 0);
}

fn text(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(b'=');
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

fn login_pdu(out: &mut Vec<u8>, csg: Stage, nsg: Option<Stage>, cmd_sn: u32, data: &[u8]) {
    let req = LoginRequest {
        transit: nsg.is_some(),
        continue_bit: false,
        csg,
        nsg,
        version_max: 0,
        version_min: 0,
        isid: Isid([0x40, 0, 0, 0, 0, 1]),
        tsih: 0,
        itt: 1,
        cid: 0,
        cmd_sn,
        exp_stat_sn: 0,
        data_segment_length: u32::try_from(data.len()).expect("short text"),
    };
    pdu(out, &req.encode(), data);
}

fn operational() -> Vec<(&'static str, &'static str)> {
    vec![
        ("HeaderDigest", "None"),
        ("DataDigest", "None"),
        ("MaxRecvDataSegmentLength", "65536"),
        ("InitialR2T", "No"),
        ("ImmediateData", "Yes"),
        ("MaxBurstLength", "262144"),
        ("FirstBurstLength", "65536"),
        ("MaxConnections", "1"),
        ("ErrorRecoveryLevel", "0"),
    ]
}

fn login_seeds() -> Vec<Specimen> {
    use Stage::{FullFeaturePhase, LoginOperationalNegotiation as Op, SecurityNegotiation as Sec};
    let mut normal = Vec::new();
    let mut keys =
        vec![("InitiatorName", INITIATOR), ("TargetName", OPEN_TARGET), ("SessionType", "Normal")];
    keys.extend(operational());
    login_pdu(&mut normal, Op, Some(FullFeaturePhase), 0, &text(&keys));

    let mut security_first = Vec::new();
    let keys = [("InitiatorName", INITIATOR), ("TargetName", OPEN_TARGET), ("AuthMethod", "None")];
    login_pdu(&mut security_first, Sec, Some(Op), 0, &text(&keys));
    login_pdu(&mut security_first, Op, Some(FullFeaturePhase), 0, &text(&operational()));

    let mut chap = Vec::new();
    let keys = [
        ("InitiatorName", INITIATOR),
        ("TargetName", SECURE_TARGET),
        ("SessionType", "Normal"),
        ("AuthMethod", "CHAP,None"),
    ];
    login_pdu(&mut chap, Sec, None, 0, &text(&keys));
    login_pdu(&mut chap, Sec, None, 0, &text(&[("CHAP_A", "5,7")]));
    let response = [
        ("CHAP_N", "u"),
        ("CHAP_R", "0x00112233445566778899aabbccddeeff"),
        ("CHAP_I", "7"),
        ("CHAP_C", "0x0123456789abcdef0123456789abcdef"),
    ];
    login_pdu(&mut chap, Sec, Some(Op), 0, &text(&response));

    let mut discovery = Vec::new();
    let keys = [("InitiatorName", INITIATOR), ("SessionType", "Discovery"), ("AuthMethod", "None")];
    login_pdu(&mut discovery, Sec, Some(FullFeaturePhase), 0, &text(&keys));

    vec![
        specimen("login_sequence", "normal-operational-only", normal),
        specimen("login_sequence", "security-then-operational", security_first),
        specimen("login_sequence", "chap-mutual", chap),
        specimen("login_sequence", "discovery", discovery),
    ]
}

fn command(
    itt: u32,
    cmd_sn: u32,
    cdb: &[u8],
    expected_transfer: u32,
    write: bool,
    final_bit: bool,
    dsl: u32,
) -> Bhs {
    let mut c = [0u8; 16];
    c[..cdb.len()].copy_from_slice(cdb);
    ScsiCommand {
        immediate: false,
        final_bit,
        read: !write && expected_transfer > 0,
        write,
        attr: TaskAttribute::Simple,
        lun: 0,
        itt,
        expected_data_transfer_length: expected_transfer,
        cmd_sn,
        exp_stat_sn: 1,
        cdb: c,
        total_ahs_length_words: 0,
        data_segment_length: dsl,
    }
    .encode()
}

fn data_out(itt: u32, ttt: u32, offset: u32, len: u32, final_bit: bool) -> Bhs {
    ScsiDataOut {
        final_bit,
        lun: 0,
        itt,
        ttt,
        exp_stat_sn: 1,
        data_sn: 0,
        buffer_offset: offset,
        data_segment_length: len,
    }
    .encode()
}

fn logout(cmd_sn: u32) -> Bhs {
    LogoutRequest {
        immediate: true,
        reason: LogoutReason::CloseSession,
        itt: 99,
        cid: 0,
        cmd_sn,
        exp_stat_sn: 1,
    }
    .encode()
}

/// Selector: ImmediateData yes, InitialR2T no, normal session, MaxRecvDataSegmentLength 2048.
const SELECT: u8 = 0b1_0001;

fn connection_seeds() -> Vec<Specimen> {
    let write10 = [0x2a, 0, 0, 0, 0, 8, 0, 0, 2, 0];
    let read10 = [0x28, 0, 0, 0, 0, 8, 0, 0, 2, 0];
    let mut io = vec![SELECT];
    // TEST UNIT READY, INQUIRY, WRITE(10) with immediate data, READ(10) back.
    pdu(&mut io, &command(1, 1, &[0, 0, 0, 0, 0, 0], 0, false, true, 0), &[]);
    pdu(&mut io, &command(2, 2, &[0x12, 0, 0, 0, 96, 0], 96, false, true, 0), &[]);
    pdu(&mut io, &command(3, 3, &write10, 1024, true, true, 1024), &[0xab; 1024]);
    pdu(&mut io, &command(4, 4, &read10, 1024, false, true, 0), &[]);
    pdu(&mut io, &logout(5), &[]);

    let mut unsolicited = vec![SELECT];
    // WRITE(10) of two blocks: half as immediate data, half as unsolicited Data-Out.
    pdu(&mut unsolicited, &command(1, 1, &write10, 1024, true, false, 512), &[1; 512]);
    pdu(&mut unsolicited, &data_out(1, RESERVED_TAG, 512, 512, true), &[2; 512]);
    let nop = NopOut {
        immediate: true,
        lun: 0,
        itt: 7,
        ttt: RESERVED_TAG,
        cmd_sn: 2,
        exp_stat_sn: 1,
        data_segment_length: 4,
    };
    pdu(&mut unsolicited, &nop.encode(), b"ping");
    let tmf = TaskMgmtRequest {
        immediate: true,
        function: TmfFunction::AbortTask,
        lun: 0,
        itt: 8,
        referenced_task_tag: 1,
        cmd_sn: 2,
        exp_stat_sn: 1,
        ref_cmd_sn: 1,
        exp_data_sn: 0,
    };
    pdu(&mut unsolicited, &tmf.encode(), &[]);
    pdu(&mut unsolicited, &logout(2), &[]);

    let mut r2t = vec![SELECT | 2];
    // InitialR2T=Yes: the target solicits the data with an R2T (TTT 1, the first it hands out).
    pdu(&mut r2t, &command(1, 1, &write10, 1024, true, true, 0), &[]);
    pdu(&mut r2t, &data_out(1, 1, 0, 1024, true), &[3; 1024]);
    let send_targets = text(&[("SendTargets", "All")]);
    let text_req = TextRequest {
        immediate: false,
        final_bit: true,
        continue_bit: false,
        lun: 0,
        itt: 9,
        ttt: RESERVED_TAG,
        cmd_sn: 2,
        exp_stat_sn: 1,
        data_segment_length: u32::try_from(send_targets.len()).expect("short"),
    };
    pdu(&mut r2t, &text_req.encode(), &send_targets);

    vec![
        specimen("connection", "read-write-logout", io),
        specimen("connection", "unsolicited-nop-abort", unsolicited),
        specimen("connection", "r2t-sendtargets", r2t),
    ]
}

/// The valid inputs of every target (`target-iscsi/fuzz/corpus/TARGET/NAME`).
#[must_use]
pub fn seeds() -> Vec<Specimen> {
    let mut out = login_seeds();
    let normal = out[0].bytes.clone();
    out.push(specimen("pdu_parse", "login-request", normal.clone()));
    out.push(specimen("login_text", "normal", {
        let mut t = vec![0b10];
        t.extend_from_slice(&normal[BHS_LEN..]);
        t
    }));
    let mut command_with_ahs =
        command(1, 1, &[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], 512, false, true, 0);
    command_with_ahs.set_lengths(1, 0);
    let mut p = command_with_ahs.bytes.to_vec();
    p.extend_from_slice(&[0, 2, 2, 0]); // bidirectional read length AHS, cut
    out.push(specimen("pdu_parse", "command-with-ahs", p));
    let mut cdb = vec![0u8];
    cdb.extend_from_slice(&[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
    out.push(specimen("cdb_parse", "read10", cdb));
    let mut cdb = vec![1u8];
    cdb.extend_from_slice(&[0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
    cdb.extend_from_slice(&[0x5a; 4096]);
    out.push(specimen("cdb_parse", "write10-4k", cdb));
    out.extend(connection_seeds());
    out
}

/// Malformed inputs just past one of a parser's bounds (`target-iscsi/fuzz/regressions/...`).
#[must_use]
pub fn regressions() -> Vec<Specimen> {
    let mut ahs_padding = Bhs::default().bytes.to_vec();
    // AHSLength 2: a 5-byte AHS whose padding to 8 bytes is missing.
    ahs_padding.extend_from_slice(&[0, 2, 1, 0, 9]);
    let mut login_short = Vec::new();
    let keys = text(&[("InitiatorName", INITIATOR), ("TargetName", OPEN_TARGET)]);
    login_pdu(&mut login_short, Stage::LoginOperationalNegotiation, None, 0, &keys);
    login_short.truncate(BHS_LEN + 10);
    // Two hundred unknown keys in one PDU: answering each NotUnderstood would overflow the
    // 8192 bytes a login response may carry.
    let mut flood = Vec::new();
    let mut keys = vec![
        ("InitiatorName".to_string(), INITIATOR.to_string()),
        ("TargetName".into(), OPEN_TARGET.into()),
    ];
    keys.extend(
        (0..200).map(|i| (format!("X-vendor.key.with.a.long.name.{i:04}"), "1".to_string())),
    );
    let keys: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    login_pdu(&mut flood, Stage::LoginOperationalNegotiation, None, 0, &text(&keys));
    // Unsolicited Data-Out that runs past what a one-block WRITE takes (but not past the
    // expected transfer length).
    let mut past = vec![SELECT];
    let write10 = [0x2a, 0, 0, 0, 0, 8, 0, 0, 1, 0];
    pdu(&mut past, &command(1, 1, &write10, 2048, true, false, 0), &[]);
    pdu(&mut past, &data_out(1, RESERVED_TAG, 0, 1024, true), &[4; 1024]);
    pdu(&mut past, &logout(2), &[]);
    vec![
        specimen("pdu_parse", "ahs-padding-missing", ahs_padding),
        specimen("login_sequence", "segment-cut", login_short),
        specimen("login_sequence", "unknown-key-flood", flood),
        // Values shorter than a binary value's 0x prefix.
        specimen(
            "login_text",
            "values-shorter-than-a-prefix",
            b"InitiatorName=\0CHAP_R=0\0".to_vec(),
        ),
        specimen("cdb_parse", "short-cdb", vec![0, 0x88, 0, 0]),
        specimen("cdb_parse", "extended-cdb", {
            // 32 bytes: a variable-length CDB as an extended CDB AHS delivers it.
            let mut cdb = vec![0u8, 0x7f, 0, 0, 0, 0, 0, 0, 24];
            cdb.resize(33, 0);
            cdb
        }),
        specimen("connection", "data-out-past-the-command", past),
    ]
}

/// A fuzz target: its name and its entry point.
pub type Target = (&'static str, fn(&[u8]));

/// The targets, by name (as in `target-iscsi/fuzz/Cargo.toml`).
pub const TARGETS: [Target; 5] = [
    ("pdu_parse", pdu_parse),
    ("login_text", login_text),
    ("login_sequence", login_sequence),
    ("connection", connection),
    ("cdb_parse", crate::scsi::fuzz::run_one),
];

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn fuzz_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
    }

    /// The committed seeds and regression inputs are the generator's. With
    /// `FERRITE_WRITE_FUZZ_INPUTS=1` the test (re)writes them instead.
    #[test]
    fn committed_inputs_are_the_generators() {
        let write = std::env::var_os("FERRITE_WRITE_FUZZ_INPUTS").is_some();
        for (dir, set) in [("corpus", seeds()), ("regressions", regressions())] {
            for s in set {
                let path = fuzz_dir().join(dir).join(s.target).join(s.name);
                if write {
                    std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
                    std::fs::write(&path, &s.bytes).expect("write input");
                }
                let committed = std::fs::read(&path).unwrap_or_default();
                assert!(committed == s.bytes, "{} differs from the generator", path.display());
            }
        }
    }

    /// Every committed input of every target runs through it without a panic.
    #[test]
    fn committed_inputs_replay() {
        let mut ran = 0;
        for (target, f) in TARGETS {
            for dir in ["corpus", "regressions"] {
                let Ok(entries) = std::fs::read_dir(fuzz_dir().join(dir).join(target)) else {
                    continue;
                };
                for entry in entries {
                    let bytes = std::fs::read(entry.expect("entry").path()).expect("input");
                    f(&bytes);
                    ran += 1;
                }
            }
        }
        assert!(ran >= seeds().len() + regressions().len(), "only {ran} inputs found");
    }

    /// The connection seeds run commands to their responses and end with the logout.
    #[test]
    fn connection_seeds_are_answered_and_log_out() {
        for s in connection_seeds() {
            let (end, answered) = run_connection(&s.bytes).expect("input");
            // Every seed sends at least three PDUs that are answered with a 48-byte header.
            assert!(answered >= 3 * BHS_LEN, "{}: {answered} bytes answered", s.name);
            match s.name {
                "r2t-sendtargets" => assert!(matches!(end, ConnEnd::Io(_)), "{end:?}"),
                name => assert!(matches!(end, ConnEnd::Logout), "{name}: {end:?}"),
            }
        }
    }

    /// The login seeds reach past the first checks: the open target's logins complete, the
    /// CHAP one gets a challenge and fails only at the response.
    #[test]
    fn login_seeds_reach_full_feature_phase_or_the_chap_response() {
        let config = login_config();
        for s in login_seeds() {
            let mut login = Login::new();
            let mut rest = &s.bytes[..];
            let mut last = None;
            let mut challenged = false;
            while let Some(bhs) = Bhs::from_slice(rest) {
                let dsl = bhs.data_segment_length() as usize;
                let req = LoginRequest::parse(&bhs, 8192).expect("seed PDU parses");
                let reply = login.step(&config, &req, &rest[BHS_LEN..BHS_LEN + dsl]);
                challenged |= String::from_utf8_lossy(&reply.text).contains("CHAP_C=");
                rest = &rest[BHS_LEN + padded_len(dsl)..];
                last = Some(reply.outcome);
            }
            match s.name {
                "chap-mutual" => {
                    assert!(challenged, "no challenge");
                    assert!(matches!(last, Some(LoginOutcome::Fail(_))));
                }
                name => {
                    assert!(matches!(last, Some(LoginOutcome::FullFeature(_))), "{name}: {last:?}");
                }
            }
        }
    }
}
