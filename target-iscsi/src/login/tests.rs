use super::*;
use crate::chap::{ChapAlgorithm, ChapSecret};
use crate::text::{encode_hex, parse_binary};

const INITIATOR: &str = "iqn.2024-01.org.example:host1";
const TARGET: &str = "iqn.2024-01.org.ferrite:disk0";

fn chap_creds(mutual: bool) -> ChapCredentials {
    ChapCredentials {
        initiator: ChapSecret { username: "user".into(), secret: b"initiator-pass".to_vec() },
        mutual: mutual
            .then(|| ChapSecret { username: "tgt".into(), secret: b"target-pass-1".to_vec() }),
    }
}

fn config() -> LoginConfig {
    LoginConfig {
        targets: vec![
            TargetConfig::open(TARGET, Some("disk zero"), 1),
            TargetConfig {
                acl: Some(vec![INITIATOR.into()]),
                chap: Some(chap_creds(true)),
                ..TargetConfig::open("iqn.2024-01.org.ferrite:secure", None, 2)
            },
            TargetConfig {
                acl: Some(vec!["iqn.2024-01.org.example:other".into()]),
                ..TargetConfig::open("iqn.2024-01.org.ferrite:private", None, 1)
            },
        ],
        discovery_chap: None,
        limits: TargetLimits::default(),
    }
}

fn req(csg: Stage, nsg: Option<Stage>) -> LoginRequest {
    LoginRequest {
        transit: nsg.is_some(),
        continue_bit: false,
        csg,
        nsg,
        version_max: 0,
        version_min: 0,
        isid: Isid([0x40, 0, 0, 0x23, 0x3d, 0]),
        tsih: 0,
        itt: 0x1000,
        cid: 1,
        cmd_sn: 1,
        exp_stat_sn: 0,
        data_segment_length: 0,
    }
}

/// A request that stays in operational negotiation.
fn in_operational() -> LoginRequest {
    req(Stage::LoginOperationalNegotiation, None)
}

/// A request that stays in security negotiation.
fn in_security() -> LoginRequest {
    req(Stage::SecurityNegotiation, None)
}

/// A request to leave operational negotiation for the full-feature phase.
fn op_to_ffp() -> LoginRequest {
    req(Stage::LoginOperationalNegotiation, Some(Stage::FullFeaturePhase))
}

/// A request to leave security negotiation for operational negotiation.
fn sec_to_op() -> LoginRequest {
    req(Stage::SecurityNegotiation, Some(Stage::LoginOperationalNegotiation))
}

/// The first step of a new login with the test configuration.
fn first_step(r: LoginRequest, t: &str) -> LoginReply {
    step(&mut Login::new(), &config(), r, t)
}

/// The first step of a new login, which must fail with `status`.
#[track_caller]
fn refused(r: LoginRequest, t: &str, status: LoginStatus) -> LoginReply {
    let reply = first_step(r, t);
    assert_eq!(reply.outcome, LoginOutcome::Fail(status));
    reply
}

fn text(s: &str) -> Vec<u8> {
    let mut v = s.replace(';', "\0").into_bytes();
    v.push(0);
    v
}

fn step(l: &mut Login, c: &LoginConfig, r: LoginRequest, t: &str) -> LoginReply {
    let data = if t.is_empty() { Vec::new() } else { text(t) };
    let r = LoginRequest { data_segment_length: u32::try_from(data.len()).unwrap_or(0), ..r };
    l.step(c, &r, &data)
}

fn value(reply: &LoginReply, key: &str) -> Option<String> {
    parse_pairs(&reply.text)
        .expect("valid response")
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| kv.value.to_owned())
}

const OPS: &str = "HeaderDigest=None;DataDigest=None;InitialR2T=No;ImmediateData=Yes;\
    MaxBurstLength=262144;FirstBurstLength=65536;MaxRecvDataSegmentLength=65536;\
    DefaultTime2Wait=2;DefaultTime2Retain=0;MaxConnections=1;MaxOutstandingR2T=1;\
    ErrorRecoveryLevel=0;DataPDUInOrder=Yes;DataSequenceInOrder=Yes;IFMarker=No;OFMarker=No";

fn expect_full(reply: &LoginReply) -> LoginResult {
    match &reply.outcome {
        LoginOutcome::FullFeature(r) => (**r).clone(),
        other => panic!("expected full feature, got {other:?}"),
    }
}

#[test]
fn normal_login_without_auth_straight_to_operational() {
    let c = config();
    let mut l = Login::new();
    let t = format!("InitiatorName={INITIATOR};SessionType=Normal;TargetName={TARGET};{OPS}");
    let r = step(&mut l, &c, op_to_ffp(), &t);
    assert_eq!(r.response.status, LoginStatus::Success);
    assert!(r.response.transit);
    assert_eq!(r.response.nsg, Some(Stage::FullFeaturePhase));
    assert_eq!(value(&r, "TargetPortalGroupTag").as_deref(), Some("1"));
    assert_eq!(value(&r, "TargetAlias").as_deref(), Some("disk zero"));
    assert_eq!(value(&r, "MaxRecvDataSegmentLength").as_deref(), Some("262144"));
    assert_eq!(value(&r, "InitialR2T").as_deref(), Some("No"));
    let res = expect_full(&r);
    assert_eq!(res.kind, SessionKind::Normal { target_index: 0 });
    assert_eq!(res.initiator_name, INITIATOR);
    assert_eq!(res.tsih_requested, 0);
    assert_eq!(res.connection.max_xmit_data_segment_length, 65536);
    assert_eq!(res.session.default_time2retain_s, 0);
    // Encoded header round-trips and carries the stage bits.
    let bhs = r.response.encode();
    assert_eq!(bhs.bytes[1], 0x80 | (1 << 2) | 3);
    assert_eq!(r.response.data_segment_length as usize, r.text.len());
    // No further login requests.
    let again = step(&mut l, &c, in_operational(), "");
    assert!(matches!(again.outcome, LoginOutcome::Fail(_)));
}

#[test]
fn security_stage_none_then_operational() {
    let c = config();
    let mut l = Login::new();
    let t = format!("InitiatorName={INITIATOR};TargetName={TARGET};AuthMethod=CHAP,None");
    let r = step(&mut l, &c, sec_to_op(), &t);
    assert_eq!(value(&r, "AuthMethod").as_deref(), Some("None"));
    assert!(r.response.transit);
    assert_eq!(r.response.nsg, Some(Stage::LoginOperationalNegotiation));
    assert_eq!(r.outcome, LoginOutcome::Continue);
    let r = step(&mut l, &c, op_to_ffp(), OPS);
    expect_full(&r);
    assert!(value(&r, "TargetPortalGroupTag").is_none(), "only on the first response");
}

#[test]
fn discovery_session() {
    let c = config();
    let mut l = Login::new();
    let t = format!("InitiatorName={INITIATOR};SessionType=Discovery;{OPS}");
    let r = step(&mut l, &c, op_to_ffp(), &t);
    let res = expect_full(&r);
    assert_eq!(res.kind, SessionKind::Discovery);
    assert_eq!(value(&r, "MaxBurstLength").as_deref(), Some("Irrelevant"));
    assert!(value(&r, "TargetPortalGroupTag").is_none());
}

#[test]
fn missing_initiator_name_and_target_name() {
    let r =
        refused(in_operational(), &format!("TargetName={TARGET}"), LoginStatus::MissingParameter);
    assert_eq!(r.response.status.class(), 2);
    assert_eq!(r.response.status.detail(), 7);
    refused(in_operational(), &format!("InitiatorName={INITIATOR}"), LoginStatus::MissingParameter);
}

#[test]
fn unknown_target_is_not_found() {
    let r = refused(
        in_operational(),
        &format!("InitiatorName={INITIATOR};TargetName=iqn.2024-01.org.ferrite:nope"),
        LoginStatus::NotFound,
    );
    let bhs = r.response.encode();
    assert_eq!((bhs.bytes[36], bhs.bytes[37]), (2, 3));
    assert!(r.text.is_empty());
}

#[test]
fn acl_refusal_is_authorization_failure() {
    let mut l = Login::new();
    let r = step(
        &mut l,
        &config(),
        in_security(),
        &format!("InitiatorName={INITIATOR};TargetName=iqn.2024-01.org.ferrite:private"),
    );
    assert_eq!(r.outcome, LoginOutcome::Fail(LoginStatus::AuthorizationFailure));
    assert_eq!(l.claim().map(|c| c.session), Some(ClaimedSession::Target(2)));
}

#[test]
fn bad_session_type_and_version() {
    refused(
        in_security(),
        &format!("InitiatorName={INITIATOR};SessionType=Bogus"),
        LoginStatus::SessionTypeNotSupported,
    );
    let mut rq = in_security();
    rq.version_min = 1;
    rq.version_max = 2;
    let r = step(&mut Login::new(), &config(), rq, &format!("InitiatorName={INITIATOR}"));
    assert_eq!(r.outcome, LoginOutcome::Fail(LoginStatus::UnsupportedVersion));
}

#[test]
fn chap_required_but_security_skipped() {
    refused(
        op_to_ffp(),
        &format!("InitiatorName={INITIATOR};TargetName=iqn.2024-01.org.ferrite:secure"),
        LoginStatus::AuthenticationFailure,
    );
}

#[test]
fn chap_required_but_only_none_offered() {
    let r = step(
        &mut Login::new(),
        &config(),
        sec_to_op(),
        &format!(
            "InitiatorName={INITIATOR};TargetName=iqn.2024-01.org.ferrite:secure;AuthMethod=None"
        ),
    );
    assert_eq!(r.outcome, LoginOutcome::Fail(LoginStatus::AuthenticationFailure));
}

/// Runs a CHAP login up to the challenge; returns (login, identifier, challenge).
fn chap_to_challenge(c: &LoginConfig, target: &str) -> (Login, u8, Vec<u8>) {
    let mut l = Login::new();
    let r = step(
        &mut l,
        c,
        in_security(),
        &format!("InitiatorName={INITIATOR};TargetName={target};AuthMethod=CHAP,None"),
    );
    assert_eq!(value(&r, "AuthMethod").as_deref(), Some("CHAP"));
    assert!(!r.response.transit);
    let r = step(&mut l, c, in_security(), "CHAP_A=5");
    assert_eq!(value(&r, "CHAP_A").as_deref(), Some("5"));
    let id = value(&r, "CHAP_I").and_then(|v| v.parse::<u8>().ok()).expect("CHAP_I");
    let challenge = parse_binary(&value(&r, "CHAP_C").expect("CHAP_C")).expect("hex");
    (l, id, challenge)
}

#[test]
fn chap_mutual_login_succeeds() {
    let c = config();
    let secure = "iqn.2024-01.org.ferrite:secure";
    let (mut l, id, challenge) = chap_to_challenge(&c, secure);
    let resp = ChapAlgorithm::Md5.response(id, b"initiator-pass", &challenge);
    let my_challenge = [0x5au8; 16];
    let r = step(
        &mut l,
        &c,
        sec_to_op(),
        &format!(
            "CHAP_N=user;CHAP_R={};CHAP_I=9;CHAP_C={}",
            encode_hex(&resp),
            encode_hex(&my_challenge)
        ),
    );
    assert_eq!(r.response.status, LoginStatus::Success, "{:?}", r.outcome);
    assert!(r.response.transit);
    assert_eq!(value(&r, "CHAP_N").as_deref(), Some("tgt"));
    let target_r = parse_binary(&value(&r, "CHAP_R").expect("CHAP_R")).expect("hex");
    assert_eq!(target_r, ChapAlgorithm::Md5.response(9, b"target-pass-1", &my_challenge));
    let r = step(&mut l, &c, op_to_ffp(), OPS);
    assert_eq!(expect_full(&r).kind, SessionKind::Normal { target_index: 1 });
}

#[test]
fn chap_wrong_password_refused() {
    let c = config();
    let (mut l, id, challenge) = chap_to_challenge(&c, "iqn.2024-01.org.ferrite:secure");
    let resp = ChapAlgorithm::Md5.response(id, b"wrong-pass", &challenge);
    let r = step(&mut l, &c, sec_to_op(), &format!("CHAP_N=user;CHAP_R={}", encode_hex(&resp)));
    assert_eq!(r.outcome, LoginOutcome::Fail(LoginStatus::AuthenticationFailure));
    assert_eq!(r.response.encode().bytes[36..38], [2, 1]);
    // The failure is reported with who asked for what.
    let claim = l.claim().expect("claim");
    assert_eq!(claim.initiator_name.as_deref(), Some(INITIATOR));
    assert_eq!(claim.session, ClaimedSession::Target(1));
}

#[test]
fn chap_reflected_challenge_refused() {
    let c = config();
    let (mut l, id, challenge) = chap_to_challenge(&c, "iqn.2024-01.org.ferrite:secure");
    let resp = ChapAlgorithm::Md5.response(id, b"initiator-pass", &challenge);
    let r = step(
        &mut l,
        &c,
        sec_to_op(),
        &format!(
            "CHAP_N=user;CHAP_R={};CHAP_I={id};CHAP_C={}",
            encode_hex(&resp),
            encode_hex(&challenge)
        ),
    );
    assert_eq!(r.outcome, LoginOutcome::Fail(LoginStatus::AuthenticationFailure));
}

#[test]
fn transit_before_authentication_is_held() {
    let c = config();
    let mut l = Login::new();
    let r = step(
        &mut l,
        &c,
        sec_to_op(),
        &format!(
            "InitiatorName={INITIATOR};TargetName=iqn.2024-01.org.ferrite:secure;AuthMethod=CHAP"
        ),
    );
    assert_eq!(r.outcome, LoginOutcome::Continue);
    assert!(!r.response.transit, "no transit while CHAP is pending");
}

#[test]
fn discovery_chap_required() {
    let mut c = config();
    c.discovery_chap = Some(chap_creds(false));
    let t = format!("InitiatorName={INITIATOR};SessionType=Discovery");
    let r = step(&mut Login::new(), &c, op_to_ffp(), &t);
    assert_eq!(r.outcome, LoginOutcome::Fail(LoginStatus::AuthenticationFailure));
}

#[test]
fn text_continuation_is_reassembled() {
    let c = config();
    let mut l = Login::new();
    let full = text(&format!("InitiatorName={INITIATOR};TargetName={TARGET};{OPS}"));
    let (a, b) = full.split_at(20);
    let mut r1 = in_operational();
    r1.continue_bit = true;
    r1.data_segment_length = 20;
    let reply = l.step(&c, &r1, a);
    assert_eq!(reply.outcome, LoginOutcome::Continue);
    assert!(reply.text.is_empty());
    let r2 = op_to_ffp();
    let reply = l.step(&c, &r2, b);
    expect_full(&reply);
}

#[test]
fn changed_isid_or_stage_mismatch_fails() {
    let c = config();
    let mut l = Login::new();
    let t = format!("InitiatorName={INITIATOR};TargetName={TARGET};AuthMethod=None");
    step(&mut l, &c, in_security(), &t);
    let mut r = in_security();
    r.isid = Isid([1; 6]);
    let reply = step(&mut l, &c, r, "");
    assert_eq!(reply.outcome, LoginOutcome::Fail(LoginStatus::InitiatorError));

    let mut l = Login::new();
    step(&mut l, &c, in_security(), &t);
    // Jumping to operational without the target agreeing to transit.
    let reply = step(&mut l, &c, in_operational(), "");
    assert_eq!(reply.outcome, LoginOutcome::Fail(LoginStatus::InitiatorError));
}

#[test]
fn duplicate_key_across_pdus_fails() {
    let c = config();
    let mut l = Login::new();
    let t = format!("InitiatorName={INITIATOR};TargetName={TARGET};MaxBurstLength=65536");
    let r = step(&mut l, &c, in_operational(), &t);
    assert_eq!(r.outcome, LoginOutcome::Continue);
    let r = step(&mut l, &c, in_operational(), "MaxBurstLength=65536");
    assert_eq!(r.outcome, LoginOutcome::Fail(LoginStatus::InitiatorError));
}

#[test]
fn non_leading_login_reports_tsih() {
    let mut r = op_to_ffp();
    r.tsih = 7;
    let reply = first_step(
        r,
        &format!("InitiatorName={INITIATOR};TargetName={TARGET};MaxRecvDataSegmentLength=8192"),
    );
    let res = expect_full(&reply);
    assert_eq!(res.tsih_requested, 7);
    assert_eq!(reply.response.tsih, 7);
}

#[test]
fn flood_of_unknown_keys_is_refused() {
    let c = config();
    let mut t = format!("InitiatorName={INITIATOR};TargetName={TARGET}");
    for i in 0..200 {
        t.push_str(&format!(";X-vendor.key.with.a.long.name.{i:04}=1"));
    }
    let data = text(&t);
    let mut r = in_operational();
    r.data_segment_length = u32::try_from(data.len()).unwrap_or(0);
    assert!(data.len() <= 8192, "request fits one login PDU");
    let reply = Login::new().step(&c, &r, &data);
    assert_eq!(reply.outcome, LoginOutcome::Fail(LoginStatus::InitiatorError));
}

#[test]
fn send_targets_respects_acl_and_scope() {
    let c = config();
    let portals = [
        Portal { host: "10.0.0.1".into(), port: 3260 },
        Portal { host: "fe80::1".into(), port: 3261 },
    ];
    let all = send_targets(&c, &portals, INITIATOR, SendTargetsScope::All);
    let pairs = parse_all(&all);
    assert_eq!(
        pairs,
        vec![
            ("TargetName".to_owned(), TARGET.to_owned()),
            ("TargetAddress".to_owned(), "10.0.0.1:3260,1".to_owned()),
            ("TargetAddress".to_owned(), "[fe80::1]:3261,1".to_owned()),
            ("TargetName".to_owned(), "iqn.2024-01.org.ferrite:secure".to_owned()),
            ("TargetAddress".to_owned(), "10.0.0.1:3260,2".to_owned()),
            ("TargetAddress".to_owned(), "[fe80::1]:3261,2".to_owned()),
        ]
    );
    let other =
        send_targets(&c, &portals[..1], "iqn.2024-01.org.example:other", SendTargetsScope::All);
    let names: Vec<String> =
        parse_all(&other).into_iter().filter(|(k, _)| k == "TargetName").map(|(_, v)| v).collect();
    assert_eq!(names, [TARGET, "iqn.2024-01.org.ferrite:private"]);
    let one = send_targets(&c, &portals[..1], INITIATOR, SendTargetsScope::Named(TARGET));
    assert_eq!(parse_all(&one).len(), 2);
    let hidden = send_targets(
        &c,
        &portals[..1],
        INITIATOR,
        SendTargetsScope::Named("iqn.2024-01.org.ferrite:private"),
    );
    assert!(hidden.is_empty());
    assert_eq!(SendTargetsScope::parse("All", None), Some(SendTargetsScope::All));
    assert_eq!(SendTargetsScope::parse("All", Some(TARGET)), None);
    assert_eq!(SendTargetsScope::parse("", Some(TARGET)), Some(SendTargetsScope::Named(TARGET)));
}

proptest::proptest! {
    /// Hostile login texts split over PDUs never panic, and every reply respects the
    /// 8192-byte login segment limit.
    #[test]
    fn login_never_panics(
        control in proptest::prelude::any::<u16>(),
        body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000),
        prefix in proptest::sample::select(vec![
            "",
            "InitiatorName=iqn.2024-01.org.example:host1\0TargetName=iqn.2024-01.org.ferrite:disk0\0",
            "InitiatorName=iqn.2024-01.org.example:host1\0TargetName=iqn.2024-01.org.ferrite:secure\0AuthMethod=CHAP\0",
            "InitiatorName=iqn.2024-01.org.example:host1\0SessionType=Discovery\0",
        ]),
    ) {
        let c = config();
        let mut l = Login::new();
        let mut data = prefix.as_bytes().to_vec();
        data.extend_from_slice(&body);
        let pieces = data.len().div_ceil(4).max(1);
        for (i, chunk) in data.chunks(pieces).enumerate() {
            let bits = control >> (i * 4);
            let csg = if bits & 1 == 0 {
                Stage::SecurityNegotiation
            } else {
                Stage::LoginOperationalNegotiation
            };
            let transit = bits & 2 != 0;
            let mut r = req(csg, transit.then_some(Stage::FullFeaturePhase));
            r.continue_bit = !transit && bits & 4 != 0;
            r.data_segment_length = u32::try_from(chunk.len()).unwrap_or(u32::MAX);
            let reply = l.step(&c, &r, chunk);
            proptest::prop_assert!(reply.text.len() <= 8192);
            proptest::prop_assert_eq!(reply.response.data_segment_length as usize, reply.text.len());
            if !matches!(reply.outcome, LoginOutcome::Continue) {
                break;
            }
        }
    }
}

/// Parses a text that may repeat keys (SendTargets responses repeat TargetAddress).
fn parse_all(t: &[u8]) -> Vec<(String, String)> {
    t.split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let s = String::from_utf8_lossy(s);
            let (k, v) = s.split_once('=').unwrap_or((&s, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}
