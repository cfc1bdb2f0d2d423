//! Additional Header Segments (RFC 7143 §11.2.2) and the CDB assembled from the BHS and an
//! extended CDB AHS.

use std::fmt;

use super::{pad_len, padded_len, PduError, MAX_CDB_LEN, PAD};

/// AHSType 1: Extended CDB.
pub const AHS_TYPE_EXTENDED_CDB: u8 = 1;
/// AHSType 2: Bidirectional Read Expected Data Transfer Length.
pub const AHS_TYPE_BIDI_READ_LENGTH: u8 = 2;

/// The AHSs of a SCSI Command, borrowed from the received bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ahs<'a> {
    /// CDB bytes beyond the first 16 (extended CDB AHS), without padding.
    pub extended_cdb: Option<&'a [u8]>,
    /// Bidirectional Read Expected Data Transfer Length in bytes.
    pub bidi_read_expected_data_transfer_length: Option<u32>,
}

impl<'a> Ahs<'a> {
    /// Parses the `TotalAHSLength * 4` bytes that follow the BHS.
    ///
    /// # Errors
    /// [`PduError::MalformedAhs`] on overlong, duplicated, unknown or reserved AHSs.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, PduError> {
        let mut out = Self::default();
        let mut rest = bytes;
        while !rest.is_empty() {
            let [l0, l1, ahs_type, _specific, ..] = *rest else {
                return Err(PduError::MalformedAhs("AHS header truncated"));
            };
            // AHSLength counts the AHS-specific byte and the data, not the 3 header bytes.
            let ahs_length = usize::from(u16::from_be_bytes([l0, l1]));
            if ahs_length == 0 {
                return Err(PduError::MalformedAhs("AHSLength 0"));
            }
            let total = padded_len(3 + ahs_length);
            let body = rest
                .get(4..3 + ahs_length)
                .ok_or(PduError::MalformedAhs("AHSLength beyond TotalAHSLength"))?;
            if total > rest.len() {
                return Err(PduError::MalformedAhs("AHS padding beyond TotalAHSLength"));
            }
            match ahs_type & 0x3f {
                AHS_TYPE_EXTENDED_CDB => {
                    if out.extended_cdb.is_some() {
                        return Err(PduError::MalformedAhs("duplicate extended CDB AHS"));
                    }
                    if body.is_empty() || body.len() > MAX_CDB_LEN - 16 {
                        return Err(PduError::MalformedAhs("extended CDB length"));
                    }
                    out.extended_cdb = Some(body);
                }
                AHS_TYPE_BIDI_READ_LENGTH => {
                    if out.bidi_read_expected_data_transfer_length.is_some() {
                        return Err(PduError::MalformedAhs("duplicate bidirectional AHS"));
                    }
                    let v: [u8; 4] = body
                        .try_into()
                        .map_err(|_| PduError::MalformedAhs("bidirectional AHSLength != 5"))?;
                    out.bidi_read_expected_data_transfer_length = Some(u32::from_be_bytes(v));
                }
                _ => return Err(PduError::MalformedAhs("unknown AHSType")),
            }
            rest = &rest[total..];
        }
        Ok(out)
    }

    /// Encodes AHSs into `out` (appending); returns TotalAHSLength in words.
    ///
    /// # Panics
    /// If the extended CDB is empty or longer than 244 bytes (a programming error).
    pub fn encode(&self, out: &mut Vec<u8>) -> u8 {
        let start = out.len();
        if let Some(ext) = self.extended_cdb {
            assert!(!ext.is_empty() && ext.len() <= MAX_CDB_LEN - 16, "extended CDB length");
            let ahs_length = u16::try_from(ext.len() + 1).unwrap_or(u16::MAX);
            out.extend_from_slice(&ahs_length.to_be_bytes());
            out.extend_from_slice(&[AHS_TYPE_EXTENDED_CDB, 0]);
            out.extend_from_slice(ext);
            out.extend_from_slice(&PAD[..pad_len(3 + ext.len() + 1)]);
        }
        if let Some(len) = self.bidi_read_expected_data_transfer_length {
            out.extend_from_slice(&5u16.to_be_bytes());
            out.extend_from_slice(&[AHS_TYPE_BIDI_READ_LENGTH, 0]);
            out.extend_from_slice(&len.to_be_bytes());
        }
        // At most 244 + 4 + 8 bytes, so the word count fits in a byte.
        u8::try_from((out.len() - start) / 4).unwrap_or(u8::MAX)
    }
}

/// A complete CDB of up to [`MAX_CDB_LEN`] bytes, assembled without allocation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Cdb {
    bytes: [u8; MAX_CDB_LEN],
    len: usize,
}

impl fmt::Debug for Cdb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cdb({:02x?})", self.as_bytes())
    }
}

impl Cdb {
    /// Joins the 16 BHS CDB bytes with the extended CDB AHS, if any.
    #[must_use]
    pub fn assemble(base: &[u8; 16], extended: Option<&[u8]>) -> Self {
        let mut bytes = [0u8; MAX_CDB_LEN];
        bytes[..16].copy_from_slice(base);
        let mut len = 16;
        if let Some(ext) = extended {
            let n = ext.len().min(MAX_CDB_LEN - 16);
            bytes[16..16 + n].copy_from_slice(&ext[..n]);
            len += n;
        }
        Self { bytes, len }
    }

    /// The CDB bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}
