//! Mode parameters (SPC-4 7.5, SBC-4 6.5): the caching, control and informational exceptions
//! control pages, with current, changeable, default and saved values, MODE SENSE data and
//! MODE SELECT parameter-list validation.

use serde::{Deserialize, Serialize};

use super::cdb::{ModeSelectCdb, ModeSenseCdb};
use super::sense::Sense;

/// Caching mode page code.
pub const PAGE_CACHING: u8 = 0x08;
/// Control mode page code.
pub const PAGE_CONTROL: u8 = 0x0A;
/// Informational exceptions control mode page code.
pub const PAGE_INFORMATIONAL_EXCEPTIONS: u8 = 0x1C;
/// "Return all pages".
pub const PAGE_ALL: u8 = 0x3F;

const CACHING_BYTES: usize = 20;
const CONTROL_BYTES: usize = 12;
const IEC_BYTES: usize = 12;

/// WCE bit, byte 2 of the caching page.
const WCE: u8 = 0x04;
/// RCD bit, byte 2 of the caching page.
const RCD: u8 = 0x01;
/// D_SENSE bit, byte 2 of the control page.
const D_SENSE: u8 = 0x04;
/// SWP bit, byte 4 of the control page.
const SWP: u8 = 0x08;

/// One value of every page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageSet {
    caching: [u8; CACHING_BYTES],
    control: [u8; CONTROL_BYTES],
    informational_exceptions: [u8; IEC_BYTES],
}

impl PageSet {
    /// Default values: write cache on, fixed sense, QAM unrestricted, exceptions reporting
    /// disabled.
    #[must_use]
    pub fn defaults() -> PageSet {
        let mut caching = [0u8; CACHING_BYTES];
        caching[0] = PAGE_CACHING;
        caching[1] = (CACHING_BYTES - 2) as u8;
        caching[2] = WCE;
        let mut control = [0u8; CONTROL_BYTES];
        control[0] = PAGE_CONTROL;
        control[1] = (CONTROL_BYTES - 2) as u8;
        control[3] = 0x10; // QUEUE ALGORITHM MODIFIER 1: unrestricted reordering.
        control[8] = 0xFF; // BUSY TIMEOUT PERIOD: unlimited.
        control[9] = 0xFF;
        let mut informational_exceptions = [0u8; IEC_BYTES];
        informational_exceptions[0] = PAGE_INFORMATIONAL_EXCEPTIONS;
        informational_exceptions[1] = (IEC_BYTES - 2) as u8;
        informational_exceptions[2] = 0x08; // DEXCPT
        PageSet { caching, control, informational_exceptions }
    }

    /// The changeable mask of every page.
    #[must_use]
    pub fn changeable() -> PageSet {
        let mut m = PageSet {
            caching: [0; CACHING_BYTES],
            control: [0; CONTROL_BYTES],
            informational_exceptions: [0; IEC_BYTES],
        };
        m.caching[0] = PAGE_CACHING;
        m.caching[1] = (CACHING_BYTES - 2) as u8;
        m.caching[2] = WCE | RCD;
        m.control[0] = PAGE_CONTROL;
        m.control[1] = (CONTROL_BYTES - 2) as u8;
        m.control[2] = D_SENSE;
        m.control[4] = SWP;
        m.informational_exceptions[0] = PAGE_INFORMATIONAL_EXCEPTIONS;
        m.informational_exceptions[1] = (IEC_BYTES - 2) as u8;
        m.informational_exceptions[2] = 0x08;
        m.informational_exceptions[3] = 0x0F;
        m
    }

    fn page(&self, code: u8) -> Option<&[u8]> {
        match code {
            PAGE_CACHING => Some(&self.caching),
            PAGE_CONTROL => Some(&self.control),
            PAGE_INFORMATIONAL_EXCEPTIONS => Some(&self.informational_exceptions),
            _ => None,
        }
    }

    fn page_mut(&mut self, code: u8) -> Option<&mut [u8]> {
        match code {
            PAGE_CACHING => Some(&mut self.caching),
            PAGE_CONTROL => Some(&mut self.control),
            PAGE_INFORMATIONAL_EXCEPTIONS => Some(&mut self.informational_exceptions),
            _ => None,
        }
    }

    /// WCE.
    #[must_use]
    pub fn write_cache(&self) -> bool {
        self.caching[2] & WCE != 0
    }

    /// Sets WCE.
    pub fn set_write_cache(&mut self, on: bool) {
        if on {
            self.caching[2] |= WCE;
        } else {
            self.caching[2] &= !WCE;
        }
    }

    /// D_SENSE: descriptor-format sense data.
    #[must_use]
    pub fn descriptor_sense(&self) -> bool {
        self.control[2] & D_SENSE != 0
    }

    /// SWP: software write protect.
    #[must_use]
    pub fn software_write_protect(&self) -> bool {
        self.control[4] & SWP != 0
    }
}

/// Page codes in the order MODE SENSE returns them.
const PAGES: [u8; 3] = [PAGE_CACHING, PAGE_CONTROL, PAGE_INFORMATIONAL_EXCEPTIONS];

/// What MODE SENSE needs to know about the LU besides the pages.
#[derive(Debug, Clone, Copy)]
pub struct DeviceInfo {
    /// Logical block size.
    pub block_bytes: u32,
    /// Number of logical blocks.
    pub capacity_blocks: u64,
    /// Medium is write-protected (read-only LU or SWP).
    pub write_protected: bool,
}

/// The mode pages of one LU.
#[derive(Debug, Clone)]
pub struct ModePages {
    /// Current values.
    pub current: PageSet,
    /// Saved values, when the LU can save (has a state file).
    pub saved: Option<PageSet>,
}

impl ModePages {
    /// MODE SENSE (6)/(10) data, cut to the allocation length.
    pub fn sense(&self, cdb: &ModeSenseCdb, dev: DeviceInfo) -> Result<Vec<u8>, Sense> {
        let set = match cdb.page_control {
            0 => self.current.clone(),
            1 => PageSet::changeable(),
            2 => PageSet::defaults(),
            _ => match &self.saved {
                Some(s) => s.clone(),
                None => return Err(Sense::saving_parameters_not_supported(2, 7)),
            },
        };
        let mut pages = Vec::new();
        match (cdb.page_code, cdb.subpage_code) {
            (PAGE_ALL, 0x00 | 0xFF) => {
                for code in PAGES {
                    pages.extend_from_slice(set.page(code).unwrap_or(&[]));
                }
            }
            (code, 0x00) => match set.page(code) {
                Some(p) => pages.extend_from_slice(p),
                None => return Err(Sense::invalid_field_in_cdb(2, Some(5))),
            },
            (code, _) if code == PAGE_ALL || set.page(code).is_some() => {
                return Err(Sense::invalid_field_in_cdb(3, None));
            }
            _ => return Err(Sense::invalid_field_in_cdb(2, Some(5))),
        }
        let block_descriptor = if cdb.dbd { Vec::new() } else { block_descriptor(cdb.llbaa, dev) };
        let device_specific = if dev.write_protected { 0x80 } else { 0 } | 0x10; // WP, DPOFUA
        let mut d = if cdb.ten {
            let mut h = vec![0u8; 8];
            h[3] = device_specific;
            h[4] = u8::from(block_descriptor.len() == 16);
            h[6..8].copy_from_slice(&(block_descriptor.len() as u16).to_be_bytes());
            h
        } else {
            vec![0, 0, device_specific, block_descriptor.len() as u8]
        };
        d.extend_from_slice(&block_descriptor);
        d.extend_from_slice(&pages);
        if cdb.ten {
            let len = u16::try_from(d.len() - 2).unwrap_or(u16::MAX);
            d[0..2].copy_from_slice(&len.to_be_bytes());
        } else {
            d[0] = u8::try_from(d.len() - 1).unwrap_or(u8::MAX);
        }
        Ok(d)
    }

    /// Validates a MODE SELECT parameter list and, when valid, applies it to the current
    /// values (and the saved ones with SP). Returns whether the current values changed.
    pub fn select(
        &mut self,
        cdb: &ModeSelectCdb,
        list: &[u8],
        block_bytes: u32,
    ) -> Result<bool, Sense> {
        if cdb.sp && self.saved.is_none() {
            return Err(Sense::saving_parameters_not_supported(1, 0));
        }
        if list.is_empty() {
            return Ok(false);
        }
        if !cdb.pf {
            return Err(Sense::invalid_field_in_cdb(1, Some(4)));
        }
        let (header_bytes, bd_bytes, long) = if cdb.ten {
            if list.len() < 8 {
                return Err(Sense::parameter_list_length_error());
            }
            (8, usize::from(u16::from_be_bytes([list[6], list[7]])), list[4] & 0x01 != 0)
        } else {
            if list.len() < 4 {
                return Err(Sense::parameter_list_length_error());
            }
            (4, usize::from(list[3]), false)
        };
        let medium_type_at = if cdb.ten { 2 } else { 1 };
        if list[medium_type_at] != 0 {
            return Err(Sense::invalid_field_in_parameter_list(medium_type_at as u16, None));
        }
        let expected_bd = if long { 16 } else { 8 };
        if bd_bytes != 0 && bd_bytes != expected_bd {
            let at = if cdb.ten { 6 } else { 3 };
            return Err(Sense::invalid_field_in_parameter_list(at, None));
        }
        if header_bytes + bd_bytes > list.len() {
            return Err(Sense::parameter_list_length_error());
        }
        if bd_bytes > 0 {
            let bd = &list[header_bytes..header_bytes + bd_bytes];
            let len_at = if long { 12 } else { 4 };
            let len = u32::from_be_bytes([
                if long { bd[12] } else { 0 },
                bd[len_at + 1],
                bd[len_at + 2],
                bd[len_at + 3],
            ]);
            if len != 0 && len != block_bytes {
                return Err(Sense::invalid_field_in_parameter_list(
                    (header_bytes + len_at) as u16,
                    None,
                ));
            }
        }
        let mut next = self.current.clone();
        let mask = PageSet::changeable();
        let mut off = header_bytes + bd_bytes;
        while off < list.len() {
            let at = |i: usize| u16::try_from(off + i).unwrap_or(u16::MAX);
            if list[off] & 0x40 != 0 {
                return Err(Sense::invalid_field_in_parameter_list(at(0), Some(6)));
            }
            let code = list[off] & 0x3F;
            let len =
                usize::from(*list.get(off + 1).ok_or_else(Sense::parameter_list_length_error)?);
            let (Some(cur), Some(m)) = (next.page_mut(code), mask.page(code)) else {
                return Err(Sense::invalid_field_in_parameter_list(at(0), Some(5)));
            };
            if len + 2 != cur.len() {
                return Err(Sense::invalid_field_in_parameter_list(at(1), None));
            }
            let new =
                list.get(off..off + 2 + len).ok_or_else(Sense::parameter_list_length_error)?;
            for i in 2..new.len() {
                let diff = (new[i] ^ cur[i]) & !m[i];
                if diff != 0 {
                    let bit = 7 - diff.leading_zeros() as u8;
                    return Err(Sense::invalid_field_in_parameter_list(at(i), Some(bit)));
                }
            }
            for i in 2..new.len() {
                cur[i] = (cur[i] & !m[i]) | (new[i] & m[i]);
            }
            off += 2 + len;
        }
        let changed = next != self.current;
        self.current = next;
        if cdb.sp {
            self.saved = Some(self.current.clone());
        }
        Ok(changed)
    }
}

fn block_descriptor(long: bool, dev: DeviceInfo) -> Vec<u8> {
    if long {
        let mut d = vec![0u8; 16];
        d[0..8].copy_from_slice(&dev.capacity_blocks.to_be_bytes());
        d[12..16].copy_from_slice(&dev.block_bytes.to_be_bytes());
        d
    } else {
        let mut d = vec![0u8; 8];
        let blocks = u32::try_from(dev.capacity_blocks).unwrap_or(u32::MAX);
        d[0..4].copy_from_slice(&blocks.to_be_bytes());
        d[5..8].copy_from_slice(&dev.block_bytes.to_be_bytes()[1..4]);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> DeviceInfo {
        DeviceInfo { block_bytes: 512, capacity_blocks: 1000, write_protected: false }
    }

    fn sense6(pc: u8, page: u8, dbd: bool) -> ModeSenseCdb {
        ModeSenseCdb {
            ten: false,
            dbd,
            llbaa: false,
            page_control: pc,
            page_code: page,
            subpage_code: 0,
            allocation_length: 255,
        }
    }

    fn pages() -> ModePages {
        ModePages { current: PageSet::defaults(), saved: None }
    }

    #[test]
    fn all_pages_with_block_descriptor() {
        let d = pages().sense(&sense6(0, PAGE_ALL, false), dev()).unwrap_or_default();
        assert_eq!(usize::from(d[0]), d.len() - 1);
        assert_eq!(d[2], 0x10);
        assert_eq!(d[3], 8);
        assert_eq!(&d[4..8], &1000u32.to_be_bytes());
        assert_eq!(&d[9..12], &[0, 2, 0]);
        assert_eq!(d[12], PAGE_CACHING);
        assert_eq!(d[12 + 20], PAGE_CONTROL);
        assert_eq!(d[12 + 32], PAGE_INFORMATIONAL_EXCEPTIONS);
        assert_eq!(d.len(), 12 + 20 + 12 + 12);
    }

    #[test]
    fn mode_sense10_long_lba_descriptor() {
        let cdb = ModeSenseCdb { ten: true, llbaa: true, ..sense6(0, PAGE_CONTROL, false) };
        let d = pages().sense(&cdb, dev()).unwrap_or_default();
        assert_eq!(d[4], 1);
        assert_eq!(&d[6..8], &[0, 16]);
        assert_eq!(&d[8..16], &1000u64.to_be_bytes());
        assert_eq!(d[24], PAGE_CONTROL);
        assert_eq!(usize::from(u16::from_be_bytes([d[0], d[1]])), d.len() - 2);
    }

    #[test]
    fn unknown_page_and_saved_without_support() {
        assert_eq!(
            pages().sense(&sense6(0, 0x19, true), dev()),
            Err(Sense::invalid_field_in_cdb(2, Some(5)))
        );
        assert_eq!(
            pages().sense(&sense6(3, PAGE_ALL, true), dev()),
            Err(Sense::saving_parameters_not_supported(2, 7))
        );
        let cdb = ModeSenseCdb { subpage_code: 1, ..sense6(0, PAGE_CONTROL, true) };
        assert_eq!(pages().sense(&cdb, dev()), Err(Sense::invalid_field_in_cdb(3, None)));
    }

    #[test]
    fn changeable_values_show_wce_dsense_swp() {
        let d = pages().sense(&sense6(1, PAGE_ALL, true), dev()).unwrap_or_default();
        assert_eq!(d[4 + 2], WCE | RCD);
        assert_eq!(d[24 + 2], D_SENSE);
        assert_eq!(d[24 + 4], SWP);
    }

    fn select6(page: &[u8]) -> Vec<u8> {
        let mut l = vec![0, 0, 0, 0];
        l.extend_from_slice(page);
        l
    }

    const SELECT: ModeSelectCdb =
        ModeSelectCdb { ten: false, pf: true, sp: false, parameter_list_length: 0 };

    #[test]
    fn select_changes_changeable_bits() {
        let mut p = pages();
        let mut control = p.current.control;
        control[2] |= D_SENSE;
        control[4] |= SWP;
        assert_eq!(p.select(&SELECT, &select6(&control), 512), Ok(true));
        assert!(p.current.descriptor_sense());
        assert!(p.current.software_write_protect());
        assert_eq!(p.select(&SELECT, &select6(&control), 512), Ok(false));
    }

    #[test]
    fn select_rejects_non_changeable_bit_with_pointer() {
        let mut p = pages();
        let mut control = p.current.control;
        control[5] = 0x40;
        assert_eq!(
            p.select(&SELECT, &select6(&control), 512),
            Err(Sense::invalid_field_in_parameter_list(4 + 5, Some(6)))
        );
        assert_eq!(p.current, PageSet::defaults());
    }

    #[test]
    fn select_rejects_bad_length_unknown_page_and_short_list() {
        let mut p = pages();
        let mut caching = p.current.caching.to_vec();
        caching[1] = 0x0A;
        caching.truncate(12);
        assert_eq!(
            p.select(&SELECT, &select6(&caching), 512),
            Err(Sense::invalid_field_in_parameter_list(5, None))
        );
        assert_eq!(
            p.select(&SELECT, &select6(&[0x19, 2, 0, 0]), 512),
            Err(Sense::invalid_field_in_parameter_list(4, Some(5)))
        );
        assert_eq!(p.select(&SELECT, &[0, 0], 512), Err(Sense::parameter_list_length_error()));
        let cut = &select6(&p.current.control.clone())[..10];
        assert_eq!(p.select(&SELECT, cut, 512), Err(Sense::parameter_list_length_error()));
        let no_pf = ModeSelectCdb { pf: false, ..SELECT };
        assert_eq!(
            p.select(&no_pf, &select6(&[]), 512),
            Err(Sense::invalid_field_in_cdb(1, Some(4)))
        );
    }

    #[test]
    fn select_checks_block_descriptor_length() {
        let mut p = pages();
        let mut l = vec![0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0x10, 0];
        assert_eq!(
            p.select(&SELECT, &l, 512),
            Err(Sense::invalid_field_in_parameter_list(8, None))
        );
        l[10] = 0x02;
        assert_eq!(p.select(&SELECT, &l, 512), Ok(false));
    }

    #[test]
    fn save_requires_support_and_stores() {
        let mut p = pages();
        let sp = ModeSelectCdb { sp: true, ..SELECT };
        assert_eq!(
            p.select(&sp, &select6(&[]), 512),
            Err(Sense::saving_parameters_not_supported(1, 0))
        );
        p.saved = Some(PageSet::defaults());
        let mut caching = p.current.caching;
        caching[2] = 0;
        assert_eq!(p.select(&sp, &select6(&caching), 512), Ok(true));
        assert_eq!(p.saved.as_ref().map(PageSet::write_cache), Some(false));
    }
}
