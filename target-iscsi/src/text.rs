//! Login and Text key=value encoding (RFC 7143 §6.1): NUL-terminated `key=value` pairs,
//! value encodings (decimal, `0x` hex, `0b` base64), and bounded reassembly of text that the
//! C (continue) bit splits over several PDUs.

use std::fmt;

/// Longest key name (RFC 7143 §6.1: "must not exceed 63 characters").
pub const MAX_KEY_LEN: usize = 63;

/// Longest value accepted (RFC 7143 §6.1 allows 8192 bytes for the longest keys, e.g.
/// CHAP challenges; most keys are limited to 255 bytes, which this module does not enforce).
pub const MAX_VALUE_LEN: usize = 8192;

/// Bound on a reassembled text (one login or text negotiation step, all C-bit PDUs).
pub const MAX_TEXT_LEN: usize = 64 * 1024;

/// Bound on the number of pairs in one reassembled text.
pub const MAX_PAIRS: usize = 512;

/// A malformed or oversized text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextError {
    /// A pair without `=`.
    MissingEquals,
    /// An empty key name.
    EmptyKey,
    /// A key longer than [`MAX_KEY_LEN`].
    KeyTooLong(usize),
    /// A key with characters outside letters, digits and `.-+@_#`, or not starting with a
    /// letter.
    InvalidKey,
    /// A value longer than [`MAX_VALUE_LEN`].
    ValueTooLong(usize),
    /// A key or value that is not UTF-8.
    NotUtf8,
    /// The same key twice in one text.
    DuplicateKey(String),
    /// More than [`MAX_PAIRS`] pairs.
    TooManyPairs,
    /// Reassembled text longer than the bound.
    TooLong {
        /// The bound in bytes.
        limit_bytes: usize,
    },
    /// A numerical value that is not decimal or `0x` hex, or overflows.
    BadNumber,
    /// A binary value that is not `0x` hex or `0b` base64.
    BadBinary,
}

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingEquals => write!(f, "key=value pair without '='"),
            Self::EmptyKey => write!(f, "empty key name"),
            Self::KeyTooLong(n) => write!(f, "key name of {n} bytes exceeds {MAX_KEY_LEN}"),
            Self::InvalidKey => write!(f, "invalid key name"),
            Self::ValueTooLong(n) => write!(f, "value of {n} bytes exceeds {MAX_VALUE_LEN}"),
            Self::NotUtf8 => write!(f, "text is not UTF-8"),
            Self::DuplicateKey(k) => write!(f, "key {k} appears twice"),
            Self::TooManyPairs => write!(f, "more than {MAX_PAIRS} key=value pairs"),
            Self::TooLong { limit_bytes } => write!(f, "text exceeds {limit_bytes} bytes"),
            Self::BadNumber => write!(f, "malformed numerical value"),
            Self::BadBinary => write!(f, "malformed binary value"),
        }
    }
}

impl std::error::Error for TextError {}

/// One `key=value` pair borrowed from the received text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyValue<'a> {
    /// Key name.
    pub key: &'a str,
    /// Value (may be empty; may be a comma-separated list).
    pub value: &'a str,
}

fn valid_key(key: &str) -> Result<(), TextError> {
    if key.is_empty() {
        return Err(TextError::EmptyKey);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(TextError::KeyTooLong(key.len()));
    }
    // RFC 7143 asks for a leading capital, but RFC 7144 defines `iSCSIProtocolLevel` and
    // RFC 7145 `iSERHelloRequired`: accept any leading letter.
    let first_ok = key.as_bytes().first().is_some_and(u8::is_ascii_alphabetic);
    let chars_ok = key
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'+' | b'@' | b'_' | b'#'));
    if first_ok && chars_ok {
        Ok(())
    } else {
        Err(TextError::InvalidKey)
    }
}

/// Parses a complete (reassembled) text into pairs, in order.
///
/// Pairs are NUL-terminated; a missing NUL after the last pair is tolerated, empty strings
/// between NULs (padding) are skipped. A key that appears twice is an error: RFC 7143 §6.1
/// forbids offering or declaring a key more than once.
///
/// # Errors
/// [`TextError`] on malformed, oversized or duplicated pairs.
pub fn parse_pairs(data: &[u8]) -> Result<Vec<KeyValue<'_>>, TextError> {
    if data.len() > MAX_TEXT_LEN {
        return Err(TextError::TooLong { limit_bytes: MAX_TEXT_LEN });
    }
    let mut pairs: Vec<KeyValue<'_>> = Vec::new();
    for raw in data.split(|&b| b == 0) {
        if raw.is_empty() {
            continue;
        }
        let eq = raw.iter().position(|&b| b == b'=').ok_or(TextError::MissingEquals)?;
        let key = std::str::from_utf8(&raw[..eq]).map_err(|_| TextError::NotUtf8)?;
        let value = std::str::from_utf8(&raw[eq + 1..]).map_err(|_| TextError::NotUtf8)?;
        valid_key(key)?;
        if value.len() > MAX_VALUE_LEN {
            return Err(TextError::ValueTooLong(value.len()));
        }
        if pairs.len() >= MAX_PAIRS {
            return Err(TextError::TooManyPairs);
        }
        if pairs.iter().any(|p| p.key == key) {
            return Err(TextError::DuplicateKey(key.to_owned()));
        }
        pairs.push(KeyValue { key, value });
    }
    Ok(pairs)
}

/// Builds an outgoing text: `key=value\0` pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextBuilder {
    buf: Vec<u8>,
}

impl TextBuilder {
    /// An empty text.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `key=value\0`.
    pub fn push(&mut self, key: &str, value: &str) {
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.push(b'=');
        self.buf.extend_from_slice(value.as_bytes());
        self.buf.push(0);
    }

    /// True when no pair was pushed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Length in bytes so far.
    #[must_use]
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// The encoded text.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Takes the encoded text.
    #[must_use]
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// Parses a numerical value: decimal, or `0x`/`0X` hex (RFC 7143 §6.1).
///
/// # Errors
/// [`TextError::BadNumber`] on other encodings or a value over 2^64 - 1.
pub fn parse_number(value: &str) -> Result<u64, TextError> {
    let (digits, radix) = match value.get(..2) {
        Some("0x" | "0X") => (&value[2..], 16),
        _ => (value, 10),
    };
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(TextError::BadNumber);
    }
    u64::from_str_radix(digits, radix).map_err(|_| TextError::BadNumber)
}

/// Parses `Yes` / `No`.
#[must_use]
pub fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "Yes" => Some(true),
        "No" => Some(false),
        _ => None,
    }
}

/// `Yes` / `No`.
#[must_use]
pub const fn bool_str(v: bool) -> &'static str {
    if v {
        "Yes"
    } else {
        "No"
    }
}

/// Parses a binary value: `0x` hex (odd digit counts get a leading zero nibble) or `0b`
/// base64 (RFC 4648 §4, padding optional).
///
/// # Errors
/// [`TextError::BadBinary`] on other encodings or invalid digits.
pub fn parse_binary(value: &str) -> Result<Vec<u8>, TextError> {
    match value.get(..2) {
        Some("0x" | "0X") => decode_hex(&value[2..]),
        Some("0b" | "0B") => decode_base64(&value[2..]),
        _ => Err(TextError::BadBinary),
    }
}

fn hex_nibble(c: u8) -> Result<u8, TextError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(TextError::BadBinary),
    }
}

fn decode_hex(digits: &str) -> Result<Vec<u8>, TextError> {
    let d = digits.as_bytes();
    if d.is_empty() {
        return Err(TextError::BadBinary);
    }
    let mut out = Vec::with_capacity(d.len().div_ceil(2));
    let odd = d.len() % 2;
    if odd == 1 {
        out.push(hex_nibble(d[0])?);
    }
    for pair in d[odd..].chunks_exact(2) {
        out.push(hex_nibble(pair[0])? << 4 | hex_nibble(pair[1])?);
    }
    Ok(out)
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_value(c: u8) -> Result<u32, TextError> {
    match c {
        b'A'..=b'Z' => Ok(u32::from(c - b'A')),
        b'a'..=b'z' => Ok(u32::from(c - b'a') + 26),
        b'0'..=b'9' => Ok(u32::from(c - b'0') + 52),
        b'+' => Ok(62),
        b'/' => Ok(63),
        _ => Err(TextError::BadBinary),
    }
}

fn decode_base64(digits: &str) -> Result<Vec<u8>, TextError> {
    let trimmed = digits.trim_end_matches('=');
    if digits.len() - trimmed.len() > 2 {
        return Err(TextError::BadBinary);
    }
    let d = trimmed.as_bytes();
    if d.is_empty() || d.len() % 4 == 1 {
        return Err(TextError::BadBinary);
    }
    let mut out = Vec::with_capacity(d.len() * 3 / 4);
    for chunk in d.chunks(4) {
        let mut acc = 0u32;
        for &c in chunk {
            acc = acc << 6 | base64_value(c)?;
        }
        let [_, b0, b1, b2] = (acc << (6 * (4 - chunk.len()))).to_be_bytes();
        match chunk.len() {
            4 => out.extend_from_slice(&[b0, b1, b2]),
            3 => out.extend_from_slice(&[b0, b1]),
            _ => out.push(b0),
        }
    }
    Ok(out)
}

/// Encodes bytes as a `0x` hex binary value (lower case).
#[must_use]
pub fn encode_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 + bytes.len() * 2);
    s.push_str("0x");
    for &b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    s
}

/// Encodes bytes as a `0b` base64 binary value (with padding).
#[must_use]
pub fn encode_base64(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + bytes.len().div_ceil(3) * 4);
    s.push_str("0b");
    for chunk in bytes.chunks(3) {
        let mut word = [0u8; 4];
        word[1..=chunk.len()].copy_from_slice(chunk);
        let acc = u32::from_be_bytes(word);
        let emit = chunk.len() + 1;
        for i in 0..4 {
            if i < emit {
                let idx = (acc >> (18 - 6 * i)) & 0x3f;
                s.push(char::from(BASE64[idx as usize]));
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// Reassembles text split over PDUs by the C bit, bounded by `limit_bytes`.
#[derive(Debug, Clone)]
pub struct TextAssembler {
    buf: Vec<u8>,
    limit_bytes: usize,
}

impl Default for TextAssembler {
    fn default() -> Self {
        Self::new(MAX_TEXT_LEN)
    }
}

impl TextAssembler {
    /// A reassembly buffer that refuses texts longer than `limit_bytes`.
    #[must_use]
    pub fn new(limit_bytes: usize) -> Self {
        Self { buf: Vec::new(), limit_bytes }
    }

    /// Adds one PDU's data segment. Returns the complete text when `continue_bit` is clear,
    /// `None` while more PDUs are expected.
    ///
    /// # Errors
    /// [`TextError::TooLong`] when the bound is crossed; the buffer is then cleared.
    pub fn push(
        &mut self,
        segment: &[u8],
        continue_bit: bool,
    ) -> Result<Option<Vec<u8>>, TextError> {
        if self.buf.len() + segment.len() > self.limit_bytes {
            self.buf.clear();
            return Err(TextError::TooLong { limit_bytes: self.limit_bytes });
        }
        self.buf.extend_from_slice(segment);
        if continue_bit {
            Ok(None)
        } else {
            Ok(Some(std::mem::take(&mut self.buf)))
        }
    }

    /// True while a continued text is being collected.
    #[must_use]
    pub fn in_progress(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Drops any partial text.
    pub fn reset(&mut self) {
        self.buf.clear();
    }
}

/// An outgoing text sent in pieces no larger than the peer's MaxRecvDataSegmentLength; all
/// but the last piece go with the C bit set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextSender {
    data: Vec<u8>,
    offset: usize,
}

impl TextSender {
    /// Queues `data` for sending.
    #[must_use]
    pub fn new(data: Vec<u8>) -> Self {
        Self { data, offset: 0 }
    }

    /// The next piece of at most `max_bytes` (at least 1) and whether more follow (C bit).
    pub fn next_chunk(&mut self, max_bytes: usize) -> (&[u8], bool) {
        let max = max_bytes.max(1);
        let start = self.offset;
        let end = (start + max).min(self.data.len());
        self.offset = end;
        (&self.data[start..end], end < self.data.len())
    }

    /// True when pieces remain to be sent.
    #[must_use]
    pub fn has_more(&self) -> bool {
        self.offset < self.data.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_pairs_in_order() {
        let t = b"InitiatorName=iqn.2024-01.org.example:host\0SessionType=Normal\0";
        let p = parse_pairs(t).expect("valid text");
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].key, "InitiatorName");
        assert_eq!(p[0].value, "iqn.2024-01.org.example:host");
        assert_eq!(p[1], KeyValue { key: "SessionType", value: "Normal" });
    }

    #[test]
    fn tolerates_missing_final_nul_and_padding() {
        let p = parse_pairs(b"A=1\0B=2").expect("valid");
        assert_eq!(p.len(), 2);
        let p = parse_pairs(b"A=1\0\0\0\0").expect("valid");
        assert_eq!(p.len(), 1);
        assert!(parse_pairs(b"").expect("empty").is_empty());
    }

    #[test]
    fn value_may_contain_equals_and_be_empty() {
        let p = parse_pairs(b"CHAP_C=0bAAA=\0X-a=\0").expect("valid");
        assert_eq!(p[0].value, "0bAAA=");
        assert_eq!(p[1].value, "");
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(parse_pairs(b"NoEquals\0"), Err(TextError::MissingEquals));
        assert_eq!(parse_pairs(b"=v\0"), Err(TextError::EmptyKey));
        assert_eq!(parse_pairs(b"1abc=v\0"), Err(TextError::InvalidKey));
        assert!(parse_pairs(b"iSCSIProtocolLevel=1\0").is_ok());
        assert_eq!(parse_pairs(b"Bad Key=v\0"), Err(TextError::InvalidKey));
        assert_eq!(parse_pairs(b"K=\xff\0"), Err(TextError::NotUtf8));
        let long_key = format!("K{}=v\0", "a".repeat(63));
        assert_eq!(parse_pairs(long_key.as_bytes()), Err(TextError::KeyTooLong(64)));
        let ok_key = format!("K{}=v\0", "a".repeat(62));
        assert!(parse_pairs(ok_key.as_bytes()).is_ok());
        let long_val = format!("K={}\0", "v".repeat(MAX_VALUE_LEN + 1));
        assert_eq!(
            parse_pairs(long_val.as_bytes()),
            Err(TextError::ValueTooLong(MAX_VALUE_LEN + 1))
        );
    }

    #[test]
    fn rejects_duplicates_and_too_many() {
        assert_eq!(
            parse_pairs(b"MaxBurstLength=1\0MaxBurstLength=2\0"),
            Err(TextError::DuplicateKey("MaxBurstLength".into()))
        );
        let mut many = Vec::new();
        for i in 0..=MAX_PAIRS {
            many.extend_from_slice(format!("X-k{i}=1\0").as_bytes());
        }
        assert_eq!(parse_pairs(&many), Err(TextError::TooManyPairs));
        let huge = vec![b'a'; MAX_TEXT_LEN + 1];
        assert!(matches!(parse_pairs(&huge), Err(TextError::TooLong { .. })));
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number("262144"), Ok(262_144));
        assert_eq!(parse_number("0x40000"), Ok(0x40000));
        assert_eq!(parse_number("0XFF"), Ok(255));
        assert_eq!(parse_number("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(parse_number("18446744073709551616"), Err(TextError::BadNumber));
        assert_eq!(parse_number(""), Err(TextError::BadNumber));
        assert_eq!(parse_number("0x"), Err(TextError::BadNumber));
        assert_eq!(parse_number("12a"), Err(TextError::BadNumber));
        assert_eq!(parse_number("-1"), Err(TextError::BadNumber));
        assert_eq!(parse_number("+1"), Err(TextError::BadNumber));
    }

    #[test]
    fn binary_hex_and_base64() {
        assert_eq!(parse_binary("0x0102ff"), Ok(vec![1, 2, 0xff]));
        assert_eq!(parse_binary("0X102"), Ok(vec![1, 2]));
        assert_eq!(parse_binary("0xzz"), Err(TextError::BadBinary));
        assert_eq!(parse_binary("0x"), Err(TextError::BadBinary));
        assert_eq!(parse_binary("1234"), Err(TextError::BadBinary));
        // RFC 4648 §10 test vectors.
        for (plain, enc) in [
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode_base64(plain.as_bytes()), format!("0b{enc}"));
            assert_eq!(parse_binary(&format!("0b{enc}")), Ok(plain.as_bytes().to_vec()));
            assert_eq!(
                parse_binary(&format!("0B{}", enc.trim_end_matches('='))),
                Ok(plain.as_bytes().to_vec())
            );
        }
        assert_eq!(parse_binary("0bZ"), Err(TextError::BadBinary));
        assert_eq!(parse_binary("0bZm9v==="), Err(TextError::BadBinary));
        assert_eq!(parse_binary("0bZm*v"), Err(TextError::BadBinary));
        assert_eq!(encode_hex(&[0, 0xab, 0x10]), "0x00ab10");
    }

    #[test]
    fn builder_roundtrip() {
        let mut b = TextBuilder::new();
        b.push("TargetName", "iqn.2024-01.org.ferrite:t0");
        b.push("TargetAddress", "10.0.0.1:3260,1");
        assert_eq!(
            b.as_bytes(),
            b"TargetName=iqn.2024-01.org.ferrite:t0\0TargetAddress=10.0.0.1:3260,1\0"
        );
        let bytes = b.into_bytes();
        let p = parse_pairs(&bytes).expect("valid");
        assert_eq!(p[1].value, "10.0.0.1:3260,1");
    }

    #[test]
    fn assembler_continuation_and_bound() {
        let mut a = TextAssembler::new(16);
        assert_eq!(a.push(b"Max", true), Ok(None));
        assert!(a.in_progress());
        assert_eq!(a.push(b"Burst=1\0", false), Ok(Some(b"MaxBurst=1\0".to_vec())));
        assert!(!a.in_progress());
        assert_eq!(a.push(b"0123456789", true), Ok(None));
        assert_eq!(a.push(b"0123456789", false), Err(TextError::TooLong { limit_bytes: 16 }));
        assert!(!a.in_progress());
    }

    #[test]
    fn sender_splits_with_continue() {
        let mut s = TextSender::new(b"abcdefghij".to_vec());
        assert_eq!(s.next_chunk(4), (&b"abcd"[..], true));
        assert_eq!(s.next_chunk(4), (&b"efgh"[..], true));
        assert_eq!(s.next_chunk(4), (&b"ij"[..], false));
        assert!(!s.has_more());
        let mut empty = TextSender::new(Vec::new());
        assert_eq!(empty.next_chunk(4), (&b""[..], false));
    }

    proptest! {
        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse_pairs(&data);
        }

        #[test]
        fn binary_parsers_never_panic(s in "\\PC{0,64}") {
            let _ = parse_binary(&s);
            let _ = parse_number(&s);
        }

        #[test]
        fn roundtrip_pairs(
            pairs in proptest::collection::btree_map("[A-Z][A-Za-z0-9._@+-]{0,62}", "[ -~]{0,100}", 0..20)
        ) {
            let mut b = TextBuilder::new();
            for (k, v) in &pairs {
                b.push(k, v);
            }
            let bytes = b.into_bytes();
            let parsed = parse_pairs(&bytes).expect("builder output parses");
            prop_assert_eq!(parsed.len(), pairs.len());
            for (p, (k, v)) in parsed.iter().zip(pairs.iter()) {
                prop_assert_eq!(p.key, k.as_str());
                prop_assert_eq!(p.value, v.as_str());
            }
        }

        #[test]
        fn binary_roundtrip(bytes in proptest::collection::vec(any::<u8>(), 1..300)) {
            prop_assert_eq!(parse_binary(&encode_hex(&bytes)), Ok(bytes.clone()));
            prop_assert_eq!(parse_binary(&encode_base64(&bytes)), Ok(bytes.clone()));
        }
    }
}
