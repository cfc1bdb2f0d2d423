//! CHAP authentication (RFC 1994 as profiled by RFC 7143 §12.1.3), target side, with
//! optional mutual authentication.
//!
//! ```text
//! I->T  CHAP_A=<A1,A2,...>
//! T->I  CHAP_A=<A> CHAP_I=<I> CHAP_C=<C>
//! I->T  CHAP_N=<N> CHAP_R=<R>             [CHAP_I=<I'> CHAP_C=<C'>  (mutual)]
//! T->I                                    [CHAP_N=<N'> CHAP_R=<R'>  (mutual)]
//! ```
//!
//! R = H(I || secret || C) with H the chosen algorithm (5 MD5, 7 SHA-256, 8 SHA3-256; SHA-1
//! (6) is not offered). Challenges come from the OS random source; responses are compared in
//! constant time; a reflected challenge and a mutual secret equal to the initiator's are
//! refused.

use std::fmt;

use md5::Md5;
use sha2::Sha256;
use sha3::Sha3_256;

use crate::text::{encode_hex, parse_binary, parse_number, TextBuilder};

/// Longest challenge accepted from an initiator (mutual CHAP), bytes.
pub const MAX_CHALLENGE_LEN: usize = 1024;

/// CHAP hash algorithms by their IANA PPP authentication algorithm number (CHAP_A).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChapAlgorithm {
    /// 5: MD5.
    Md5,
    /// 7: SHA-256.
    Sha256,
    /// 8: SHA3-256.
    Sha3_256,
}

impl ChapAlgorithm {
    /// The CHAP_A number.
    #[must_use]
    pub const fn code(self) -> u8 {
        match self {
            Self::Md5 => 5,
            Self::Sha256 => 7,
            Self::Sha3_256 => 8,
        }
    }

    /// The algorithm for a CHAP_A number, if supported.
    #[must_use]
    pub const fn from_code(code: u64) -> Option<Self> {
        match code {
            5 => Some(Self::Md5),
            7 => Some(Self::Sha256),
            8 => Some(Self::Sha3_256),
            _ => None,
        }
    }

    /// Digest (and response) length in bytes.
    #[must_use]
    pub const fn digest_len(self) -> usize {
        match self {
            Self::Md5 => 16,
            Self::Sha256 | Self::Sha3_256 => 32,
        }
    }

    /// Length of the challenges this target sends: as long as the digest.
    #[must_use]
    pub const fn challenge_len(self) -> usize {
        self.digest_len()
    }

    /// The CHAP response H(identifier || secret || challenge).
    #[must_use]
    pub fn response(self, identifier: u8, secret: &[u8], challenge: &[u8]) -> Vec<u8> {
        fn run<D: sha3::Digest>(identifier: u8, secret: &[u8], challenge: &[u8]) -> Vec<u8> {
            let mut h = D::new();
            h.update([identifier]);
            h.update(secret);
            h.update(challenge);
            h.finalize().to_vec()
        }
        match self {
            Self::Md5 => run::<Md5>(identifier, secret, challenge),
            Self::Sha256 => run::<Sha256>(identifier, secret, challenge),
            Self::Sha3_256 => run::<Sha3_256>(identifier, secret, challenge),
        }
    }
}

/// The first algorithm of the initiator's CHAP_A list that this target supports.
#[must_use]
pub fn choose_algorithm(chap_a: &str) -> Option<ChapAlgorithm> {
    chap_a.split(',').find_map(|v| parse_number(v).ok().and_then(ChapAlgorithm::from_code))
}

/// A CHAP name and secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ChapSecret {
    /// CHAP_N.
    pub username: String,
    /// Shared secret.
    pub secret: Vec<u8>,
}

impl fmt::Debug for ChapSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChapSecret")
            .field("username", &self.username)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Credentials a target requires, with optional mutual (target-to-initiator) credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChapCredentials {
    /// What the initiator must prove (its CHAP_N and secret).
    pub initiator: ChapSecret,
    /// What the target proves when the initiator asks (mutual CHAP).
    pub mutual: Option<ChapSecret>,
}

impl ChapCredentials {
    /// Checks the configuration rules of RFC 7143 §12.1.3.
    ///
    /// # Errors
    /// [`ChapError::MutualSecretEqual`] when both directions share one secret;
    /// [`ChapError::EmptySecret`] for an empty secret.
    pub fn validate(&self) -> Result<(), ChapError> {
        if self.initiator.secret.is_empty() {
            return Err(ChapError::EmptySecret);
        }
        if let Some(m) = &self.mutual {
            if m.secret.is_empty() {
                return Err(ChapError::EmptySecret);
            }
            if m.secret == self.initiator.secret {
                return Err(ChapError::MutualSecretEqual);
            }
        }
        Ok(())
    }
}

/// Why CHAP authentication failed. All of them end the login with 0x0201 (authentication
/// failure) except [`ChapError::Random`] (target error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChapError {
    /// No algorithm of CHAP_A is supported.
    NoAlgorithm,
    /// A CHAP key is missing.
    MissingKey(&'static str),
    /// A CHAP value is malformed.
    Malformed(&'static str),
    /// CHAP_N does not name the configured user.
    UnknownUser,
    /// CHAP_R does not match.
    BadResponse,
    /// The initiator sent back the target's own challenge.
    ReflectedChallenge,
    /// The initiator asked for mutual CHAP and the target has no mutual credentials.
    MutualNotConfigured,
    /// The mutual secret equals the initiator secret.
    MutualSecretEqual,
    /// An empty secret is configured.
    EmptySecret,
    /// The OS random source failed.
    Random,
}

impl fmt::Display for ChapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoAlgorithm => write!(f, "no supported CHAP_A algorithm"),
            Self::MissingKey(k) => write!(f, "missing {k}"),
            Self::Malformed(k) => write!(f, "malformed {k}"),
            Self::UnknownUser => write!(f, "unknown CHAP_N"),
            Self::BadResponse => write!(f, "CHAP_R does not match"),
            Self::ReflectedChallenge => write!(f, "initiator reflected the target's challenge"),
            Self::MutualNotConfigured => write!(f, "mutual CHAP requested but not configured"),
            Self::MutualSecretEqual => write!(f, "mutual CHAP secret equals initiator secret"),
            Self::EmptySecret => write!(f, "empty CHAP secret"),
            Self::Random => write!(f, "random source failed"),
        }
    }
}

impl std::error::Error for ChapError {}

/// Constant-time equality: the time depends only on the lengths.
#[must_use]
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The initiator's answer to the target's challenge (CHAP_N, CHAP_R and, for mutual CHAP,
/// CHAP_I and CHAP_C), as raw key values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChapReply<'a> {
    /// CHAP_N.
    pub name: Option<&'a str>,
    /// CHAP_R.
    pub response: Option<&'a str>,
    /// CHAP_I (mutual).
    pub identifier: Option<&'a str>,
    /// CHAP_C (mutual).
    pub challenge: Option<&'a str>,
}

/// Target side of one CHAP exchange.
#[derive(Clone, PartialEq, Eq)]
pub struct ChapExchange {
    algorithm: ChapAlgorithm,
    identifier: u8,
    challenge: Vec<u8>,
}

impl fmt::Debug for ChapExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChapExchange")
            .field("algorithm", &self.algorithm)
            .field("identifier", &self.identifier)
            .finish_non_exhaustive()
    }
}

impl ChapExchange {
    /// Picks the algorithm from CHAP_A, draws identifier and challenge from the OS random
    /// source and appends CHAP_A, CHAP_I and CHAP_C to `out`.
    ///
    /// # Errors
    /// [`ChapError::NoAlgorithm`] (the caller answers `CHAP_A=Reject` and fails the login),
    /// [`ChapError::Random`].
    pub fn start(chap_a: &str, out: &mut TextBuilder) -> Result<Self, ChapError> {
        let algorithm = choose_algorithm(chap_a).ok_or(ChapError::NoAlgorithm)?;
        let mut challenge = vec![0u8; algorithm.challenge_len()];
        let mut id = [0u8; 1];
        getrandom::fill(&mut challenge).map_err(|_| ChapError::Random)?;
        getrandom::fill(&mut id).map_err(|_| ChapError::Random)?;
        let ex = Self::with_challenge(algorithm, id[0], challenge);
        ex.write_challenge(out);
        Ok(ex)
    }

    /// An exchange with a given identifier and challenge (tests, replay of known vectors).
    #[must_use]
    pub fn with_challenge(algorithm: ChapAlgorithm, identifier: u8, challenge: Vec<u8>) -> Self {
        Self { algorithm, identifier, challenge }
    }

    /// The algorithm in use.
    #[must_use]
    pub fn algorithm(&self) -> ChapAlgorithm {
        self.algorithm
    }

    /// Appends CHAP_A, CHAP_I and CHAP_C.
    pub fn write_challenge(&self, out: &mut TextBuilder) {
        out.push("CHAP_A", &self.algorithm.code().to_string());
        out.push("CHAP_I", &self.identifier.to_string());
        out.push("CHAP_C", &encode_hex(&self.challenge));
    }

    /// Verifies the initiator's reply and, for mutual CHAP, appends the target's CHAP_N and
    /// CHAP_R to `out`.
    ///
    /// # Errors
    /// [`ChapError`] when authentication fails.
    pub fn verify(
        &self,
        creds: &ChapCredentials,
        reply: &ChapReply<'_>,
        out: &mut TextBuilder,
    ) -> Result<(), ChapError> {
        let name = reply.name.ok_or(ChapError::MissingKey("CHAP_N"))?;
        let response = reply.response.ok_or(ChapError::MissingKey("CHAP_R"))?;
        let response = parse_binary(response).map_err(|_| ChapError::Malformed("CHAP_R"))?;
        let expected =
            self.algorithm.response(self.identifier, &creds.initiator.secret, &self.challenge);
        // Check both before answering so a failure does not tell which one was wrong.
        let name_ok = constant_time_eq(name.as_bytes(), creds.initiator.username.as_bytes());
        let response_ok = constant_time_eq(&response, &expected);
        if !name_ok {
            return Err(ChapError::UnknownUser);
        }
        if !response_ok {
            return Err(ChapError::BadResponse);
        }
        match (reply.identifier, reply.challenge) {
            (None, None) => Ok(()),
            (Some(_), None) => Err(ChapError::MissingKey("CHAP_C")),
            (None, Some(_)) => Err(ChapError::MissingKey("CHAP_I")),
            (Some(i), Some(c)) => self.answer_mutual(creds, i, c, out),
        }
    }

    fn answer_mutual(
        &self,
        creds: &ChapCredentials,
        identifier: &str,
        challenge: &str,
        out: &mut TextBuilder,
    ) -> Result<(), ChapError> {
        let mutual = creds.mutual.as_ref().ok_or(ChapError::MutualNotConfigured)?;
        if constant_time_eq(&mutual.secret, &creds.initiator.secret) {
            return Err(ChapError::MutualSecretEqual);
        }
        let identifier = parse_number(identifier)
            .ok()
            .and_then(|v| u8::try_from(v).ok())
            .ok_or(ChapError::Malformed("CHAP_I"))?;
        let challenge = parse_binary(challenge).map_err(|_| ChapError::Malformed("CHAP_C"))?;
        if challenge.is_empty() || challenge.len() > MAX_CHALLENGE_LEN {
            return Err(ChapError::Malformed("CHAP_C"));
        }
        if challenge == self.challenge {
            return Err(ChapError::ReflectedChallenge);
        }
        let r = self.algorithm.response(identifier, &mutual.secret, &challenge);
        out.push("CHAP_N", &mutual.username);
        out.push("CHAP_R", &encode_hex(&r));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::{encode_base64, parse_pairs};
    use sha3::Digest as _;

    fn creds(mutual: bool) -> ChapCredentials {
        ChapCredentials {
            initiator: ChapSecret {
                username: "alice".into(),
                secret: b"initiator-secret".to_vec(),
            },
            mutual: mutual.then(|| ChapSecret {
                username: "target-user".into(),
                secret: b"target-secret-xy".to_vec(),
            }),
        }
    }

    fn pairs(out: &TextBuilder) -> Vec<(String, String)> {
        parse_pairs(out.as_bytes())
            .expect("valid")
            .into_iter()
            .map(|kv| (kv.key.to_owned(), kv.value.to_owned()))
            .collect()
    }

    #[test]
    fn algorithm_choice_follows_initiator_order() {
        assert_eq!(choose_algorithm("5"), Some(ChapAlgorithm::Md5));
        assert_eq!(choose_algorithm("7,5"), Some(ChapAlgorithm::Sha256));
        assert_eq!(choose_algorithm("6,8,5"), Some(ChapAlgorithm::Sha3_256));
        assert_eq!(choose_algorithm("6"), None);
        assert_eq!(choose_algorithm("x,,"), None);
    }

    /// RFC 1321 MD5 of a known string pins the hash implementation, then the CHAP response
    /// definition md5(id || secret || challenge) is checked against a hand-built input.
    #[test]
    fn md5_response_definition() {
        let empty = ChapAlgorithm::Md5.response(b'a', b"bc", b"");
        assert_eq!(encode_hex(&empty), "0x900150983cd24fb0d6963f7d28e17f72"); // md5("abc")
        let r = ChapAlgorithm::Md5.response(1, b"secret", &[0xaa, 0xbb]);
        let mut input = vec![1u8];
        input.extend_from_slice(b"secret");
        input.extend_from_slice(&[0xaa, 0xbb]);
        assert_eq!(r, Md5::digest(&input).to_vec());
        assert_eq!(r.len(), 16);
    }

    #[test]
    fn sha_response_definitions() {
        // SHA-256("abc") and SHA3-256("abc") from FIPS 180-2 / FIPS 202 examples.
        assert_eq!(
            encode_hex(&ChapAlgorithm::Sha256.response(b'a', b"b", b"c")),
            "0xba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            encode_hex(&ChapAlgorithm::Sha3_256.response(b'a', b"bc", b"")),
            "0x3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532"
        );
    }

    #[test]
    fn start_emits_challenge_of_digest_length() {
        let mut out = TextBuilder::new();
        let ex = ChapExchange::start("7,5", &mut out).expect("supported");
        assert_eq!(ex.algorithm(), ChapAlgorithm::Sha256);
        let p = pairs(&out);
        assert_eq!(p[0], ("CHAP_A".into(), "7".into()));
        assert_eq!(p[1].0, "CHAP_I");
        let c = parse_binary(&p[2].1).expect("hex");
        assert_eq!(c.len(), 32);
        let mut out2 = TextBuilder::new();
        let ex2 = ChapExchange::start("5", &mut out2).expect("supported");
        assert_ne!(ex.challenge, ex2.challenge, "challenges are random");
        assert_eq!(
            ChapExchange::start("6,99", &mut TextBuilder::new()).expect_err("none"),
            ChapError::NoAlgorithm
        );
    }

    #[test]
    fn one_way_success_hex_and_base64() {
        let c = creds(false);
        let ex = ChapExchange::with_challenge(ChapAlgorithm::Md5, 7, vec![0x11; 16]);
        let mut input = vec![7u8];
        input.extend_from_slice(b"initiator-secret");
        input.extend_from_slice(&[0x11; 16]);
        let r = Md5::digest(&input).to_vec();
        for enc in [encode_hex(&r), encode_base64(&r)] {
            let mut out = TextBuilder::new();
            let reply =
                ChapReply { name: Some("alice"), response: Some(&enc), ..ChapReply::default() };
            ex.verify(&c, &reply, &mut out).expect("authenticates");
            assert!(out.is_empty());
        }
    }

    #[test]
    fn wrong_password_and_user_refused() {
        let c = creds(false);
        let ex = ChapExchange::with_challenge(ChapAlgorithm::Md5, 7, vec![0x11; 16]);
        let wrong = encode_hex(&ChapAlgorithm::Md5.response(7, b"wrong", &[0x11; 16]));
        let reply =
            ChapReply { name: Some("alice"), response: Some(&wrong), ..ChapReply::default() };
        assert_eq!(ex.verify(&c, &reply, &mut TextBuilder::new()), Err(ChapError::BadResponse));
        let right = encode_hex(&ChapAlgorithm::Md5.response(7, b"initiator-secret", &[0x11; 16]));
        let reply =
            ChapReply { name: Some("mallory"), response: Some(&right), ..ChapReply::default() };
        assert_eq!(ex.verify(&c, &reply, &mut TextBuilder::new()), Err(ChapError::UnknownUser));
        let reply = ChapReply { name: Some("alice"), response: Some("zz"), ..ChapReply::default() };
        assert_eq!(
            ex.verify(&c, &reply, &mut TextBuilder::new()),
            Err(ChapError::Malformed("CHAP_R"))
        );
        let reply = ChapReply { name: Some("alice"), ..ChapReply::default() };
        assert_eq!(
            ex.verify(&c, &reply, &mut TextBuilder::new()),
            Err(ChapError::MissingKey("CHAP_R"))
        );
    }

    /// An initiator's answer that also challenges the target (mutual CHAP).
    fn mutual_reply<'a>(
        name: &'a str,
        response: &'a str,
        identifier: &'a str,
        challenge: &'a str,
    ) -> ChapReply<'a> {
        ChapReply {
            name: Some(name),
            response: Some(response),
            identifier: Some(identifier),
            challenge: Some(challenge),
        }
    }

    #[test]
    fn mutual_chap_answers_with_target_secret() {
        let c = creds(true);
        let ex = ChapExchange::with_challenge(ChapAlgorithm::Sha256, 3, vec![0x22; 32]);
        let r = encode_hex(&ChapAlgorithm::Sha256.response(3, b"initiator-secret", &[0x22; 32]));
        let ic = encode_hex(&[0x33; 32]);
        let reply = mutual_reply("alice", &r, "200", &ic);
        let mut out = TextBuilder::new();
        ex.verify(&c, &reply, &mut out).expect("authenticates");
        let p = pairs(&out);
        assert_eq!(p[0], ("CHAP_N".into(), "target-user".into()));
        let expected = ChapAlgorithm::Sha256.response(200, b"target-secret-xy", &[0x33; 32]);
        assert_eq!(parse_binary(&p[1].1).expect("hex"), expected);
    }

    #[test]
    fn mutual_refusals() {
        let ex = ChapExchange::with_challenge(ChapAlgorithm::Md5, 3, vec![0x22; 16]);
        let r = encode_hex(&ChapAlgorithm::Md5.response(3, b"initiator-secret", &[0x22; 16]));
        let reflected = encode_hex(&[0x22; 16]);
        let reply = mutual_reply("alice", &r, "1", &reflected);
        assert_eq!(
            ex.verify(&creds(true), &reply, &mut TextBuilder::new()),
            Err(ChapError::ReflectedChallenge)
        );
        let fresh = encode_hex(&[0x44; 16]);
        let reply = ChapReply { challenge: Some(&fresh), ..reply };
        assert_eq!(
            ex.verify(&creds(false), &reply, &mut TextBuilder::new()),
            Err(ChapError::MutualNotConfigured)
        );
        let mut same = creds(true);
        if let Some(m) = same.mutual.as_mut() {
            m.secret = same.initiator.secret.clone();
        }
        assert_eq!(same.validate(), Err(ChapError::MutualSecretEqual));
        assert_eq!(
            ex.verify(&same, &reply, &mut TextBuilder::new()),
            Err(ChapError::MutualSecretEqual)
        );
        let reply = ChapReply { identifier: Some("256"), ..reply };
        assert_eq!(
            ex.verify(&creds(true), &reply, &mut TextBuilder::new()),
            Err(ChapError::Malformed("CHAP_I"))
        );
        let reply = ChapReply { identifier: None, ..reply };
        assert_eq!(
            ex.verify(&creds(true), &reply, &mut TextBuilder::new()),
            Err(ChapError::MissingKey("CHAP_I"))
        );
        assert!(creds(true).validate().is_ok());
    }

    #[test]
    fn constant_time_eq_semantics() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }
}
