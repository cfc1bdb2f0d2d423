//! REPORT LUNS (SPC-4 6.33) and the LUN encoding of SAM-5 4.7.

use super::sense::Sense;
use super::status::{data_in, ScsiResult};

/// The 8-byte LUN field: peripheral addressing below 256, flat space addressing above.
#[must_use]
pub fn encode_lun(lun: u64) -> [u8; 8] {
    let mut b = [0u8; 8];
    if lun < 256 {
        b[1] = lun as u8;
    } else {
        let l = (lun & 0x3FFF) as u16;
        b[0] = 0x40 | (l >> 8) as u8;
        b[1] = (l & 0xFF) as u8;
    }
    b
}

/// Decodes an 8-byte LUN field (peripheral or flat space addressing); `None` for others.
#[must_use]
pub fn decode_lun(field: [u8; 8]) -> Option<u64> {
    if field[2..].iter().any(|b| *b != 0) {
        return None;
    }
    match field[0] >> 6 {
        0 if field[0] == 0 => Some(u64::from(field[1])),
        1 => Some(u64::from(field[0] & 0x3F) << 8 | u64::from(field[1])),
        _ => None,
    }
}

/// REPORT LUNS data for `luns` with SELECT REPORT 0, 1 or 2.
pub fn report_luns(luns: &[u64], select: u8, allocation_length: u32) -> ScsiResult {
    if allocation_length < 16 {
        return Err(Sense::invalid_field_in_cdb(6, None).into());
    }
    let list: &[u64] = match select {
        0 | 2 => luns,
        // Well-known LUNs only: there are none.
        1 => &[],
        _ => return Err(Sense::invalid_field_in_cdb(2, None).into()),
    };
    let mut d = vec![0u8; 8];
    let len = u32::try_from(list.len() * 8).unwrap_or(u32::MAX);
    d[0..4].copy_from_slice(&len.to_be_bytes());
    for lun in list {
        d.extend_from_slice(&encode_lun(*lun));
    }
    Ok(data_in(&d, allocation_length as usize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::status::ScsiError;

    #[test]
    fn lun_encoding_round_trips() {
        for lun in [0u64, 1, 255, 256, 0x3FFF] {
            assert_eq!(decode_lun(encode_lun(lun)), Some(lun));
        }
        assert_eq!(encode_lun(300), [0x41, 0x2C, 0, 0, 0, 0, 0, 0]);
        assert_eq!(decode_lun([0xC0, 0, 0, 0, 0, 0, 0, 0]), None);
    }

    #[test]
    fn select_and_allocation_length() {
        let d = report_luns(&[0, 3], 0, 64).ok().flatten().map(|b| b.to_vec()).unwrap_or_default();
        assert_eq!(&d[0..4], &[0, 0, 0, 16]);
        assert_eq!(d.len(), 24);
        assert_eq!(d[8 + 8 + 1], 3);
        let d = report_luns(&[0, 3], 1, 64).ok().flatten().map(|b| b.to_vec()).unwrap_or_default();
        assert_eq!(d, vec![0; 8]);
        assert!(
            matches!(report_luns(&[0], 3, 64), Err(ScsiError::Check(s)) if s == Sense::invalid_field_in_cdb(2, None))
        );
        assert!(
            matches!(report_luns(&[0], 0, 15), Err(ScsiError::Check(s)) if s == Sense::invalid_field_in_cdb(6, None))
        );
        let d = report_luns(&[0, 1, 2], 0, 16).ok().flatten().map(|b| b.len());
        assert_eq!(d, Some(16));
    }
}
