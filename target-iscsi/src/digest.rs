//! CRC32C header and data digests (RFC 7143 §13.1, test vectors in RFC 3720 Appendix B.4).
//!
//! iSCSI uses the Castagnoli polynomial with the usual reflected CRC32C computation (initial
//! value all ones, final complement). The 32-bit result goes on the wire least significant
//! byte first: 32 zero bytes give CRC 0x8a9136aa, sent as `aa 36 91 8a`. The `crc32c` crate
//! uses SSE4.2 / ARMv8 CRC instructions when the CPU has them.

use std::fmt;

use crate::pdu::{pad_len, PAD};

/// Size of a digest on the wire.
pub const DIGEST_LEN: usize = 4;

/// The digest negotiated by HeaderDigest / DataDigest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DigestKind {
    /// No digest.
    #[default]
    None,
    /// CRC32C.
    Crc32c,
}

impl DigestKind {
    /// Bytes the digest adds after the segment it covers.
    #[must_use]
    pub const fn len_bytes(self) -> usize {
        match self {
            Self::None => 0,
            Self::Crc32c => DIGEST_LEN,
        }
    }

    /// True for [`DigestKind::None`].
    #[must_use]
    pub const fn is_none(self) -> bool {
        matches!(self, Self::None)
    }

    /// The key value as negotiated ("None" / "CRC32C").
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "None",
            Self::Crc32c => "CRC32C",
        }
    }
}

/// A digest did not match what was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestError {
    /// Header digest mismatch: the PDU must be discarded (its length cannot be trusted), and
    /// at ErrorRecoveryLevel 0 the connection is dropped.
    Header {
        /// Digest received.
        received: u32,
        /// Digest computed.
        computed: u32,
    },
    /// Data digest mismatch: answered with a Reject, reason 0x02.
    Data {
        /// Digest received.
        received: u32,
        /// Digest computed.
        computed: u32,
    },
}

impl fmt::Display for DigestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Header { received, computed } => {
                write!(f, "header digest {received:#010x} != computed {computed:#010x}")
            }
            Self::Data { received, computed } => {
                write!(f, "data digest {received:#010x} != computed {computed:#010x}")
            }
        }
    }
}

impl std::error::Error for DigestError {}

/// CRC32C of `data` as a number (the value RFC 3720 B.4 lists, read little-endian).
#[must_use]
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// Header digest over the BHS and AHSs, in wire byte order.
#[must_use]
pub fn header_digest(bhs_and_ahs: &[u8]) -> [u8; DIGEST_LEN] {
    crc32c(bhs_and_ahs).to_le_bytes()
}

/// Data digest over a data segment and its padding (the digest covers the pad bytes), in wire
/// byte order. `data` is the unpadded segment.
#[must_use]
pub fn data_digest(data: &[u8]) -> [u8; DIGEST_LEN] {
    data_digest_parts(&[data])
}

/// Data digest over a segment given as several buffers (a vectored send), plus padding.
#[must_use]
pub fn data_digest_parts(parts: &[&[u8]]) -> [u8; DIGEST_LEN] {
    let mut crc = 0u32;
    let mut len = 0usize;
    for part in parts {
        crc = crc32c::crc32c_append(crc, part);
        len += part.len();
    }
    crc = crc32c::crc32c_append(crc, &PAD[..pad_len(len)]);
    crc.to_le_bytes()
}

/// Checks a received header digest.
///
/// # Errors
/// [`DigestError::Header`] on mismatch.
pub fn verify_header_digest(bhs_and_ahs: &[u8], wire: [u8; DIGEST_LEN]) -> Result<(), DigestError> {
    let computed = crc32c(bhs_and_ahs);
    let received = u32::from_le_bytes(wire);
    if computed == received {
        Ok(())
    } else {
        Err(DigestError::Header { received, computed })
    }
}

/// Checks a received data digest; `data` is the unpadded segment, `wire` the 4 digest bytes.
///
/// # Errors
/// [`DigestError::Data`] on mismatch.
pub fn verify_data_digest(data: &[u8], wire: [u8; DIGEST_LEN]) -> Result<(), DigestError> {
    let computed = u32::from_le_bytes(data_digest(data));
    let received = u32::from_le_bytes(wire);
    if computed == received {
        Ok(())
    } else {
        Err(DigestError::Data { received, computed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 3720 Appendix B.4 vectors: (input, CRC bytes as listed in the RFC = wire order).
    #[test]
    fn rfc3720_b4_vectors() {
        let zeros = [0u8; 32];
        let ones = [0xffu8; 32];
        let inc: Vec<u8> = (0u8..32).collect();
        let dec: Vec<u8> = (0u8..32).rev().collect();
        assert_eq!(header_digest(&zeros), [0xaa, 0x36, 0x91, 0x8a]);
        assert_eq!(crc32c(&zeros), 0x8a91_36aa);
        assert_eq!(header_digest(&ones), [0x43, 0xab, 0xa8, 0x62]);
        assert_eq!(header_digest(&inc), [0x4e, 0x79, 0xdd, 0x46]);
        assert_eq!(header_digest(&dec), [0x5c, 0xdb, 0x3f, 0x11]);
    }

    /// RFC 3720 B.4: an iSCSI SCSI Read (10) command PDU.
    #[test]
    fn rfc3720_b4_read10_pdu() {
        let pdu: [u8; 48] = [
            0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14,
            0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ];
        assert_eq!(header_digest(&pdu), [0x56, 0x3a, 0x96, 0xd9]);
        assert!(verify_header_digest(&pdu, [0x56, 0x3a, 0x96, 0xd9]).is_ok());
        let mut bad = pdu;
        bad[20] ^= 1;
        assert!(matches!(
            verify_header_digest(&bad, [0x56, 0x3a, 0x96, 0xd9]),
            Err(DigestError::Header { .. })
        ));
    }

    #[test]
    fn data_digest_covers_padding() {
        let data = [1u8, 2, 3, 4, 5];
        let padded = [1u8, 2, 3, 4, 5, 0, 0, 0];
        assert_eq!(data_digest(&data), header_digest(&padded));
        assert_ne!(data_digest(&data), header_digest(&data));
        assert_eq!(data_digest_parts(&[&data[..2], &data[2..]]), data_digest(&data));
        assert!(verify_data_digest(&data, data_digest(&data)).is_ok());
        assert!(matches!(
            verify_data_digest(&data, [0; 4]),
            Err(DigestError::Data { received: 0, .. })
        ));
    }

    #[test]
    fn digest_kind_lengths() {
        assert_eq!(DigestKind::None.len_bytes(), 0);
        assert_eq!(DigestKind::Crc32c.len_bytes(), 4);
        assert_eq!(DigestKind::Crc32c.as_str(), "CRC32C");
    }
}
