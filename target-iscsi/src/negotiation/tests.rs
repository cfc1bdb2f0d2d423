use super::*;
use crate::text::parse_pairs;

fn run(n: &mut Negotiator, text: &str) -> Result<Vec<(String, String)>, NegotiationError> {
    let bytes = text.replace(';', "\0");
    let pairs = parse_pairs(bytes.as_bytes()).expect("test text parses");
    let mut out = TextBuilder::new();
    n.negotiate(&pairs, Stage::LoginOperationalNegotiation, &mut out)?;
    let out = out.into_bytes();
    Ok(parse_pairs(&out)
        .expect("response parses")
        .into_iter()
        .map(|kv| (kv.key.to_owned(), kv.value.to_owned()))
        .collect())
}

fn answer(resp: &[(String, String)], key: &str) -> Option<String> {
    resp.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

/// Asserts the response answers each key with its value.
#[track_caller]
fn assert_answers(resp: &[(String, String)], expected: &[(&str, &str)]) {
    for (key, value) in expected {
        assert_eq!(answer(resp, key).as_deref(), Some(*value), "answer to {key}");
    }
}

fn normal() -> Negotiator {
    Negotiator::new(TargetLimits::default(), SessionType::Normal, true)
}

/// A new normal session's negotiator offered `text`, and its response.
fn normal_run(text: &str) -> (Negotiator, Vec<(String, String)>) {
    let mut n = normal();
    let r = run(&mut n, text).expect("ok");
    (n, r)
}

/// The answer to `key` when a new normal session's negotiator is offered `text`.
fn normal_answer(text: &str, key: &str) -> Option<String> {
    answer(&normal_run(text).1, key)
}

#[test]
fn digests_first_acceptable_in_initiator_order() {
    let (n, r) = normal_run("HeaderDigest=CRC32C,None;DataDigest=None,CRC32C");
    assert_answers(&r, &[("HeaderDigest", "CRC32C"), ("DataDigest", "None")]);
    assert_eq!(n.connection().header_digest, DigestKind::Crc32c);
    assert_eq!(n.connection().data_digest, DigestKind::None);

    let limits = TargetLimits {
        header_digest: DigestPolicy { allow_none: true, allow_crc32c: false },
        ..TargetLimits::default()
    };
    let mut n = Negotiator::new(limits, SessionType::Normal, true);
    let r = run(&mut n, "HeaderDigest=CRC32C,None;DataDigest=MD5,Foo").expect("ok");
    assert_answers(&r, &[("HeaderDigest", "None"), ("DataDigest", "Reject")]);
}

#[test]
fn required_digest_not_offered_fails_finish() {
    let limits = TargetLimits {
        data_digest: DigestPolicy { allow_none: false, allow_crc32c: true },
        ..TargetLimits::default()
    };
    let n = Negotiator::new(limits, SessionType::Normal, true);
    assert_eq!(n.finish(), Err(NegotiationError::NoAcceptableDigest("DataDigest")));
}

#[test]
fn numeric_minimum_keys() {
    let mut n = normal();
    let r = run(
        &mut n,
        "MaxConnections=4;MaxBurstLength=16776192;MaxOutstandingR2T=64;\
         DefaultTime2Retain=0;ErrorRecoveryLevel=2",
    )
    .expect("ok");
    assert_answers(
        &r,
        &[
            ("MaxConnections", "1"),
            ("MaxBurstLength", "1048576"),
            ("MaxOutstandingR2T", "8"),
            ("DefaultTime2Retain", "0"),
            ("ErrorRecoveryLevel", "0"),
        ],
    );
    let (s, _) = n.finish().expect("ok");
    assert_eq!(s.max_burst_length, 1_048_576);
    assert_eq!(s.max_outstanding_r2t, 8);
    assert_eq!(s.default_time2retain_s, 0);
    assert_eq!(s.error_recovery_level, 0);

    let (_, r) = normal_run("MaxBurstLength=65536;MaxOutstandingR2T=1");
    assert_answers(&r, &[("MaxBurstLength", "65536"), ("MaxOutstandingR2T", "1")]);
}

#[test]
fn numeric_maximum_time2wait() {
    let (_, r) = normal_run("DefaultTime2Wait=0");
    assert_eq!(answer(&r, "DefaultTime2Wait").as_deref(), Some("2"));
    let (n, r) = normal_run("DefaultTime2Wait=10");
    assert_eq!(answer(&r, "DefaultTime2Wait").as_deref(), Some("10"));
    assert_eq!(n.session().default_time2wait_s, 10);
}

#[test]
fn boolean_and_or() {
    // Target: InitialR2T=No (OR), ImmediateData=Yes (AND), in-order Yes (OR).
    let mut n = normal();
    let r = run(&mut n, "InitialR2T=No;ImmediateData=No;DataPDUInOrder=No;DataSequenceInOrder=No")
        .expect("ok");
    assert_answers(
        &r,
        &[
            ("InitialR2T", "No"),
            ("ImmediateData", "No"),
            ("DataPDUInOrder", "Yes"),
            ("DataSequenceInOrder", "Yes"),
        ],
    );

    let (_, r) = normal_run("InitialR2T=Yes;ImmediateData=Yes");
    assert_answers(&r, &[("InitialR2T", "Yes"), ("ImmediateData", "Yes")]);

    let limits = TargetLimits { immediate_data: false, ..TargetLimits::default() };
    let mut n = Negotiator::new(limits, SessionType::Normal, true);
    let r = run(&mut n, "ImmediateData=Yes").expect("ok");
    assert_eq!(answer(&r, "ImmediateData").as_deref(), Some("No"));

    assert_eq!(normal_answer("InitialR2T=Maybe", "InitialR2T").as_deref(), Some("Reject"));
}

#[test]
fn first_burst_irrelevant_and_capped() {
    let mut n = normal();
    // FirstBurstLength listed first; InitialR2T/ImmediateData later in the same text.
    let r = run(&mut n, "FirstBurstLength=65536;InitialR2T=Yes;ImmediateData=No").expect("ok");
    assert_eq!(answer(&r, "FirstBurstLength").as_deref(), Some("Irrelevant"));

    let (n, r) = normal_run("FirstBurstLength=16776192;MaxBurstLength=131072");
    assert_eq!(answer(&r, "FirstBurstLength").as_deref(), Some("131072"));
    let (s, _) = n.finish().expect("ok");
    assert!(s.first_burst_length <= s.max_burst_length);

    assert_eq!(normal_answer("FirstBurstLength=8192", "FirstBurstLength").as_deref(), Some("8192"));
}

#[test]
fn out_of_range_and_malformed_are_rejected() {
    let mut n = normal();
    let r = run(
        &mut n,
        "MaxBurstLength=511;MaxConnections=0;DefaultTime2Wait=3601;ErrorRecoveryLevel=3;\
         MaxOutstandingR2T=abc;MaxRecvDataSegmentLength=16777216",
    )
    .expect("ok");
    for k in [
        "MaxBurstLength",
        "MaxConnections",
        "DefaultTime2Wait",
        "ErrorRecoveryLevel",
        "MaxOutstandingR2T",
        "MaxRecvDataSegmentLength",
    ] {
        assert_eq!(answer(&r, k).as_deref(), Some("Reject"), "{k}");
    }
}

#[test]
fn hex_numbers_accepted() {
    assert_eq!(normal_answer("MaxBurstLength=0x10000", "MaxBurstLength").as_deref(), Some("65536"));
}

#[test]
fn max_recv_data_segment_length_is_declarative() {
    let (n, r) = normal_run("MaxRecvDataSegmentLength=65536");
    // The target does not answer the key, it declares its own value.
    assert_eq!(answer(&r, "MaxRecvDataSegmentLength").as_deref(), Some("262144"));
    assert_eq!(r.len(), 1);
    let (_, c) = n.finish().expect("ok");
    assert_eq!(c.max_xmit_data_segment_length, 65536);
    assert_eq!(c.max_recv_data_segment_length, 262_144);
}

#[test]
fn declaratives_recorded_without_answer() {
    let mut n = normal();
    let r =
        run(&mut n, "InitiatorName=iqn.x:y;InitiatorAlias=host;TargetName=iqn.t:0").expect("ok");
    assert!(r.is_empty());
    assert_eq!(n.session().initiator_name.as_deref(), Some("iqn.x:y"));
    assert_eq!(n.session().initiator_alias.as_deref(), Some("host"));
    assert_eq!(n.session().target_name.as_deref(), Some("iqn.t:0"));
}

#[test]
fn unknown_and_extension_keys_not_understood() {
    let (_, r) = normal_run("X-com.example.Foo=1;X#Bar=2;FutureKey=3");
    assert_answers(
        &r,
        &[
            ("X-com.example.Foo", "NotUnderstood"),
            ("X#Bar", "NotUnderstood"),
            ("FutureKey", "NotUnderstood"),
        ],
    );
}

#[test]
fn obsolete_marker_keys() {
    let (_, r) = normal_run("IFMarker=No;OFMarker=Yes;IFMarkInt=2048~4096;OFMarkInt=1");
    assert_answers(
        &r,
        &[("IFMarker", "No"), ("OFMarker", "No"), ("IFMarkInt", "Reject"), ("OFMarkInt", "Reject")],
    );
}

#[test]
fn task_reporting_and_protocol_level() {
    let (_, r) = normal_run("TaskReporting=FastAbort,RFC3720;iSCSIProtocolLevel=2");
    assert_answers(&r, &[("TaskReporting", "RFC3720"), ("iSCSIProtocolLevel", "1")]);
    assert_eq!(
        normal_answer("TaskReporting=FastAbort", "TaskReporting").as_deref(),
        Some("Reject")
    );
}

#[test]
fn rdma_extensions_and() {
    let (_, r) = normal_run("RDMAExtensions=Yes");
    assert_eq!(answer(&r, "RDMAExtensions").as_deref(), Some("No"));
    let limits = TargetLimits { rdma_extensions: true, ..TargetLimits::default() };
    let mut n = Negotiator::new(limits, SessionType::Normal, true);
    let r = run(&mut n, "RDMAExtensions=Yes").expect("ok");
    assert_eq!(answer(&r, "RDMAExtensions").as_deref(), Some("Yes"));
}

#[test]
fn discovery_session_irrelevant_keys() {
    let mut n = Negotiator::new(TargetLimits::default(), SessionType::Discovery, true);
    let r = run(
        &mut n,
        "MaxConnections=1;InitialR2T=No;ImmediateData=Yes;MaxBurstLength=262144;\
         FirstBurstLength=65536;MaxOutstandingR2T=1;DataPDUInOrder=Yes;\
         DataSequenceInOrder=Yes;HeaderDigest=None;DefaultTime2Wait=2",
    )
    .expect("ok");
    for k in [
        "MaxConnections",
        "InitialR2T",
        "ImmediateData",
        "MaxBurstLength",
        "FirstBurstLength",
        "MaxOutstandingR2T",
        "DataPDUInOrder",
        "DataSequenceInOrder",
    ] {
        assert_eq!(answer(&r, k).as_deref(), Some("Irrelevant"), "{k}");
    }
    assert_answers(&r, &[("HeaderDigest", "None"), ("DefaultTime2Wait", "2")]);
}

#[test]
fn renegotiation_fails_login() {
    let mut n = normal();
    run(&mut n, "MaxBurstLength=65536").expect("ok");
    assert_eq!(
        run(&mut n, "MaxBurstLength=65536"),
        Err(NegotiationError::Renegotiated("MaxBurstLength".into()))
    );
}

#[test]
fn security_key_outside_security_stage() {
    let mut n = normal();
    let e = run(&mut n, "AuthMethod=None").expect_err("must fail");
    assert_eq!(e, NegotiationError::SecurityKeyOutOfStage("AuthMethod".into()));
    assert_eq!(e.login_status(), LoginStatus::InitiatorError);
    let mut n = normal();
    assert!(run(&mut n, "CHAP_A=5").is_err());
}

#[test]
fn leading_only_keys_on_non_leading_login() {
    let mut n = Negotiator::new(TargetLimits::default(), SessionType::Normal, false);
    assert_eq!(
        run(&mut n, "MaxBurstLength=65536"),
        Err(NegotiationError::LeadingOnlyKey("MaxBurstLength".into()))
    );
    let mut n = Negotiator::new(TargetLimits::default(), SessionType::Normal, false);
    let r = run(&mut n, "HeaderDigest=None;MaxRecvDataSegmentLength=8192").expect("ok");
    assert_eq!(answer(&r, "HeaderDigest").as_deref(), Some("None"));
}

#[test]
fn target_only_keys_from_initiator() {
    let mut n = normal();
    assert_eq!(
        run(&mut n, "TargetPortalGroupTag=1"),
        Err(NegotiationError::TargetOnlyKey("TargetPortalGroupTag".into()))
    );
}

#[test]
fn target_offers_what_defaults_cannot_honour() {
    let limits = TargetLimits {
        max_burst_length: 65536,
        first_burst_length: 16384,
        ..TargetLimits::default()
    };
    let mut n = Negotiator::new(limits, SessionType::Normal, true);
    let mut out = TextBuilder::new();
    assert!(n.target_offers(&mut out));
    let bytes = out.into_bytes();
    let offers = parse_pairs(&bytes).expect("ok");
    let keys: Vec<&str> = offers.iter().map(|kv| kv.key).collect();
    assert_eq!(keys, ["MaxRecvDataSegmentLength", "MaxBurstLength", "FirstBurstLength"]);
    assert!(n.awaiting_answers());
    // The initiator answers (lower for one key); answers are not re-offers.
    let r = run(&mut n, "MaxBurstLength=32768;FirstBurstLength=16384").expect("ok");
    assert!(r.is_empty());
    assert!(!n.awaiting_answers());
    let mut out = TextBuilder::new();
    assert!(!n.target_offers(&mut out));
    let (s, _) = n.finish().expect("ok");
    assert_eq!(s.max_burst_length, 32768);
    assert_eq!(s.first_burst_length, 16384);
}

#[test]
fn defaults_follow_rfc() {
    let s = SessionParams::default();
    assert_eq!(s.max_burst_length, 262_144);
    assert_eq!(s.first_burst_length, 65_536);
    assert!(s.initial_r2t && s.immediate_data);
    assert_eq!(s.default_time2wait_s, 2);
    assert_eq!(s.default_time2retain_s, 20);
    assert_eq!(s.max_outstanding_r2t, 1);
    let c = ConnectionParams::default();
    assert_eq!(c.max_recv_data_segment_length, 8192);
    assert_eq!(c.header_digest, DigestKind::None);
}

#[test]
fn no_offers_when_initiator_sent_everything() {
    let mut n = normal();
    run(
        &mut n,
        "HeaderDigest=None;DataDigest=None;InitialR2T=No;ImmediateData=Yes;\
         MaxBurstLength=262144;FirstBurstLength=65536;MaxRecvDataSegmentLength=262144;\
         DefaultTime2Wait=2;DefaultTime2Retain=0;MaxConnections=1;MaxOutstandingR2T=1;\
         ErrorRecoveryLevel=0;DataPDUInOrder=Yes;DataSequenceInOrder=Yes",
    )
    .expect("ok");
    let mut out = TextBuilder::new();
    assert!(!n.target_offers(&mut out));
    assert!(out.is_empty(), "MaxRecvDataSegmentLength already declared");
    let (s, c) = n.finish().expect("ok");
    assert!(!s.initial_r2t);
    assert!(s.immediate_data);
    assert_eq!(c.max_xmit_data_segment_length, 262_144);
}
