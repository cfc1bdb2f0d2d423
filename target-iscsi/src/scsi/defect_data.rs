//! READ DEFECT DATA (10)/(12) (SBC-4 5.18, 5.19).
//!
//! A volume has no media defects of its own: the primary and grown defect lists exist and
//! are empty. The lists the initiator asked for are reported valid (PLISTV/GLISTV) with a
//! DEFECT LIST LENGTH of zero, in the format it asked for.

use drivers::buffer::IoBuf;

use super::status::data_in;

/// The parameter data: the 4-byte (10) or 8-byte (12) header of an empty defect list, cut to
/// `allocation_length`.
#[must_use]
pub fn read_defect_data(
    twelve: bool,
    req_plist: bool,
    req_glist: bool,
    format: u8,
    allocation_length: u32,
) -> Option<IoBuf> {
    let mut header = [0u8; 8];
    header[1] = (format & 0x07)
        | if req_plist { 0x10 } else { 0 } // PLISTV
        | if req_glist { 0x08 } else { 0 }; // GLISTV
                                            // (12): bytes 2-3 GENERATION CODE (0: not supported), 4-7 DEFECT LIST LENGTH = 0.
                                            // (10): bytes 2-3 DEFECT LIST LENGTH = 0.
    let len = if twelve { 8 } else { 4 };
    data_in(&header[..len], allocation_length as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_lists_in_the_requested_format() {
        let d = read_defect_data(false, true, false, 4, 32).unwrap_or_else(|| IoBuf::zeroed(0));
        assert_eq!(&d[..], &[0, 0x14, 0, 0]);
        let d = read_defect_data(true, false, true, 3, 32).unwrap_or_else(|| IoBuf::zeroed(0));
        assert_eq!(&d[..], &[0, 0x0B, 0, 0, 0, 0, 0, 0]);
        let d = read_defect_data(true, false, false, 0, 2).unwrap_or_else(|| IoBuf::zeroed(0));
        assert_eq!(d.len(), 2);
    }
}
