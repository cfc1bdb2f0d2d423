//! A small blocking iSCSI initiator over `std::net::TcpStream`.
//!
//! Used by ferrite's own integration tests (robustness tests that need a well-behaved session
//! next to a hostile one, crash tests, whole-target checks). One command at a time;
//! ImmediateData, unsolicited Data-Out and R2T are all handled. Built only with the
//! `test-initiator` feature, which test code enables as a dev-dependency: it is not part of
//! the crate's API and no binary links it.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::chap::ChapAlgorithm;
use crate::digest;
use crate::pdu::{
    padded_len, Bhs, Isid, LoginRequest, LogoutReason, LogoutRequest, NopOut, Opcode, ScsiCommand,
    ScsiDataOut, Stage, TaskAttribute, TextRequest, BHS_LEN, RESERVED_TAG,
};
use crate::text::{encode_hex, parse_binary, parse_pairs, TextBuilder};

/// A protocol error unless `bhs` is a PDU of opcode `want`.
fn expect_opcode(bhs: &Bhs, want: Opcode) -> Result<()> {
    match bhs.opcode() {
        Some(op) if op == want => Ok(()),
        other => Err(InitiatorError::Protocol(format!("expected {want:?}, got {other:?}"))),
    }
}

/// Why an initiator call failed.
#[derive(Debug)]
pub enum InitiatorError {
    /// Socket error.
    Io(io::Error),
    /// The target refused the login with this status (class << 8 | detail).
    LoginRefused(u16),
    /// The target sent something this initiator did not expect.
    Protocol(String),
}

impl std::fmt::Display for InitiatorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InitiatorError::Io(e) => write!(f, "I/O error: {e}"),
            InitiatorError::LoginRefused(s) => write!(f, "login refused with status 0x{s:04x}"),
            InitiatorError::Protocol(m) => write!(f, "protocol error: {m}"),
        }
    }
}

impl std::error::Error for InitiatorError {}

impl From<io::Error> for InitiatorError {
    fn from(e: io::Error) -> Self {
        InitiatorError::Io(e)
    }
}

type Result<T> = std::result::Result<T, InitiatorError>;

/// The outcome of a SCSI command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// SCSI status byte.
    pub status: u8,
    /// Sense data (without the 2-byte length prefix), empty when none.
    pub sense: Vec<u8>,
    /// Data-In received.
    pub data: Vec<u8>,
}

impl Response {
    /// Sense key, when sense data is present (fixed or descriptor format).
    #[must_use]
    pub fn sense_key(&self) -> Option<u8> {
        match self.sense.first().map(|b| b & 0x7f) {
            Some(0x70 | 0x71) => self.sense.get(2).map(|b| b & 0x0f),
            Some(0x72 | 0x73) => self.sense.get(1).map(|b| b & 0x0f),
            _ => None,
        }
    }
}

/// Login settings.
#[derive(Debug, Clone)]
pub struct LoginOptions {
    /// InitiatorName.
    pub initiator_name: String,
    /// TargetName (ignored for discovery).
    pub target_name: String,
    /// CHAP user name and secret (MD5), when the target requires CHAP.
    pub chap: Option<(String, String)>,
    /// ISID (the low byte distinguishes sessions of one initiator).
    pub isid: [u8; 6],
    /// Socket timeout.
    pub timeout: Duration,
    /// Ask for CRC32C header and data digests.
    pub digests: bool,
}

impl LoginOptions {
    /// Options for `initiator_name` logging in to `target_name`, no CHAP, 30 s timeout.
    #[must_use]
    pub fn new(initiator_name: &str, target_name: &str) -> LoginOptions {
        LoginOptions {
            initiator_name: initiator_name.to_string(),
            target_name: target_name.to_string(),
            chap: None,
            isid: [0x80, 0, 0, 0, 0, 1],
            timeout: Duration::from_secs(30),
            digests: false,
        }
    }
}

/// A logged-in session with one connection.
pub struct Initiator {
    stream: TcpStream,
    cmd_sn: u32,
    exp_stat_sn: u32,
    next_itt: u32,
    /// MaxRecvDataSegmentLength the target declared.
    target_max_recv_segment: u32,
    first_burst_length: u32,
    immediate_data: bool,
    initial_r2t: bool,
    /// Digests in use after login.
    digests: bool,
    /// Digests requested at login.
    want_digests: bool,
}

const OUR_MAX_RECV_DATA_SEGMENT_LENGTH: u32 = 262_144;

impl Initiator {
    /// Connects and logs in to a normal session.
    ///
    /// # Errors
    /// Socket errors, or the target's refusal.
    pub fn login(addr: SocketAddr, opts: &LoginOptions) -> Result<Initiator> {
        Initiator::connect(addr, opts, false)
    }

    /// Connects and logs in, to a discovery session or a normal one. A discovery session
    /// sends no unsolicited data and asks for no digests.
    fn connect(addr: SocketAddr, opts: &LoginOptions, discovery: bool) -> Result<Initiator> {
        let stream = TcpStream::connect_timeout(&addr, opts.timeout)?;
        stream.set_read_timeout(Some(opts.timeout))?;
        if !discovery {
            stream.set_write_timeout(Some(opts.timeout))?;
            stream.set_nodelay(true)?;
        }
        let mut ini = Initiator {
            stream,
            cmd_sn: 1,
            exp_stat_sn: 0,
            next_itt: 1,
            target_max_recv_segment: 8192,
            first_burst_length: if discovery { 0 } else { 65536 },
            immediate_data: !discovery,
            initial_r2t: true,
            digests: false,
            want_digests: opts.digests && !discovery,
        };
        ini.do_login(opts, discovery)?;
        Ok(ini)
    }

    /// Connects to a discovery session and returns the SendTargets=All answer text.
    ///
    /// # Errors
    /// Socket errors, or the target's refusal.
    pub fn discover(addr: SocketAddr, opts: &LoginOptions) -> Result<String> {
        let mut ini = Initiator::connect(addr, opts, true)?;
        let mut text = TextBuilder::new();
        text.push("SendTargets", "All");
        let data = text.into_bytes();
        let itt = ini.alloc_itt();
        let req = TextRequest {
            immediate: true,
            final_bit: true,
            continue_bit: false,
            lun: 0,
            itt,
            ttt: RESERVED_TAG,
            cmd_sn: ini.cmd_sn,
            exp_stat_sn: ini.exp_stat_sn,
            data_segment_length: u32::try_from(data.len()).unwrap_or(0),
        };
        let (_, data) = ini.exchange(&req.encode(), &data, Opcode::TextResponse)?;
        let _ = ini.logout();
        Ok(String::from_utf8_lossy(&data).replace('\0', "\n"))
    }

    fn alloc_itt(&mut self) -> u32 {
        let itt = self.next_itt;
        self.next_itt = self.next_itt.wrapping_add(1).max(1);
        itt
    }

    fn do_login(&mut self, opts: &LoginOptions, discovery: bool) -> Result<()> {
        let mut stage = if opts.chap.is_some() {
            Stage::SecurityNegotiation
        } else {
            Stage::LoginOperationalNegotiation
        };
        let itt = self.alloc_itt();
        let mut keys = TextBuilder::new();
        keys.push("InitiatorName", &opts.initiator_name);
        if discovery {
            keys.push("SessionType", "Discovery");
        } else {
            keys.push("SessionType", "Normal");
            keys.push("TargetName", &opts.target_name);
        }
        let mut chap_step = 0;
        if opts.chap.is_some() {
            keys.push("AuthMethod", "CHAP");
        } else {
            push_operational(&mut keys, discovery, self.want_digests);
        }
        loop {
            let transit = match stage {
                Stage::SecurityNegotiation => chap_step >= 2,
                _ => true,
            };
            let nsg = if transit {
                Some(if stage == Stage::SecurityNegotiation {
                    Stage::LoginOperationalNegotiation
                } else {
                    Stage::FullFeaturePhase
                })
            } else {
                None
            };
            let data = std::mem::take(&mut keys).into_bytes();
            let req = LoginRequest {
                transit,
                continue_bit: false,
                csg: stage,
                nsg,
                version_max: 0,
                version_min: 0,
                isid: Isid(opts.isid),
                tsih: 0,
                itt,
                cid: 0,
                cmd_sn: self.cmd_sn,
                exp_stat_sn: self.exp_stat_sn,
                data_segment_length: u32::try_from(data.len()).unwrap_or(0),
            };
            let (bhs, text) = self.exchange(&req.encode(), &data, Opcode::LoginResponse)?;
            let status = u16::from_be_bytes([bhs.bytes[36], bhs.bytes[37]]);
            if status != 0 {
                return Err(InitiatorError::LoginRefused(status));
            }
            self.exp_stat_sn = bhs.u32_at(24).wrapping_add(1);
            let pairs = parse_pairs(&text)
                .map_err(|e| InitiatorError::Protocol(format!("login text: {e}")))?;
            for kv in &pairs {
                match kv.key {
                    "MaxRecvDataSegmentLength" => {
                        self.target_max_recv_segment = kv.value.parse().unwrap_or(8192);
                    }
                    "FirstBurstLength" => {
                        self.first_burst_length = kv.value.parse().unwrap_or(65536);
                    }
                    "ImmediateData" => self.immediate_data = kv.value == "Yes",
                    "InitialR2T" => self.initial_r2t = kv.value == "Yes",
                    _ => {}
                }
            }
            let target_transit = bhs.bytes[1] & 0x80 != 0;
            let target_nsg = bhs.bytes[1] & 0x03;
            if stage == Stage::SecurityNegotiation {
                if let Some((user, secret)) = &opts.chap {
                    match chap_step {
                        0 => {
                            keys.push("CHAP_A", "5");
                            chap_step = 1;
                        }
                        1 => {
                            let get = |k: &str| {
                                pairs.iter().find(|p| p.key == k).map(|p| p.value.to_string())
                            };
                            let id: u8 = get("CHAP_I")
                                .and_then(|v| v.parse().ok())
                                .ok_or_else(|| InitiatorError::Protocol("no CHAP_I".into()))?;
                            let challenge = get("CHAP_C")
                                .and_then(|v| parse_binary(&v).ok())
                                .ok_or_else(|| InitiatorError::Protocol("no CHAP_C".into()))?;
                            let response =
                                ChapAlgorithm::Md5.response(id, secret.as_bytes(), &challenge);
                            keys.push("CHAP_N", user);
                            keys.push("CHAP_R", &encode_hex(&response));
                            chap_step = 2;
                        }
                        _ => {}
                    }
                }
                if target_transit && target_nsg == Stage::LoginOperationalNegotiation as u8 {
                    stage = Stage::LoginOperationalNegotiation;
                    push_operational(&mut keys, discovery, self.want_digests);
                }
                continue;
            }
            if target_transit && target_nsg == Stage::FullFeaturePhase as u8 {
                self.digests = pairs.iter().any(|p| p.key == "HeaderDigest" && p.value == "CRC32C");
                return Ok(());
            }
        }
    }

    /// Sends one PDU and receives the answer, which must be of opcode `want`.
    fn exchange(&mut self, bhs: &Bhs, data: &[u8], want: Opcode) -> Result<(Bhs, Vec<u8>)> {
        self.send_pdu(bhs, data)?;
        let (bhs, data) = self.recv_pdu()?;
        expect_opcode(&bhs, want)?;
        Ok((bhs, data))
    }

    /// Writes a PDU: header, data, padding.
    ///
    /// # Errors
    /// Socket errors.
    pub fn send_pdu(&mut self, bhs: &Bhs, data: &[u8]) -> io::Result<()> {
        let mut out = Vec::with_capacity(BHS_LEN + 8 + padded_len(data.len()));
        out.extend_from_slice(&bhs.bytes);
        if self.digests {
            out.extend_from_slice(&digest::header_digest(&bhs.bytes));
        }
        out.extend_from_slice(data);
        out.resize(out.len() + padded_len(data.len()) - data.len(), 0);
        if self.digests && !data.is_empty() {
            out.extend_from_slice(&digest::data_digest(data));
        }
        self.stream.write_all(&out)
    }

    /// True when CRC32C digests are in use on this connection.
    #[must_use]
    pub fn digests(&self) -> bool {
        self.digests
    }

    /// Writes raw bytes (for malformed-PDU tests).
    ///
    /// # Errors
    /// Socket errors.
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads one PDU (no digests): header and data segment without padding.
    ///
    /// # Errors
    /// Socket errors, including the peer closing.
    pub fn recv_pdu(&mut self) -> io::Result<(Bhs, Vec<u8>)> {
        let mut hdr = [0u8; BHS_LEN];
        self.stream.read_exact(&mut hdr)?;
        let bhs = Bhs::from_slice(&hdr).ok_or_else(|| io::Error::other("short header"))?;
        let ahs = usize::from(bhs.total_ahs_length_words()) * 4;
        let dsl = bhs.data_segment_length() as usize;
        let hd = if self.digests { 4 } else { 0 };
        let dd = if self.digests && dsl > 0 { 4 } else { 0 };
        let mut rest = vec![0u8; ahs + hd + padded_len(dsl) + dd];
        self.stream.read_exact(&mut rest)?;
        let start = ahs + hd;
        Ok((bhs, rest[start..start + dsl].to_vec()))
    }

    /// Runs one SCSI command on `lun`: sends `data_out` (immediate, unsolicited and on R2T)
    /// and collects up to `read_bytes` of Data-In.
    ///
    /// # Errors
    /// Socket errors or an unexpected PDU.
    pub fn command(
        &mut self,
        lun: u64,
        cdb: &[u8],
        data_out: Option<&[u8]>,
        read_bytes: u32,
    ) -> Result<Response> {
        let itt = self.alloc_itt();
        let mut cdb16 = [0u8; 16];
        let n = cdb.len().min(16);
        cdb16[..n].copy_from_slice(&cdb[..n]);
        let out = data_out.unwrap_or(&[]);
        let out_len = u32::try_from(out.len())
            .map_err(|_| InitiatorError::Protocol("data too long".into()))?;
        let immediate_len = if self.immediate_data {
            out_len.min(self.first_burst_length).min(self.target_max_recv_segment)
        } else {
            0
        };
        let unsolicited_end =
            if self.initial_r2t { immediate_len } else { out_len.min(self.first_burst_length) };
        let cmd = ScsiCommand {
            immediate: false,
            final_bit: unsolicited_end <= immediate_len,
            read: read_bytes > 0,
            write: out_len > 0,
            attr: TaskAttribute::Simple,
            lun: lun_field(lun),
            itt,
            expected_data_transfer_length: if out_len > 0 { out_len } else { read_bytes },
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            cdb: cdb16,
            total_ahs_length_words: 0,
            data_segment_length: immediate_len,
        };
        self.cmd_sn = self.cmd_sn.wrapping_add(1);
        self.send_pdu(&cmd.encode(), &out[..immediate_len as usize])?;
        if unsolicited_end > immediate_len {
            self.send_data_out(lun, itt, RESERVED_TAG, out, immediate_len, unsolicited_end)?;
        }
        let mut data = Vec::new();
        loop {
            let (bhs, seg) = self.recv_pdu()?;
            match bhs.opcode() {
                Some(Opcode::R2t) => {
                    let ttt = bhs.u32_at(20);
                    let offset = bhs.u32_at(40);
                    let len = bhs.u32_at(44);
                    self.send_data_out(
                        lun,
                        itt,
                        ttt,
                        out,
                        offset,
                        offset.saturating_add(len).min(out_len),
                    )?;
                }
                Some(Opcode::ScsiDataIn) => {
                    let offset = bhs.u32_at(40) as usize;
                    if data.len() < offset + seg.len() {
                        data.resize(offset + seg.len(), 0);
                    }
                    data[offset..offset + seg.len()].copy_from_slice(&seg);
                    if bhs.bytes[1] & 0x01 != 0 {
                        self.exp_stat_sn = bhs.u32_at(24).wrapping_add(1);
                        return Ok(Response { status: bhs.bytes[3], sense: Vec::new(), data });
                    }
                }
                Some(Opcode::ScsiResponse) => {
                    self.exp_stat_sn = bhs.u32_at(24).wrapping_add(1);
                    let sense = if seg.len() >= 2 {
                        let n = usize::from(u16::from_be_bytes([seg[0], seg[1]]));
                        seg[2..(2 + n).min(seg.len())].to_vec()
                    } else {
                        Vec::new()
                    };
                    return Ok(Response { status: bhs.bytes[3], sense, data });
                }
                Some(Opcode::NopIn) => self.answer_nop_in(&bhs)?,
                Some(Opcode::Reject) => {
                    return Err(InitiatorError::Protocol(format!(
                        "Reject reason 0x{:02x}",
                        bhs.bytes[2]
                    )))
                }
                other => return Err(InitiatorError::Protocol(format!("unexpected {other:?}"))),
            }
        }
    }

    fn answer_nop_in(&mut self, bhs: &Bhs) -> Result<()> {
        let ttt = bhs.u32_at(20);
        if ttt != RESERVED_TAG {
            let nop = NopOut {
                immediate: true,
                lun: bhs.lun(),
                itt: RESERVED_TAG,
                ttt,
                cmd_sn: self.cmd_sn,
                exp_stat_sn: self.exp_stat_sn,
                data_segment_length: 0,
            };
            self.send_pdu(&nop.encode(), &[])?;
        }
        Ok(())
    }

    fn send_data_out(
        &mut self,
        lun: u64,
        itt: u32,
        ttt: u32,
        out: &[u8],
        start: u32,
        end: u32,
    ) -> Result<()> {
        let mut offset = start;
        let mut data_sn = 0;
        while offset < end {
            let len = (end - offset).min(self.target_max_recv_segment);
            let d = ScsiDataOut {
                final_bit: offset + len == end,
                lun: lun_field(lun),
                itt,
                ttt,
                exp_stat_sn: self.exp_stat_sn,
                data_sn,
                buffer_offset: offset,
                data_segment_length: len,
            };
            self.send_pdu(&d.encode(), &out[offset as usize..(offset + len) as usize])?;
            offset += len;
            data_sn += 1;
        }
        Ok(())
    }

    /// WRITE(16) of `data` at `lba` (whole blocks), optionally FUA.
    ///
    /// # Errors
    /// As [`Initiator::command`].
    pub fn write16(
        &mut self,
        lun: u64,
        lba: u64,
        block_bytes: u32,
        data: &[u8],
        fua: bool,
    ) -> Result<Response> {
        let blocks = u32::try_from(data.len() / block_bytes as usize).unwrap_or(0);
        let mut cdb = [0u8; 16];
        cdb[0] = 0x8a;
        cdb[1] = if fua { 0x08 } else { 0 };
        cdb[2..10].copy_from_slice(&lba.to_be_bytes());
        cdb[10..14].copy_from_slice(&blocks.to_be_bytes());
        self.command(lun, &cdb, Some(data), 0)
    }

    /// READ(16) of `blocks` blocks at `lba`.
    ///
    /// # Errors
    /// As [`Initiator::command`].
    pub fn read16(
        &mut self,
        lun: u64,
        lba: u64,
        block_bytes: u32,
        blocks: u32,
    ) -> Result<Response> {
        let mut cdb = [0u8; 16];
        cdb[0] = 0x88;
        cdb[2..10].copy_from_slice(&lba.to_be_bytes());
        cdb[10..14].copy_from_slice(&blocks.to_be_bytes());
        self.command(lun, &cdb, None, blocks * block_bytes)
    }

    /// SYNCHRONIZE CACHE(10) of the whole LUN.
    ///
    /// # Errors
    /// As [`Initiator::command`].
    pub fn synchronize_cache(&mut self, lun: u64) -> Result<Response> {
        self.command(lun, &[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], None, 0)
    }

    /// Logs the session out.
    ///
    /// # Errors
    /// Socket errors.
    pub fn logout(&mut self) -> Result<()> {
        let itt = self.alloc_itt();
        let req = LogoutRequest {
            immediate: true,
            reason: LogoutReason::CloseSession,
            itt,
            cid: 0,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
        };
        self.send_pdu(&req.encode(), &[])?;
        loop {
            let (bhs, _) = self.recv_pdu()?;
            if bhs.opcode() == Some(Opcode::LogoutResponse) {
                return Ok(());
            }
        }
    }

    /// Sends a NOP-Out carrying `data` as ping data (immediate) and returns the data of the
    /// NOP-In that answers it.
    ///
    /// # Errors
    /// Socket errors or an unexpected PDU.
    pub fn ping(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        let itt = self.alloc_itt();
        let nop = NopOut {
            immediate: true,
            lun: 0,
            itt,
            ttt: RESERVED_TAG,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            data_segment_length: u32::try_from(data.len())
                .map_err(|_| InitiatorError::Protocol("ping data too long".into()))?,
        };
        self.send_pdu(&nop.encode(), data)?;
        loop {
            let (bhs, seg) = self.recv_pdu()?;
            match bhs.opcode() {
                Some(Opcode::NopIn) if bhs.u32_at(16) == itt => {
                    self.exp_stat_sn = bhs.u32_at(24).wrapping_add(1);
                    return Ok(seg);
                }
                Some(Opcode::NopIn) => self.answer_nop_in(&bhs)?,
                other => return Err(InitiatorError::Protocol(format!("unexpected {other:?}"))),
            }
        }
    }

    /// Current CmdSN (for tests that forge PDUs).
    #[must_use]
    pub fn cmd_sn(&self) -> u32 {
        self.cmd_sn
    }

    /// Current ExpStatSN (for tests that forge PDUs).
    #[must_use]
    pub fn exp_stat_sn(&self) -> u32 {
        self.exp_stat_sn
    }
}

fn push_operational(keys: &mut TextBuilder, discovery: bool, digests: bool) {
    let digest = if digests { "CRC32C" } else { "None" };
    keys.push("HeaderDigest", digest);
    keys.push("DataDigest", digest);
    keys.push("MaxRecvDataSegmentLength", &OUR_MAX_RECV_DATA_SEGMENT_LENGTH.to_string());
    if !discovery {
        keys.push("InitialR2T", "No");
        keys.push("ImmediateData", "Yes");
        keys.push("MaxBurstLength", "1048576");
        keys.push("FirstBurstLength", "262144");
        keys.push("MaxOutstandingR2T", "1");
        keys.push("ErrorRecoveryLevel", "0");
    }
}

/// The 8-byte LUN field (peripheral addressing below 256, flat above).
#[must_use]
pub fn lun_field(lun: u64) -> u64 {
    if lun < 256 {
        lun << 48
    } else {
        (0x4000 | (lun & 0x3fff)) << 48
    }
}
