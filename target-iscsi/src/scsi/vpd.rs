//! Vital product data pages (SPC-4 7.8, SBC-4 6.6): supported pages, unit serial number,
//! device identification, extended INQUIRY, block limits, block device characteristics and
//! logical block provisioning.

use super::inquiry::ascii_field;
use super::limits;
use super::logical_unit::LogicalUnit;
use super::nexus::ItNexus;
use super::sense::Sense;

/// VPD page codes, ascending as the supported-pages page lists them.
pub const SUPPORTED_PAGES: [u8; 7] = [0x00, 0x80, 0x83, 0x86, 0xB0, 0xB1, 0xB2];

fn page(code: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![0x00, code];
    p.extend_from_slice(&u16::try_from(body.len()).unwrap_or(u16::MAX).to_be_bytes());
    p.extend_from_slice(body);
    p
}

/// One designation descriptor (SPC-4 7.8.6.1).
fn designator(code_set: u8, piv_assoc_type: u8, value: &[u8]) -> Vec<u8> {
    let mut d = vec![code_set, piv_assoc_type, 0, u8::try_from(value.len()).unwrap_or(u8::MAX)];
    d.extend_from_slice(value);
    d
}

/// A null-terminated SCSI name string padded to a multiple of 4 bytes.
fn name_string(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.truncate(251);
    v.push(0);
    v.resize(v.len().next_multiple_of(4), 0);
    v
}

impl LogicalUnit {
    /// The VPD page `code`, or INVALID FIELD IN CDB for an unsupported one.
    pub(super) fn vpd_page(&self, nexus: &ItNexus, code: u8) -> Result<Vec<u8>, Sense> {
        let g = self.geometry();
        let bs = g.logical_block_bytes;
        let lbppb = g.physical_block_bytes / bs;
        Ok(match code {
            0x00 => page(0x00, &SUPPORTED_PAGES),
            0x80 => page(0x80, self.serial.as_bytes()),
            0x83 => page(0x83, &self.device_identification(nexus)),
            0x86 => {
                let mut b = [0u8; 60];
                b[1] = 0x01; // SIMPSUP
                b[3] = 0x01; // LUICLR
                page(0x86, &b)
            }
            0xB0 => {
                let mut b = [0u8; 60];
                b[0] = 0x01; // WSNZ
                b[1] = limits::MAX_COMPARE_AND_WRITE_BLOCKS;
                b[2..4].copy_from_slice(&u16::try_from(lbppb).unwrap_or(1).to_be_bytes());
                let max_xfer = limits::max_transfer_blocks(bs);
                b[4..8].copy_from_slice(&max_xfer.to_be_bytes());
                b[8..12].copy_from_slice(&max_xfer.to_be_bytes());
                b[12..16].copy_from_slice(&max_xfer.to_be_bytes());
                if g.thin_provisioned {
                    b[16..20].copy_from_slice(&limits::MAX_UNMAP_LBA_COUNT.to_be_bytes());
                    b[20..24].copy_from_slice(&limits::MAX_UNMAP_DESCRIPTORS.to_be_bytes());
                    b[24..28].copy_from_slice(&lbppb.to_be_bytes());
                    b[28] = 0x80; // UGAVALID, alignment 0
                }
                b[32..40].copy_from_slice(&limits::max_write_same_blocks(bs).to_be_bytes());
                page(0xB0, &b)
            }
            0xB1 => {
                let mut b = [0u8; 60];
                b[1] = 0x01; // MEDIUM ROTATION RATE: non-rotating
                if super::sanitize::block_erase_supported(&g, self.config.block_erase) {
                    // WABEREQ 01b: after a BLOCK ERASE, reads complete with GOOD (zeros).
                    b[3] = 0x40;
                }
                page(0xB1, &b)
            }
            0xB2 => {
                let mut b = [0u8; 4];
                if g.thin_provisioned {
                    b[1] = 0x80 | 0x40 | 0x20; // LBPU, LBPWS, LBPWS10
                    if g.unmapped_reads_zero {
                        b[1] |= 0x04; // LBPRZ
                    }
                    b[2] = 0x02; // PROVISIONING TYPE: thin
                }
                page(0xB2, &b)
            }
            _ => return Err(Sense::invalid_field_in_cdb(2, None)),
        })
    }

    fn device_identification(&self, nexus: &ItNexus) -> Vec<u8> {
        let mut d = Vec::new();
        // NAA IEEE Registered, binary, associated with the LU.
        d.extend(designator(0x01, 0x03, &self.naa_id.to_be_bytes()));
        // T10 vendor ID: vendor + serial, ASCII, LU.
        let mut t10 = vec![0u8; 8];
        ascii_field(&mut t10, &self.config.vendor);
        t10.extend_from_slice(self.serial.as_bytes());
        d.extend(designator(0x02, 0x01, &t10));
        // SCSI name string of the target port (iSCSI, PIV, target port association).
        d.extend(designator(0x53, 0x80 | 0x10 | 0x08, &name_string(&nexus.target_port)));
        // Relative target port.
        let mut rtp = [0u8; 4];
        rtp[2..4].copy_from_slice(&nexus.relative_target_port.to_be_bytes());
        d.extend(designator(0x51, 0x80 | 0x10 | 0x04, &rtp));
        // Target port group.
        let mut tpg = [0u8; 4];
        tpg[2..4].copy_from_slice(&nexus.target_port_group.to_be_bytes());
        d.extend(designator(0x51, 0x80 | 0x10 | 0x05, &tpg));
        d
    }
}
