//! INQUIRY standard data (SPC-4 6.6.2) and REQUEST SENSE (SPC-4 6.39).

use super::logical_unit::LogicalUnit;
use super::nexus::ItNexus;
use super::sense::Sense;
use super::status::{data_in, ScsiResult};
use drivers::buffer::IoBuf;

/// Length of the standard INQUIRY data returned.
pub const STANDARD_INQUIRY_BYTES: usize = 96;

/// Version descriptors: SAM-5, iSCSI, SPC-4, SBC-3.
const VERSION_DESCRIPTORS: [u16; 4] = [0x00A0, 0x0960, 0x0460, 0x04C0];

/// Copies `s` into `dst`, space-padded, keeping only printable ASCII.
pub(super) fn ascii_field(dst: &mut [u8], s: &str) {
    dst.fill(b' ');
    for (d, c) in dst.iter_mut().zip(s.bytes().filter(|c| (0x20..=0x7E).contains(c))) {
        *d = c;
    }
}

/// Standard INQUIRY data for a LU with `vendor`/`product`/`revision`; `peripheral` is byte 0.
#[must_use]
pub fn standard_inquiry(
    peripheral: u8,
    vendor: &str,
    product: &str,
    revision: &str,
) -> [u8; STANDARD_INQUIRY_BYTES] {
    let mut d = [0u8; STANDARD_INQUIRY_BYTES];
    d[0] = peripheral;
    d[2] = 0x06; // SPC-4
    d[3] = 0x10 | 0x02; // HISUP, RESPONSE DATA FORMAT 2
    d[4] = (STANDARD_INQUIRY_BYTES - 5) as u8;
    d[7] = 0x02; // CMDQUE
    ascii_field(&mut d[8..16], vendor);
    ascii_field(&mut d[16..32], product);
    ascii_field(&mut d[32..36], revision);
    for (i, v) in VERSION_DESCRIPTORS.iter().enumerate() {
        d[58 + 2 * i..60 + 2 * i].copy_from_slice(&v.to_be_bytes());
    }
    d
}

impl LogicalUnit {
    /// INQUIRY: standard data or a VPD page.
    pub(super) fn inquiry(
        &self,
        nexus: &ItNexus,
        evpd: bool,
        page_code: u8,
        allocation_length: u32,
    ) -> ScsiResult {
        let alloc = allocation_length as usize;
        if evpd {
            let page = self.vpd_page(nexus, page_code)?;
            return Ok(data_in(&page, alloc));
        }
        if page_code != 0 {
            return Err(Sense::invalid_field_in_cdb(2, None).into());
        }
        let c = &self.config;
        Ok(data_in(&standard_inquiry(0x00, &c.vendor, &c.product, &c.revision), alloc))
    }

    /// REQUEST SENSE: the oldest pending unit attention (cleared), or NO SENSE.
    pub(super) fn request_sense(
        &self,
        nexus: &ItNexus,
        desc: bool,
        allocation_length: u32,
    ) -> Option<IoBuf> {
        let sense = self
            .take_unit_attention(nexus.nexus_id)
            .or_else(|| self.sanitize.pollable_sense())
            .unwrap_or_else(Sense::no_sense);
        data_in(&sense.encode(desc), allocation_length as usize)
    }
}
