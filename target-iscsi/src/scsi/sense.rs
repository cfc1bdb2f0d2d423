//! Sense data (SPC-4 §4.5): the typed [`Sense`] every failing command produces, with builders
//! for each condition the command layer reports, and its encoding in fixed (0x70) or
//! descriptor (0x72) format.

/// SENSE KEY values (SPC-4 table 47).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SenseKey {
    /// No error to report.
    NoSense = 0x00,
    /// The logical unit is not accessible.
    NotReady = 0x02,
    /// A non-recovered error in the medium or its data.
    MediumError = 0x03,
    /// A device failure that is not a medium error.
    HardwareError = 0x04,
    /// An illegal parameter in the CDB or parameter list.
    IllegalRequest = 0x05,
    /// A unit attention condition.
    UnitAttention = 0x06,
    /// The medium is write-protected or out of space.
    DataProtect = 0x07,
    /// The command was aborted.
    AbortedCommand = 0x0B,
    /// Source data did not match the medium (VERIFY, COMPARE AND WRITE).
    Miscompare = 0x0E,
}

/// Where the offending field is (sense-key specific field pointer, SPC-4 §4.5.2.4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldPointer {
    /// True for a field of the CDB (C/D = 1), false for the parameter list.
    pub in_cdb: bool,
    /// Byte number of the field.
    pub byte: u16,
    /// Bit number of the field's most significant bit, when it is not a whole byte.
    pub bit: Option<u8>,
}

/// One sense condition: key, additional sense code and qualifier, optional INFORMATION and
/// field pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sense {
    /// SENSE KEY.
    pub key: SenseKey,
    /// ADDITIONAL SENSE CODE.
    pub asc: u8,
    /// ADDITIONAL SENSE CODE QUALIFIER.
    pub ascq: u8,
    /// INFORMATION field (offset of a miscompare, LBA of a medium error).
    pub info: Option<u64>,
    /// Sense-key specific field pointer (ILLEGAL REQUEST only).
    pub field_pointer: Option<FieldPointer>,
    /// Sense-key specific progress indication (NOT READY only, SPC-4 4.5.2.4.4): the
    /// fraction done of a long operation, in 65536ths.
    pub progress: Option<u16>,
}

/// Bytes of fixed-format sense data produced by [`Sense::to_fixed`].
pub const FIXED_SENSE_BYTES: usize = 18;

impl Sense {
    /// A condition with no INFORMATION and no field pointer.
    #[must_use]
    pub const fn new(key: SenseKey, asc: u8, ascq: u8) -> Sense {
        Sense { key, asc, ascq, info: None, field_pointer: None, progress: None }
    }

    /// The same condition with an INFORMATION field.
    #[must_use]
    pub const fn with_info(mut self, info: u64) -> Sense {
        self.info = Some(info);
        self
    }

    /// NO SENSE: what REQUEST SENSE returns when nothing is pending.
    #[must_use]
    pub const fn no_sense() -> Sense {
        Sense::new(SenseKey::NoSense, 0, 0)
    }

    /// ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE (0x20/0x00), pointing at byte 0.
    #[must_use]
    pub const fn invalid_opcode() -> Sense {
        Sense::illegal(0x20, 0x00, true, 0, None)
    }

    /// ILLEGAL REQUEST, INVALID FIELD IN CDB (0x24/0x00) at `byte` (and `bit` when the field
    /// is not a whole byte).
    #[must_use]
    pub const fn invalid_field_in_cdb(byte: u16, bit: Option<u8>) -> Sense {
        Sense::illegal(0x24, 0x00, true, byte, bit)
    }

    /// ILLEGAL REQUEST, INVALID FIELD IN PARAMETER LIST (0x26/0x00) at `byte`/`bit` of the
    /// parameter list.
    #[must_use]
    pub const fn invalid_field_in_parameter_list(byte: u16, bit: Option<u8>) -> Sense {
        Sense::illegal(0x26, 0x00, false, byte, bit)
    }

    /// ILLEGAL REQUEST, PARAMETER LIST LENGTH ERROR (0x1A/0x00).
    #[must_use]
    pub const fn parameter_list_length_error() -> Sense {
        Sense::new(SenseKey::IllegalRequest, 0x1A, 0x00)
    }

    /// ILLEGAL REQUEST, LOGICAL BLOCK ADDRESS OUT OF RANGE (0x21/0x00).
    #[must_use]
    pub const fn lba_out_of_range() -> Sense {
        Sense::new(SenseKey::IllegalRequest, 0x21, 0x00)
    }

    /// ILLEGAL REQUEST, LOGICAL UNIT NOT SUPPORTED (0x25/0x00).
    #[must_use]
    pub const fn lun_not_supported() -> Sense {
        Sense::new(SenseKey::IllegalRequest, 0x25, 0x00)
    }

    /// ILLEGAL REQUEST, SAVING PARAMETERS NOT SUPPORTED (0x39/0x00), pointing at the SP bit.
    #[must_use]
    pub const fn saving_parameters_not_supported(byte: u16, bit: u8) -> Sense {
        Sense::illegal(0x39, 0x00, true, byte, Some(bit))
    }

    /// ILLEGAL REQUEST, INVALID FIELD IN INFORMATION UNIT (0x0E/0x03): the transport carried
    /// less Data-Out than the CDB requires.
    #[must_use]
    pub const fn invalid_field_in_information_unit() -> Sense {
        Sense::new(SenseKey::IllegalRequest, 0x0E, 0x03)
    }

    /// ILLEGAL REQUEST, INVALID RELEASE OF PERSISTENT RESERVATION (0x26/0x04).
    #[must_use]
    pub const fn invalid_release_of_persistent_reservation() -> Sense {
        Sense::new(SenseKey::IllegalRequest, 0x26, 0x04)
    }

    /// ILLEGAL REQUEST, INSUFFICIENT REGISTRATION RESOURCES (0x55/0x04).
    #[must_use]
    pub const fn insufficient_registration_resources() -> Sense {
        Sense::new(SenseKey::IllegalRequest, 0x55, 0x04)
    }

    /// MISCOMPARE, MISCOMPARE DURING VERIFY OPERATION (0x1D/0x00) with INFORMATION set to the
    /// offset of the first differing byte.
    #[must_use]
    pub const fn miscompare(offset_bytes: u64) -> Sense {
        Sense::new(SenseKey::Miscompare, 0x1D, 0x00).with_info(offset_bytes)
    }

    /// DATA PROTECT, WRITE PROTECTED (0x27/0x00).
    #[must_use]
    pub const fn write_protected() -> Sense {
        Sense::new(SenseKey::DataProtect, 0x27, 0x00)
    }

    /// DATA PROTECT, SPACE ALLOCATION FAILED WRITE PROTECT (0x27/0x07).
    #[must_use]
    pub const fn space_allocation_failed() -> Sense {
        Sense::new(SenseKey::DataProtect, 0x27, 0x07)
    }

    /// MEDIUM ERROR, UNRECOVERED READ ERROR (0x11/0x00) at `lba`.
    #[must_use]
    pub const fn unrecovered_read_error(lba: u64) -> Sense {
        Sense::new(SenseKey::MediumError, 0x11, 0x00).with_info(lba)
    }

    /// ABORTED COMMAND, PROTOCOL SERVICE CRC ERROR (0x47/0x05): a Data-Out failed its data
    /// digest (RFC 7143 §11.4.7.2).
    #[must_use]
    pub const fn protocol_service_crc_error() -> Sense {
        Sense::new(SenseKey::AbortedCommand, 0x47, 0x05)
    }

    /// ABORTED COMMAND, DATA PHASE ERROR (0x4B/0x00): the Data-Out broke its sequence (DataSN,
    /// offset or transfer tag out of order).
    #[must_use]
    pub const fn data_phase_error() -> Sense {
        Sense::new(SenseKey::AbortedCommand, 0x4B, 0x00)
    }

    /// HARDWARE ERROR, INTERNAL TARGET FAILURE (0x44/0x00).
    #[must_use]
    pub const fn internal_target_failure() -> Sense {
        Sense::new(SenseKey::HardwareError, 0x44, 0x00)
    }

    /// NOT READY, LOGICAL UNIT NOT READY, SANITIZE IN PROGRESS (0x04/0x1B) with the fraction
    /// done in 65536ths (SBC-4 4.11.2).
    #[must_use]
    pub const fn sanitize_in_progress(progress: u16) -> Sense {
        let mut s = Sense::new(SenseKey::NotReady, 0x04, 0x1B);
        s.progress = Some(progress);
        s
    }

    /// MEDIUM ERROR, SANITIZE COMMAND FAILED (0x31/0x03): the last sanitize operation failed
    /// and the LU is in sanitize failure mode (SBC-4 4.11.3).
    #[must_use]
    pub const fn sanitize_failed() -> Sense {
        Sense::new(SenseKey::MediumError, 0x31, 0x03)
    }

    /// UNIT ATTENTION, POWER ON, RESET, OR BUS DEVICE RESET OCCURRED (0x29/0x00).
    #[must_use]
    pub const fn ua_power_on_reset() -> Sense {
        Sense::new(SenseKey::UnitAttention, 0x29, 0x00)
    }

    /// UNIT ATTENTION, BUS DEVICE RESET FUNCTION OCCURRED (0x29/0x03): after a LUN RESET.
    #[must_use]
    pub const fn ua_bus_device_reset() -> Sense {
        Sense::new(SenseKey::UnitAttention, 0x29, 0x03)
    }

    /// UNIT ATTENTION, MODE PARAMETERS CHANGED (0x2A/0x01).
    #[must_use]
    pub const fn ua_mode_parameters_changed() -> Sense {
        Sense::new(SenseKey::UnitAttention, 0x2A, 0x01)
    }

    /// UNIT ATTENTION, RESERVATIONS PREEMPTED (0x2A/0x03).
    #[must_use]
    pub const fn ua_reservations_preempted() -> Sense {
        Sense::new(SenseKey::UnitAttention, 0x2A, 0x03)
    }

    /// UNIT ATTENTION, RESERVATIONS RELEASED (0x2A/0x04).
    #[must_use]
    pub const fn ua_reservations_released() -> Sense {
        Sense::new(SenseKey::UnitAttention, 0x2A, 0x04)
    }

    /// UNIT ATTENTION, REGISTRATIONS PREEMPTED (0x2A/0x05).
    #[must_use]
    pub const fn ua_registrations_preempted() -> Sense {
        Sense::new(SenseKey::UnitAttention, 0x2A, 0x05)
    }

    /// UNIT ATTENTION, CAPACITY DATA HAS CHANGED (0x2A/0x09).
    #[must_use]
    pub const fn ua_capacity_changed() -> Sense {
        Sense::new(SenseKey::UnitAttention, 0x2A, 0x09)
    }

    /// UNIT ATTENTION, REPORTED LUNS DATA HAS CHANGED (0x3F/0x0E).
    #[must_use]
    pub const fn ua_reported_luns_changed() -> Sense {
        Sense::new(SenseKey::UnitAttention, 0x3F, 0x0E)
    }

    const fn illegal(asc: u8, ascq: u8, in_cdb: bool, byte: u16, bit: Option<u8>) -> Sense {
        Sense {
            key: SenseKey::IllegalRequest,
            asc,
            ascq,
            info: None,
            field_pointer: Some(FieldPointer { in_cdb, byte, bit }),
            progress: None,
        }
    }

    /// The three sense-key specific bytes (SKSV set), when there is a field pointer or a
    /// progress indication.
    fn sense_key_specific(&self) -> Option<[u8; 3]> {
        if let Some(p) = self.progress {
            let [hi, lo] = p.to_be_bytes();
            return Some([0x80, hi, lo]);
        }
        let fp = self.field_pointer?;
        let mut b0 = 0x80;
        if fp.in_cdb {
            b0 |= 0x40;
        }
        if let Some(bit) = fp.bit {
            b0 |= 0x08 | (bit & 0x07);
        }
        let [hi, lo] = fp.byte.to_be_bytes();
        Some([b0, hi, lo])
    }

    /// Fixed-format sense data (response code 0x70), 18 bytes.
    #[must_use]
    pub fn to_fixed(&self) -> [u8; FIXED_SENSE_BYTES] {
        let mut s = [0u8; FIXED_SENSE_BYTES];
        s[0] = 0x70;
        s[2] = self.key as u8;
        if let Some(info) = self.info {
            // The fixed format holds 32 bits; VALID is only set when the value fits.
            if let Ok(info32) = u32::try_from(info) {
                s[0] |= 0x80;
                s[3..7].copy_from_slice(&info32.to_be_bytes());
            }
        }
        s[7] = (FIXED_SENSE_BYTES - 8) as u8;
        s[12] = self.asc;
        s[13] = self.ascq;
        if let Some(sks) = self.sense_key_specific() {
            s[15..18].copy_from_slice(&sks);
        }
        s
    }

    /// Descriptor-format sense data (response code 0x72) with an information descriptor and
    /// a sense-key specific descriptor when they apply.
    #[must_use]
    pub fn to_descriptor(&self) -> Vec<u8> {
        let mut s = vec![0x72, self.key as u8, self.asc, self.ascq, 0, 0, 0, 0];
        if let Some(info) = self.info {
            s.extend_from_slice(&[0x00, 0x0A, 0x80, 0x00]);
            s.extend_from_slice(&info.to_be_bytes());
        }
        if let Some(sks) = self.sense_key_specific() {
            s.extend_from_slice(&[0x02, 0x06, 0x00, 0x00, sks[0], sks[1], sks[2], 0x00]);
        }
        s[7] = (s.len() - 8) as u8;
        s
    }

    /// Encodes in the format the control mode page's D_SENSE bit selects.
    #[must_use]
    pub fn encode(&self, descriptor_format: bool) -> Vec<u8> {
        if descriptor_format {
            self.to_descriptor()
        } else {
            self.to_fixed().to_vec()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_invalid_field_in_cdb_has_field_pointer() {
        let s = Sense::invalid_field_in_cdb(1, Some(5)).to_fixed();
        assert_eq!(s[0], 0x70);
        assert_eq!(s[2], 0x05);
        assert_eq!(s[7], 10);
        assert_eq!((s[12], s[13]), (0x24, 0x00));
        assert_eq!(s[15], 0x80 | 0x40 | 0x08 | 5);
        assert_eq!((s[16], s[17]), (0, 1));
    }

    #[test]
    fn fixed_parameter_list_pointer_has_cd_clear() {
        let s = Sense::invalid_field_in_parameter_list(0x102, None).to_fixed();
        assert_eq!(s[15], 0x80);
        assert_eq!((s[16], s[17]), (1, 2));
    }

    #[test]
    fn fixed_miscompare_sets_valid_and_information() {
        let s = Sense::miscompare(0x1234).to_fixed();
        assert_eq!(s[0], 0xF0);
        assert_eq!(s[2], 0x0E);
        assert_eq!(&s[3..7], &[0, 0, 0x12, 0x34]);
        assert_eq!(s[12], 0x1D);
        assert_eq!(s[15], 0);
    }

    #[test]
    fn fixed_information_too_large_clears_valid() {
        let s = Sense::unrecovered_read_error(1 << 40).to_fixed();
        assert_eq!(s[0], 0x70);
        assert_eq!(&s[3..7], &[0, 0, 0, 0]);
    }

    #[test]
    fn descriptor_format_carries_information_and_sks() {
        let d = Sense::miscompare(7).to_descriptor();
        assert_eq!(&d[..4], &[0x72, 0x0E, 0x1D, 0x00]);
        assert_eq!(d[7] as usize, d.len() - 8);
        assert_eq!(&d[8..12], &[0x00, 0x0A, 0x80, 0x00]);
        assert_eq!(&d[12..20], &7u64.to_be_bytes());

        let d = Sense::invalid_field_in_cdb(2, None).to_descriptor();
        assert_eq!(d.len(), 16);
        assert_eq!(&d[8..16], &[0x02, 0x06, 0, 0, 0xC0, 0, 2, 0]);
    }

    #[test]
    fn sanitize_in_progress_carries_progress_indication() {
        let s = Sense::sanitize_in_progress(0x1234).to_fixed();
        assert_eq!((s[2], s[12], s[13]), (0x02, 0x04, 0x1B));
        assert_eq!(&s[15..18], &[0x80, 0x12, 0x34]);
        let d = Sense::sanitize_in_progress(0x8000).to_descriptor();
        assert_eq!(&d[..4], &[0x72, 0x02, 0x04, 0x1B]);
        assert_eq!(&d[8..16], &[0x02, 0x06, 0, 0, 0x80, 0x80, 0x00, 0]);
    }

    #[test]
    fn encode_selects_format() {
        assert_eq!(Sense::lba_out_of_range().encode(false)[0], 0x70);
        assert_eq!(Sense::lba_out_of_range().encode(true)[0], 0x72);
        assert_eq!(Sense::lba_out_of_range().encode(true).len(), 8);
    }
}
