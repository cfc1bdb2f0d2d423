use super::*;
use proptest::prelude::*;

const LIMIT: u32 = 262_144;
const SNS: StatusSns = StatusSns { stat_sn: 0x1111, exp_cmd_sn: 0x2222, max_cmd_sn: 0x2232 };

fn initiator_roundtrip(p: InitiatorPdu) {
    let bhs = p.encode();
    assert_eq!(InitiatorPdu::parse(&bhs, LIMIT), Ok(p), "{bhs:?}");
}

fn target_roundtrip(p: TargetPdu) {
    let bhs = p.encode();
    assert_eq!(TargetPdu::parse(&bhs), Ok(p), "{bhs:?}");
}

#[test]
fn bhs_is_48_bytes_and_casts() {
    assert_eq!(core::mem::size_of::<Bhs>(), 48);
    let raw = [7u8; 48];
    let bhs: &Bhs = bytemuck::from_bytes(&raw);
    assert_eq!(bhs.bytes, raw);
    assert!(Bhs::from_slice(&raw[..47]).is_none());
    assert_eq!(Bhs::from_slice(&raw).map(|b| b.bytes), Some(raw));
}

#[test]
fn opcodes_cover_rfc7143() {
    let all = [
        (0x00, Opcode::NopOut),
        (0x01, Opcode::ScsiCommand),
        (0x02, Opcode::TaskMgmtRequest),
        (0x03, Opcode::LoginRequest),
        (0x04, Opcode::TextRequest),
        (0x05, Opcode::ScsiDataOut),
        (0x06, Opcode::LogoutRequest),
        (0x10, Opcode::SnackRequest),
        (0x20, Opcode::NopIn),
        (0x21, Opcode::ScsiResponse),
        (0x22, Opcode::TaskMgmtResponse),
        (0x23, Opcode::LoginResponse),
        (0x24, Opcode::TextResponse),
        (0x25, Opcode::ScsiDataIn),
        (0x26, Opcode::LogoutResponse),
        (0x31, Opcode::R2t),
        (0x32, Opcode::AsyncMessage),
        (0x3f, Opcode::Reject),
    ];
    for (code, op) in all {
        assert_eq!(Opcode::from_u8(code), Some(op));
        assert_eq!(op as u8, code);
        assert_eq!(op.is_initiator(), code < 0x20);
    }
    for reserved in [0x07, 0x1c, 0x1e, 0x27, 0x3c] {
        assert_eq!(Opcode::from_u8(reserved), None);
    }
}

#[test]
fn initiator_pdus_roundtrip() {
    initiator_roundtrip(InitiatorPdu::NopOut(NopOut {
        immediate: true,
        lun: 0x0001_0000_0000_0000,
        itt: RESERVED_TAG,
        ttt: 0x55,
        cmd_sn: 9,
        exp_stat_sn: 10,
        data_segment_length: 12,
    }));
    initiator_roundtrip(InitiatorPdu::ScsiCommand(ScsiCommand {
        immediate: false,
        final_bit: false,
        read: true,
        write: true,
        attr: TaskAttribute::Ordered,
        lun: 3,
        itt: 0x1234,
        expected_data_transfer_length: 8192,
        cmd_sn: 77,
        exp_stat_sn: 78,
        cdb: [0x8a, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
        total_ahs_length_words: 3,
        data_segment_length: 4096,
    }));
    initiator_roundtrip(InitiatorPdu::TaskMgmtRequest(TaskMgmtRequest {
        immediate: true,
        function: TmfFunction::AbortTask,
        lun: 1,
        itt: 2,
        referenced_task_tag: 3,
        cmd_sn: 4,
        exp_stat_sn: 5,
        ref_cmd_sn: 6,
        exp_data_sn: 7,
    }));
    initiator_roundtrip(InitiatorPdu::LoginRequest(LoginRequest {
        transit: true,
        continue_bit: false,
        csg: Stage::SecurityNegotiation,
        nsg: Some(Stage::LoginOperationalNegotiation),
        version_max: 0,
        version_min: 0,
        isid: Isid([0x80, 1, 2, 3, 4, 5]),
        tsih: 0,
        itt: 0,
        cid: 1,
        cmd_sn: 0,
        exp_stat_sn: 0,
        data_segment_length: 100,
    }));
    initiator_roundtrip(InitiatorPdu::TextRequest(TextRequest {
        immediate: true,
        final_bit: false,
        continue_bit: true,
        lun: 0,
        itt: 5,
        ttt: RESERVED_TAG,
        cmd_sn: 1,
        exp_stat_sn: 2,
        data_segment_length: 16,
    }));
    initiator_roundtrip(InitiatorPdu::ScsiDataOut(ScsiDataOut {
        final_bit: true,
        lun: 2,
        itt: 3,
        ttt: 4,
        exp_stat_sn: 5,
        data_sn: 6,
        buffer_offset: 65536,
        data_segment_length: 8192,
    }));
    initiator_roundtrip(InitiatorPdu::LogoutRequest(LogoutRequest {
        immediate: true,
        reason: LogoutReason::CloseConnection,
        itt: 8,
        cid: 2,
        cmd_sn: 9,
        exp_stat_sn: 10,
    }));
    initiator_roundtrip(InitiatorPdu::SnackRequest(SnackRequest {
        snack_type: SnackType::Status,
        lun: 0,
        itt: RESERVED_TAG,
        ttt_or_snack_tag: 0,
        exp_stat_sn: 4,
        beg_run: 2,
        run_length: 0,
    }));
}

#[test]
fn target_pdus_roundtrip() {
    target_roundtrip(TargetPdu::NopIn(NopIn {
        lun: 1,
        itt: RESERVED_TAG,
        ttt: 0x99,
        sns: SNS,
        data_segment_length: 0,
    }));
    target_roundtrip(TargetPdu::ScsiResponse(ScsiResponse {
        bidi_read_residual: Residual::Overflow(5),
        residual: Residual::Underflow(512),
        response: 0,
        status: 0x02,
        itt: 7,
        snack_tag: 0,
        sns: SNS,
        exp_data_sn: 3,
        data_segment_length: 20,
    }));
    target_roundtrip(TargetPdu::TaskMgmtResponse(TaskMgmtResponse {
        response: TmfResponse::TaskDoesNotExist,
        itt: 4,
        sns: SNS,
    }));
    target_roundtrip(TargetPdu::LoginResponse(LoginResponse {
        transit: true,
        continue_bit: false,
        csg: Stage::LoginOperationalNegotiation,
        nsg: Some(Stage::FullFeaturePhase),
        version_max: 0,
        version_active: 0,
        isid: Isid([1, 2, 3, 4, 5, 6]),
        tsih: 0x0102,
        itt: 9,
        sns: SNS,
        status: LoginStatus::Success,
        data_segment_length: 64,
    }));
    target_roundtrip(TargetPdu::TextResponse(TextResponse {
        final_bit: false,
        continue_bit: true,
        lun: 0,
        itt: 5,
        ttt: 0x77,
        sns: SNS,
        data_segment_length: 8192,
    }));
    target_roundtrip(TargetPdu::ScsiDataIn(ScsiDataIn {
        final_bit: true,
        acknowledge: false,
        status: Some(DataInStatus { status: 0, residual: Residual::Underflow(100), stat_sn: 41 }),
        lun: 0,
        itt: 6,
        ttt: RESERVED_TAG,
        exp_cmd_sn: 2,
        max_cmd_sn: 33,
        data_sn: 4,
        buffer_offset: 32768,
        data_segment_length: 8192,
    }));
    target_roundtrip(TargetPdu::ScsiDataIn(ScsiDataIn {
        final_bit: false,
        acknowledge: true,
        status: None,
        lun: 5,
        itt: 6,
        ttt: 7,
        exp_cmd_sn: 2,
        max_cmd_sn: 33,
        data_sn: 0,
        buffer_offset: 0,
        data_segment_length: 8192,
    }));
    target_roundtrip(TargetPdu::LogoutResponse(LogoutResponse {
        response: LogoutResponseCode::ClosedSuccessfully,
        itt: 8,
        sns: SNS,
        time2wait_s: 2,
        time2retain_s: 20,
    }));
    target_roundtrip(TargetPdu::R2t(R2t {
        lun: 1,
        itt: 2,
        ttt: 3,
        sns: SNS,
        r2t_sn: 4,
        buffer_offset: 5,
        desired_data_transfer_length: 262_144,
    }));
    target_roundtrip(TargetPdu::AsyncMessage(AsyncMessage {
        lun: 0,
        sns: SNS,
        async_event: AsyncEvent::LogoutRequested,
        async_vcode: 0,
        parameter1: 10,
        parameter2: 2,
        parameter3: 20,
        data_segment_length: 0,
    }));
    target_roundtrip(TargetPdu::Reject(Reject {
        reason: RejectReason::InvalidPduField,
        sns: SNS,
        data_sn_or_r2t_sn: 0,
    }));
}

/// The fields whose offsets only one PDU family uses, each checked at its RFC 7143 offset: a
/// layout and its parser share one list, so a round trip cannot catch a wrong offset there.
#[test]
fn pdu_specific_fields_sit_at_their_rfc_offsets() {
    let snack = SnackRequest {
        snack_type: SnackType::RData,
        lun: 0,
        itt: 1,
        ttt_or_snack_tag: 2,
        exp_stat_sn: 3,
        beg_run: 0x0bbb,
        run_length: 0x0ccc,
    }
    .encode();
    assert_eq!((snack.u32_at(40), snack.u32_at(44)), (0x0bbb, 0x0ccc));
    let logout = LogoutResponse {
        response: LogoutResponseCode::CidNotFound,
        itt: 1,
        sns: SNS,
        time2wait_s: 0x0a0b,
        time2retain_s: 0x0c0d,
    }
    .encode();
    assert_eq!((logout.bytes[2], logout.u16_at(40), logout.u16_at(42)), (1, 0x0a0b, 0x0c0d));
    let tmf = TaskMgmtRequest {
        immediate: false,
        function: TmfFunction::AbortTask,
        lun: 0,
        itt: 1,
        referenced_task_tag: 0x0707,
        cmd_sn: 2,
        exp_stat_sn: 3,
        ref_cmd_sn: 0x0808,
        exp_data_sn: 0x0909,
    }
    .encode();
    assert_eq!((tmf.u32_at(20), tmf.u32_at(32), tmf.u32_at(36)), (0x0707, 0x0808, 0x0909));
    let r2t = R2t {
        lun: 0,
        itt: 1,
        ttt: 2,
        sns: SNS,
        r2t_sn: 0x0404,
        buffer_offset: 0x0505,
        desired_data_transfer_length: 0x0606,
    }
    .encode();
    assert_eq!((r2t.u32_at(36), r2t.u32_at(40), r2t.u32_at(44)), (0x0404, 0x0505, 0x0606));
    let reject =
        Reject { reason: RejectReason::ProtocolError, sns: SNS, data_sn_or_r2t_sn: 0x0303 };
    let reject = reject.encode();
    assert_eq!((reject.bytes[2], reject.u32_at(36)), (0x04, 0x0303));
}

#[test]
fn async_message_and_login_fields_sit_at_their_rfc_offsets() {
    let event = AsyncMessage {
        lun: 0,
        sns: SNS,
        async_event: AsyncEvent::ConnectionDrop,
        async_vcode: 0x77,
        parameter1: 0x0101,
        parameter2: 0x0202,
        parameter3: 0x0303,
        data_segment_length: 0,
    }
    .encode();
    assert_eq!(&event.bytes[36..44], &[2, 0x77, 1, 1, 2, 2, 3, 3]);
    let login = LoginResponse {
        transit: false,
        continue_bit: false,
        csg: Stage::SecurityNegotiation,
        nsg: None,
        version_max: 0x11,
        version_active: 0x12,
        isid: Isid([1, 2, 3, 4, 5, 6]),
        tsih: 0x0708,
        itt: 9,
        sns: SNS,
        status: LoginStatus::OutOfResources,
        data_segment_length: 0,
    }
    .encode();
    assert_eq!(&login.bytes[2..4], &[0x11, 0x12]);
    assert_eq!(&login.bytes[8..16], &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(&login.bytes[36..38], &[3, 2]);
}

#[test]
fn scsi_command_and_response_fields_sit_at_their_rfc_offsets() {
    let cdb: [u8; 16] = core::array::from_fn(|i| u8::try_from(i).unwrap_or(0) + 0x40);
    let cmd = ScsiCommand {
        immediate: false,
        final_bit: true,
        read: true,
        write: false,
        attr: TaskAttribute::Simple,
        lun: 0,
        itt: 1,
        expected_data_transfer_length: 0x0202,
        cmd_sn: 3,
        exp_stat_sn: 4,
        cdb,
        total_ahs_length_words: 0,
        data_segment_length: 0,
    }
    .encode();
    assert_eq!(cmd.u32_at(20), 0x0202);
    assert_eq!(&cmd.bytes[32..48], &cdb);
    let response = ScsiResponse {
        bidi_read_residual: Residual::Underflow(0x0909),
        residual: Residual::None,
        response: 1,
        status: 2,
        itt: 3,
        snack_tag: 0x0606,
        sns: SNS,
        exp_data_sn: 0x0707,
        data_segment_length: 0,
    }
    .encode();
    assert_eq!((response.bytes[1], response.bytes[2], response.bytes[3]), (0x80 | 0x08, 1, 2));
    let words = (response.u32_at(20), response.u32_at(36), response.u32_at(40));
    assert_eq!(words, (0x0606, 0x0707, 0x0909));
}

#[test]
fn data_in_status_collapse_sets_f_s_and_residual_bits() {
    let p = ScsiDataIn {
        final_bit: false, // S forces F
        acknowledge: false,
        status: Some(DataInStatus { status: 0, residual: Residual::Overflow(7), stat_sn: 9 }),
        lun: 0,
        itt: 1,
        ttt: RESERVED_TAG,
        exp_cmd_sn: 2,
        max_cmd_sn: 3,
        data_sn: 0,
        buffer_offset: 0,
        data_segment_length: 512,
    };
    let b = p.encode();
    assert_eq!(b.bytes[1], 0x80 | 0x04 | 0x01);
    assert_eq!(b.u32_at(24), 9);
    assert_eq!(b.u32_at(44), 7);
    assert_eq!(b.data_segment_length(), 512);
    let plain = ScsiDataIn { status: None, ..p }.encode();
    assert_eq!(plain.bytes[1], 0);
    assert_eq!(plain.u32_at(24), 0, "StatSN reserved without S");
    let mut bad = b;
    bad.bytes[1] = 0x01; // S without F
    assert!(matches!(ScsiDataIn::parse(&bad), Err(PduError::Protocol(_))));
    bad.bytes[1] = 0x02; // U without S
    assert!(ScsiDataIn::parse(&bad).is_err());
}

#[test]
fn scsi_response_and_residual_bits() {
    let r = ScsiResponse {
        bidi_read_residual: Residual::None,
        residual: Residual::from_lengths(4096, 1024),
        response: 0,
        status: 0,
        itt: 1,
        snack_tag: 0,
        sns: SNS,
        exp_data_sn: 1,
        data_segment_length: 0,
    };
    let b = r.encode();
    assert_eq!(b.opcode(), Some(Opcode::ScsiResponse));
    assert_eq!(b.bytes[1], 0x80 | 0x02);
    assert_eq!(b.u32_at(44), 3072);
    assert_eq!(Residual::from_lengths(512, 1024), Residual::Overflow(512));
    assert_eq!(Residual::from_lengths(512, 512), Residual::None);
    let mut both = b;
    both.bytes[1] = 0x86;
    assert_eq!(
        ScsiResponse::parse(&both),
        Err(PduError::InvalidField("both overflow and underflow set"))
    );
}

#[test]
fn reject_carries_offending_header() {
    let mut bad = Bhs::default();
    bad.bytes[0] = 0x1d;
    let err = InitiatorPdu::parse(&bad, LIMIT).expect_err("vendor opcode");
    assert_eq!(err, PduError::UnsupportedOpcode(0x1d));
    let rej = Reject { reason: err.reject_reason(), sns: SNS, data_sn_or_r2t_sn: 0 };
    let wire = rej.encode_with_header(&bad);
    assert_eq!(wire[0], 0x3f);
    assert_eq!(wire[1], 0x80);
    assert_eq!(wire[2], 0x05);
    assert_eq!(&wire[5..8], &[0, 0, 48]);
    assert_eq!(&wire[16..20], &[0xff; 4]);
    assert_eq!(&wire[48..], &bad.bytes[..]);
}

#[test]
fn reject_reasons_match_rfc() {
    assert_eq!(PduError::DataDigest.reject_reason() as u8, 0x02);
    assert_eq!(PduError::Protocol("x").reject_reason() as u8, 0x04);
    assert_eq!(PduError::UnsupportedOpcode(0x1c).reject_reason() as u8, 0x05);
    assert_eq!(PduError::InvalidField("x").reject_reason() as u8, 0x09);
    assert_eq!(RejectReason::LongOpReject as u8, 0x0a);
    assert_eq!(RejectReason::WaitingForLogout as u8, 0x0c);
    assert_eq!(RejectReason::from_u8(0x0b), None, "0x0b is deprecated");
}

/// `bhs` with byte 1 (the flags) replaced.
fn with_flags(mut bhs: Bhs, flags: u8) -> Bhs {
    bhs.bytes[1] = flags;
    bhs
}

#[test]
fn initiator_parse_refuses_a_target_opcode() {
    let b = NopIn { lun: 0, itt: 1, ttt: 2, sns: SNS, data_segment_length: 0 }.encode();
    assert_eq!(InitiatorPdu::parse(&b, LIMIT), Err(PduError::UnexpectedOpcode(Opcode::NopIn)));
}

#[test]
fn data_out_over_the_segment_limit_or_with_an_ahs_is_refused() {
    let mut b = ScsiDataOut {
        final_bit: true,
        lun: 0,
        itt: 1,
        ttt: 2,
        exp_stat_sn: 0,
        data_sn: 0,
        buffer_offset: 0,
        data_segment_length: 8193,
    }
    .encode();
    assert_eq!(
        InitiatorPdu::parse(&b, 8192),
        Err(PduError::DataSegmentTooLong { length_bytes: 8193, limit_bytes: 8192 })
    );
    b.set_lengths(1, 16);
    assert!(matches!(InitiatorPdu::parse(&b, 8192), Err(PduError::UnexpectedSegment(_))));
}

#[test]
fn scsi_command_flags_must_be_consistent() {
    let cmd = ScsiCommand {
        immediate: false,
        final_bit: true,
        read: false,
        write: false,
        attr: TaskAttribute::Simple,
        lun: 0,
        itt: 1,
        expected_data_transfer_length: 0,
        cmd_sn: 0,
        exp_stat_sn: 0,
        cdb: [0; 16],
        total_ahs_length_words: 0,
        data_segment_length: 0,
    };
    assert!(ScsiCommand::parse(&cmd.encode(), LIMIT).is_ok());
    let expected_transfer = ScsiCommand { expected_data_transfer_length: 512, ..cmd };
    assert!(matches!(
        ScsiCommand::parse(&expected_transfer.encode(), LIMIT),
        Err(PduError::InvalidField(_))
    ));
    let immediate = ScsiCommand { data_segment_length: 512, read: true, ..cmd };
    assert!(matches!(ScsiCommand::parse(&immediate.encode(), LIMIT), Err(PduError::Protocol(_))));
    let not_final = ScsiCommand { final_bit: false, read: true, ..cmd };
    assert!(matches!(ScsiCommand::parse(&not_final.encode(), LIMIT), Err(PduError::Protocol(_))));
    let mut attr = cmd.encode();
    attr.bytes[1] |= 0x07;
    assert!(matches!(ScsiCommand::parse(&attr, LIMIT), Err(PduError::InvalidField(_))));
}

#[test]
fn login_request_refuses_t_with_c_and_reserved_stages() {
    let login = LoginRequest {
        transit: false,
        continue_bit: true,
        csg: Stage::SecurityNegotiation,
        nsg: None,
        version_max: 0,
        version_min: 0,
        isid: Isid::default(),
        tsih: 0,
        itt: 0,
        cid: 0,
        cmd_sn: 0,
        exp_stat_sn: 0,
        data_segment_length: 0,
    }
    .encode();
    let t_and_c = with_flags(login, login.bytes[1] | 0x80);
    assert!(matches!(LoginRequest::parse(&t_and_c, 8192), Err(PduError::Protocol(_))));
    let reserved_csg = with_flags(login, 0x80 | (2 << 2) | 3);
    assert!(matches!(LoginRequest::parse(&reserved_csg, 8192), Err(PduError::InvalidField(_))));
    let reserved_nsg = with_flags(login, 0x80 | 2);
    assert!(matches!(LoginRequest::parse(&reserved_nsg, 8192), Err(PduError::InvalidField(_))));
}

#[test]
fn text_request_refuses_f_with_c() {
    let b = TextRequest {
        itt: 1,
        ttt: RESERVED_TAG,
        immediate: false,
        final_bit: true,
        continue_bit: false,
        lun: 0,
        cmd_sn: 0,
        exp_stat_sn: 0,
        data_segment_length: 0,
    }
    .encode();
    let f_and_c = with_flags(b, b.bytes[1] | 0x40);
    assert!(matches!(TextRequest::parse(&f_and_c, LIMIT), Err(PduError::Protocol(_))));
}

#[test]
fn nop_out_with_the_reserved_itt_must_be_immediate() {
    let nop = NopOut {
        immediate: false,
        lun: 0,
        itt: RESERVED_TAG,
        ttt: RESERVED_TAG,
        cmd_sn: 0,
        exp_stat_sn: 0,
        data_segment_length: 0,
    };
    assert!(matches!(NopOut::parse(&nop.encode(), LIMIT), Err(PduError::Protocol(_))));
}

#[test]
fn logout_request_refuses_a_reserved_reason_and_a_clear_f_bit() {
    let b = LogoutRequest {
        immediate: true,
        reason: LogoutReason::CloseSession,
        itt: 1,
        cid: 0,
        cmd_sn: 0,
        exp_stat_sn: 0,
    }
    .encode();
    let reserved = with_flags(b, 0x80 | 3);
    assert!(matches!(LogoutRequest::parse(&reserved), Err(PduError::InvalidField(_))));
    let not_final = with_flags(b, 0x00);
    assert_eq!(LogoutRequest::parse(&not_final), Err(PduError::InvalidField("F bit must be 1")));
}

#[test]
fn snack_request_refuses_a_reserved_type() {
    let snack = SnackRequest {
        snack_type: SnackType::DataR2t,
        lun: 0,
        itt: 1,
        ttt_or_snack_tag: 0,
        exp_stat_sn: 0,
        beg_run: 0,
        run_length: 0,
    };
    let reserved = with_flags(snack.encode(), 0x80 | 4);
    assert!(matches!(SnackRequest::parse(&reserved), Err(PduError::InvalidField(_))));
}

#[test]
fn task_mgmt_request_refuses_data_and_keeps_unknown_functions() {
    let mut b = TaskMgmtRequest {
        immediate: true,
        function: TmfFunction::LogicalUnitReset,
        lun: 0,
        itt: 1,
        referenced_task_tag: RESERVED_TAG,
        cmd_sn: 0,
        exp_stat_sn: 0,
        ref_cmd_sn: 0,
        exp_data_sn: 0,
    }
    .encode();
    b.set_lengths(0, 4);
    assert!(matches!(TaskMgmtRequest::parse(&b), Err(PduError::UnexpectedSegment(_))));
    b.set_lengths(0, 0);
    b.bytes[1] = 0x80 | 0x7f;
    assert_eq!(TaskMgmtRequest::parse(&b).map(|t| t.function), Ok(TmfFunction::Other(0x7f)));
}

#[test]
fn login_refusal_echoes_isid_and_itt_and_zeroes_the_rest() {
    // A request that does not parse (reserved CSG), with every other byte set.
    let mut request = Bhs::from_bytes([0xa5; BHS_LEN]);
    request.bytes[0] = Opcode::LoginRequest as u8;
    let b = LoginResponse::refusal(&request, LoginStatus::InitiatorError, 0x0102_0304).encode();
    let mut expected = [0u8; BHS_LEN];
    expected[0] = 0x23;
    expected[8..14].copy_from_slice(&request.bytes[8..14]);
    expected[16..20].copy_from_slice(&request.bytes[16..20]);
    expected[24..28].copy_from_slice(&[1, 2, 3, 4]);
    expected[36] = 0x02;
    expected[37] = 0x00;
    assert_eq!(b.bytes, expected);
}

#[test]
fn ahs_extended_cdb_and_bidi() {
    let ext: Vec<u8> = (16u8..32).collect();
    let ahs = Ahs { extended_cdb: Some(&ext), bidi_read_expected_data_transfer_length: Some(4096) };
    let mut bytes = Vec::new();
    let words = ahs.encode(&mut bytes);
    assert_eq!(usize::from(words) * 4, bytes.len());
    // Extended CDB: AHSLength = CDB length - 15 = 17.
    assert_eq!(&bytes[..4], &[0, 17, 1, 0]);
    assert_eq!(bytes.len(), 20 + 8);
    assert_eq!(&bytes[20..24], &[0, 5, 2, 0]);
    let parsed = Ahs::parse(&bytes).expect("valid AHS");
    assert_eq!(parsed, ahs);
    let base: [u8; 16] = core::array::from_fn(|i| u8::try_from(i).unwrap_or(0));
    let cdb = Cdb::assemble(&base, parsed.extended_cdb);
    assert_eq!(cdb.as_bytes().len(), 32);
    assert_eq!(cdb.as_bytes()[31], 31);
    assert_eq!(Cdb::assemble(&base, None).as_bytes(), &base);

    assert!(Ahs::parse(&[0, 0, 1, 0]).is_err(), "AHSLength 0");
    assert!(Ahs::parse(&[0, 9, 1, 0, 1, 2, 3, 4]).is_err(), "beyond total");
    assert!(Ahs::parse(&[0, 5, 3, 0, 0, 0, 0, 0]).is_err(), "unknown type");
    assert!(Ahs::parse(&[0, 4, 2, 0, 0, 0, 0, 0]).is_err(), "bidi length");
    assert!(Ahs::parse(&[0, 5, 2, 0, 0, 0, 0, 1, 0, 5, 2, 0, 0, 0, 0, 1]).is_err(), "dup");
    assert!(Ahs::parse(&[0, 5]).is_err(), "truncated");
    assert_eq!(Ahs::parse(&[]), Ok(Ahs::default()));
}

#[test]
fn padding() {
    assert_eq!(pad_len(0), 0);
    assert_eq!(pad_len(1), 3);
    assert_eq!(pad_len(2), 2);
    assert_eq!(pad_len(3), 1);
    assert_eq!(pad_len(4), 0);
    assert_eq!(padded_len(5), 8);
    assert_eq!(padded_len(48), 48);
}

#[test]
fn serial_number_arithmetic() {
    assert!(sn_lt(1, 2));
    assert!(!sn_lt(2, 1));
    assert!(sn_lt(0xffff_ffff, 0), "wraps");
    assert!(sn_gt(0, 0xffff_fff0));
    assert!(sn_le(5, 5) && sn_ge(5, 5));
    assert!(!sn_lt(5, 5) && !sn_gt(5, 5));
    // Exactly 2^31 apart: undefined, neither less nor greater.
    assert!(!sn_lt(0, 0x8000_0000) && !sn_gt(0, 0x8000_0000));
    assert!(sn_in_window(10, 10, 20));
    assert!(sn_in_window(20, 10, 20));
    assert!(!sn_in_window(21, 10, 20));
    assert!(!sn_in_window(9, 10, 20));
    assert!(sn_in_window(1, 0xffff_fffe, 3), "window across wrap");
    // MaxCmdSN = ExpCmdSN - 1: closed window.
    assert!(!sn_in_window(10, 10, 9));
}

#[test]
fn login_status_codes() {
    assert_eq!(LoginStatus::NotFound.class(), 2);
    assert_eq!(LoginStatus::NotFound.detail(), 3);
    assert_eq!(LoginStatus::from_parts(2, 1), Some(LoginStatus::AuthenticationFailure));
    assert_eq!(LoginStatus::from_parts(3, 2), Some(LoginStatus::OutOfResources));
    assert_eq!(LoginStatus::from_parts(2, 0x0c), None);
}

#[test]
fn sense_segment() {
    let mut out = Vec::new();
    let len = encode_sense_segment(&[0x70, 0, 5], &mut out);
    assert_eq!(len, 5);
    assert_eq!(out, [0, 3, 0x70, 0, 5]);
}

proptest! {
    #[test]
    fn initiator_parse_never_panics_and_reencodes(
        raw in proptest::array::uniform32(any::<u8>()),
        tail in proptest::array::uniform16(any::<u8>()),
        limit in 0u32..(1 << 24),
    ) {
        let mut bytes = [0u8; 48];
        bytes[..32].copy_from_slice(&raw);
        bytes[32..].copy_from_slice(&tail);
        let bhs = Bhs::from_bytes(bytes);
        if let Ok(pdu) = InitiatorPdu::parse(&bhs, limit) {
            // Encoding drops only ignored bits: parsing again gives the same header.
            prop_assert_eq!(InitiatorPdu::parse(&pdu.encode(), limit), Ok(pdu));
        }
        if let Ok(pdu) = TargetPdu::parse(&bhs) {
            prop_assert_eq!(TargetPdu::parse(&pdu.encode()), Ok(pdu));
        }
    }

    #[test]
    fn initiator_parse_with_valid_opcode(
        opcode in prop::sample::select(vec![0u8, 1, 2, 3, 4, 5, 6, 0x10]),
        flags in any::<u8>(),
        rest in proptest::collection::vec(any::<u8>(), 46),
    ) {
        let mut bytes = [0u8; 48];
        bytes[0] = opcode | 0x40;
        bytes[1] = flags;
        bytes[2..].copy_from_slice(&rest);
        bytes[4] = 0;
        let bhs = Bhs::from_bytes(bytes);
        if let Ok(pdu) = InitiatorPdu::parse(&bhs, MAX_DATA_SEGMENT_LENGTH) {
            prop_assert_eq!(InitiatorPdu::parse(&pdu.encode(), MAX_DATA_SEGMENT_LENGTH), Ok(pdu));
        }
    }

    #[test]
    fn ahs_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        if let Ok(ahs) = Ahs::parse(&bytes) {
            if let Some(ext) = ahs.extended_cdb {
                prop_assert!(Cdb::assemble(&[0; 16], Some(ext)).as_bytes().len() <= MAX_CDB_LEN);
            }
        }
    }

    #[test]
    fn serial_lt_is_antisymmetric(a in any::<u32>(), b in any::<u32>()) {
        prop_assert!(!(sn_lt(a, b) && sn_lt(b, a)));
        prop_assert_eq!(sn_lt(a, b), sn_gt(b, a));
    }
}
