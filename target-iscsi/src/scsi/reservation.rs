//! Reservations: persistent reservations (SPC-4 5.13) and SPC-2 RESERVE/RELEASE, their
//! conflict table, and the state kept (and, with APTPL, persisted) per logical unit.
//!
//! This module is pure state: it decides, the logical unit applies the unit attentions it
//! returns and writes the state file.

use serde::{Deserialize, Serialize};

use super::cdb::{Access, Command};
use super::nexus::{ItNexus, NexusKey};
use super::sense::Sense;
use super::status::ScsiError;

/// Most registrations per LU.
pub const MAX_REGISTRATIONS: usize = 256;

/// PERSISTENT RESERVE OUT service actions.
#[allow(missing_docs)]
pub mod service_action {
    pub const REGISTER: u8 = 0x00;
    pub const RESERVE: u8 = 0x01;
    pub const RELEASE: u8 = 0x02;
    pub const CLEAR: u8 = 0x03;
    pub const PREEMPT: u8 = 0x04;
    pub const PREEMPT_AND_ABORT: u8 = 0x05;
    pub const REGISTER_AND_IGNORE_EXISTING_KEY: u8 = 0x06;
    pub const REGISTER_AND_MOVE: u8 = 0x07;
}

/// Persistent reservation TYPE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PrType {
    /// Write Exclusive (1).
    WriteExclusive,
    /// Exclusive Access (3).
    ExclusiveAccess,
    /// Write Exclusive – Registrants Only (5).
    WriteExclusiveRegistrantsOnly,
    /// Exclusive Access – Registrants Only (6).
    ExclusiveAccessRegistrantsOnly,
    /// Write Exclusive – All Registrants (7).
    WriteExclusiveAllRegistrants,
    /// Exclusive Access – All Registrants (8).
    ExclusiveAccessAllRegistrants,
}

impl PrType {
    /// Decodes the TYPE field.
    #[must_use]
    pub fn from_code(code: u8) -> Option<PrType> {
        Some(match code {
            1 => PrType::WriteExclusive,
            3 => PrType::ExclusiveAccess,
            5 => PrType::WriteExclusiveRegistrantsOnly,
            6 => PrType::ExclusiveAccessRegistrantsOnly,
            7 => PrType::WriteExclusiveAllRegistrants,
            8 => PrType::ExclusiveAccessAllRegistrants,
            _ => return None,
        })
    }

    /// The TYPE field value.
    #[must_use]
    pub fn code(self) -> u8 {
        match self {
            PrType::WriteExclusive => 1,
            PrType::ExclusiveAccess => 3,
            PrType::WriteExclusiveRegistrantsOnly => 5,
            PrType::ExclusiveAccessRegistrantsOnly => 6,
            PrType::WriteExclusiveAllRegistrants => 7,
            PrType::ExclusiveAccessAllRegistrants => 8,
        }
    }

    /// Every registrant is a reservation holder.
    #[must_use]
    pub fn all_registrants(self) -> bool {
        matches!(self, PrType::WriteExclusiveAllRegistrants | PrType::ExclusiveAccessAllRegistrants)
    }

    /// Registered non-holders get full access (registrants-only and all-registrants types).
    fn registrants_have_access(self) -> bool {
        !matches!(self, PrType::WriteExclusive | PrType::ExclusiveAccess)
    }

    /// Unregistered nexuses (and, for the plain types, registered non-holders) may read.
    fn others_may_read(self) -> bool {
        matches!(
            self,
            PrType::WriteExclusive
                | PrType::WriteExclusiveRegistrantsOnly
                | PrType::WriteExclusiveAllRegistrants
        )
    }
}

/// One registered I_T nexus (or, with ALL_TG_PT, initiator port on every target port).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// Reservation key.
    pub key: u64,
    /// The registered identity.
    pub nexus: NexusKey,
    /// Registered through every target port.
    pub all_tg_pt: bool,
    /// RELATIVE TARGET PORT IDENTIFIER it registered through.
    pub relative_target_port: u16,
}

impl Registration {
    /// True when this registration covers the I_T nexus `key`.
    #[must_use]
    pub fn covers(&self, key: &NexusKey) -> bool {
        self.nexus.initiator_port == key.initiator_port
            && (self.all_tg_pt || self.nexus.target_port == key.target_port)
    }
}

/// The persistent reservation, when one exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistentReservation {
    /// The nexus that created it (for all-registrants types every registrant holds it).
    pub holder: NexusKey,
    /// Reservation type.
    pub pr_type: PrType,
}

/// Persistent reservation state of one LU; what APTPL persists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrState {
    /// PRgeneration.
    pub generation: u32,
    /// Registrations, in registration order.
    pub registrations: Vec<Registration>,
    /// The reservation.
    pub reservation: Option<PersistentReservation>,
    /// Activate Persist Through Power Loss.
    pub aptpl: bool,
}

/// A unit attention to raise for the nexuses a registration covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Whose nexuses.
    pub to: Registration,
    /// Which condition.
    pub sense: Sense,
}

/// The basic PERSISTENT RESERVE OUT parameter list (24 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProutParams {
    /// RESERVATION KEY.
    pub key: u64,
    /// SERVICE ACTION RESERVATION KEY.
    pub sa_key: u64,
    /// SPEC_I_PT.
    pub spec_i_pt: bool,
    /// ALL_TG_PT.
    pub all_tg_pt: bool,
    /// APTPL.
    pub aptpl: bool,
}

fn be64(b: &[u8], i: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(i..i + 8) {
        a.copy_from_slice(s);
    }
    u64::from_be_bytes(a)
}

impl ProutParams {
    /// Decodes the 24-byte parameter list.
    pub fn parse(list: &[u8]) -> Result<ProutParams, Sense> {
        if list.len() != 24 {
            return Err(Sense::parameter_list_length_error());
        }
        Ok(ProutParams {
            key: be64(list, 0),
            sa_key: be64(list, 8),
            spec_i_pt: list[20] & 0x08 != 0,
            all_tg_pt: list[20] & 0x04 != 0,
            aptpl: list[20] & 0x01 != 0,
        })
    }
}

/// All reservation state of one LU.
#[derive(Debug, Default)]
pub struct Reservations {
    /// Persistent reservations.
    pub pr: PrState,
    /// Holder of the SPC-2 reservation (I_T nexus id).
    pub spc2_holder: Option<u64>,
}

type PrResult = Result<Vec<Notice>, ScsiError>;

impl Reservations {
    /// True when any reservation or registration exists (fast-path flag).
    #[must_use]
    pub fn active(&self) -> bool {
        self.spc2_holder.is_some()
            || !self.pr.registrations.is_empty()
            || self.pr.reservation.is_some()
    }

    fn registration_index(&self, key: &NexusKey) -> Option<usize> {
        self.pr.registrations.iter().position(|r| r.covers(key))
    }

    /// True when `nexus` holds the persistent reservation.
    #[must_use]
    pub fn is_holder(&self, key: &NexusKey) -> bool {
        match &self.pr.reservation {
            None => false,
            Some(r) if r.pr_type.all_registrants() => self.registration_index(key).is_some(),
            Some(r) => &r.holder == key,
        }
    }

    /// The conflict check made before a command runs (SPC-4 5.13.1 table 70; SPC-2 5.5.1).
    pub fn check_access(&self, nexus: &ItNexus, command: &Command) -> Result<(), ScsiError> {
        if let Some(holder) = self.spc2_holder {
            let exempt = matches!(
                command,
                Command::Inquiry { .. }
                    | Command::RequestSense { .. }
                    | Command::ReportLuns { .. }
                    | Command::ReportSupportedOpcodes { .. }
                    | Command::ReportSupportedTmfs { .. }
                    | Command::Release
            );
            if holder != nexus.nexus_id && !exempt {
                return Err(ScsiError::ReservationConflict);
            }
        }
        let Some(res) = &self.pr.reservation else { return Ok(()) };
        let key = NexusKey::of(nexus);
        if self.is_holder(&key) {
            return Ok(());
        }
        let registered = self.registration_index(&key).is_some();
        let allowed = match command.access() {
            Access::Always => true,
            _ if registered && res.pr_type.registrants_have_access() => true,
            Access::Read => res.pr_type.others_may_read(),
            Access::Write => false,
        };
        if allowed {
            Ok(())
        } else {
            Err(ScsiError::ReservationConflict)
        }
    }

    /// SPC-2 RESERVE.
    pub fn reserve_spc2(&mut self, nexus: &ItNexus) -> Result<(), ScsiError> {
        if !self.pr.registrations.is_empty() || self.pr.reservation.is_some() {
            return Err(ScsiError::ReservationConflict);
        }
        match self.spc2_holder {
            Some(h) if h != nexus.nexus_id => Err(ScsiError::ReservationConflict),
            _ => {
                self.spc2_holder = Some(nexus.nexus_id);
                Ok(())
            }
        }
    }

    /// SPC-2 RELEASE: releases when `nexus` holds the reservation, otherwise does nothing.
    pub fn release_spc2(&mut self, nexus: &ItNexus) -> Result<(), ScsiError> {
        if self.pr.reservation.is_some() {
            return Err(ScsiError::ReservationConflict);
        }
        if self.spc2_holder == Some(nexus.nexus_id) {
            self.spc2_holder = None;
        }
        Ok(())
    }

    /// Drops the SPC-2 reservation of a lost nexus.
    pub fn nexus_lost(&mut self, nexus_id: u64) {
        if self.spc2_holder == Some(nexus_id) {
            self.spc2_holder = None;
        }
    }

    /// PERSISTENT RESERVE OUT. `list` is the whole parameter list; `aptpl_supported` says
    /// whether APTPL can be honoured.
    pub fn persistent_reserve_out(
        &mut self,
        nexus: &ItNexus,
        service_action: u8,
        scope: u8,
        type_code: u8,
        list: &[u8],
        aptpl_supported: bool,
    ) -> PrResult {
        use crate::scsi::reservation::service_action as sa;
        if service_action > sa::REGISTER_AND_MOVE {
            return Err(Sense::invalid_field_in_cdb(1, Some(4)).into());
        }
        if service_action == sa::REGISTER_AND_MOVE {
            return self.register_and_move(nexus, scope, type_code, list, aptpl_supported);
        }
        let p = ProutParams::parse(list)?;
        if p.spec_i_pt {
            return Err(Sense::invalid_field_in_parameter_list(20, Some(3)).into());
        }
        let key = NexusKey::of(nexus);
        match service_action {
            sa::REGISTER | sa::REGISTER_AND_IGNORE_EXISTING_KEY => {
                if p.aptpl && !aptpl_supported {
                    return Err(Sense::invalid_field_in_parameter_list(20, Some(0)).into());
                }
                self.register(
                    nexus,
                    &key,
                    p,
                    service_action == sa::REGISTER_AND_IGNORE_EXISTING_KEY,
                )
            }
            _ => {
                let me = self.check_registered(&key, p.key)?;
                match service_action {
                    sa::CLEAR => Ok(self.clear(me)),
                    _ => {
                        if scope != 0 {
                            return Err(Sense::invalid_field_in_cdb(2, Some(7)).into());
                        }
                        let Some(pr_type) = PrType::from_code(type_code) else {
                            return Err(Sense::invalid_field_in_cdb(2, Some(3)).into());
                        };
                        match service_action {
                            sa::RESERVE => self.reserve(&key, pr_type),
                            sa::RELEASE => self.release(&key, pr_type),
                            _ => self.preempt(me, &key, p.sa_key, pr_type),
                        }
                    }
                }
            }
        }
    }

    /// Index of the registration of `key`, checking RESERVATION KEY against it.
    fn check_registered(&self, key: &NexusKey, res_key: u64) -> Result<usize, ScsiError> {
        match self.registration_index(key) {
            Some(i) if self.pr.registrations[i].key == res_key => Ok(i),
            _ => Err(ScsiError::ReservationConflict),
        }
    }

    fn register(
        &mut self,
        nexus: &ItNexus,
        key: &NexusKey,
        p: ProutParams,
        ignore: bool,
    ) -> PrResult {
        let mut notices = Vec::new();
        match self.registration_index(key) {
            None => {
                if !ignore && p.key != 0 {
                    return Err(ScsiError::ReservationConflict);
                }
                if p.sa_key == 0 {
                    return Ok(notices);
                }
                if self.pr.registrations.len() >= MAX_REGISTRATIONS {
                    return Err(Sense::insufficient_registration_resources().into());
                }
                self.pr.registrations.push(Registration {
                    key: p.sa_key,
                    nexus: key.clone(),
                    all_tg_pt: p.all_tg_pt,
                    relative_target_port: nexus.relative_target_port,
                });
            }
            Some(i) => {
                if !ignore && p.key != self.pr.registrations[i].key {
                    return Err(ScsiError::ReservationConflict);
                }
                if p.sa_key == 0 {
                    notices = self.unregister(i);
                } else {
                    self.pr.registrations[i].key = p.sa_key;
                }
            }
        }
        self.pr.aptpl = p.aptpl;
        self.bump();
        Ok(notices)
    }

    /// Removes registration `i`, releasing the reservation it held.
    fn unregister(&mut self, i: usize) -> Vec<Notice> {
        let gone = self.pr.registrations.remove(i);
        let mut notices = Vec::new();
        let Some(res) = self.pr.reservation.clone() else { return notices };
        if res.pr_type.all_registrants() {
            if self.pr.registrations.is_empty() {
                self.pr.reservation = None;
            }
        } else if gone.covers(&res.holder) {
            self.pr.reservation = None;
            if matches!(
                res.pr_type,
                PrType::WriteExclusiveRegistrantsOnly | PrType::ExclusiveAccessRegistrantsOnly
            ) {
                notices = self.notify_all(None, Sense::ua_reservations_released());
            }
        }
        notices
    }

    fn notify_all(&self, except: Option<&NexusKey>, sense: Sense) -> Vec<Notice> {
        self.pr
            .registrations
            .iter()
            .filter(|r| except.is_none_or(|k| !r.covers(k)))
            .map(|r| Notice { to: r.clone(), sense })
            .collect()
    }

    fn reserve(&mut self, key: &NexusKey, pr_type: PrType) -> PrResult {
        match &self.pr.reservation {
            None => {
                self.pr.reservation = Some(PersistentReservation { holder: key.clone(), pr_type });
                Ok(Vec::new())
            }
            Some(r) if r.pr_type == pr_type && self.is_holder(key) => Ok(Vec::new()),
            Some(_) => Err(ScsiError::ReservationConflict),
        }
    }

    fn release(&mut self, key: &NexusKey, pr_type: PrType) -> PrResult {
        let Some(res) = self.pr.reservation.clone() else { return Ok(Vec::new()) };
        if !self.is_holder(key) {
            return Ok(Vec::new());
        }
        if res.pr_type != pr_type {
            return Err(Sense::invalid_release_of_persistent_reservation().into());
        }
        self.pr.reservation = None;
        if res.pr_type.registrants_have_access() {
            return Ok(self.notify_all(Some(key), Sense::ua_reservations_released()));
        }
        Ok(Vec::new())
    }

    fn clear(&mut self, me: usize) -> Vec<Notice> {
        let my_key = self.pr.registrations[me].nexus.clone();
        let notices = self.notify_all(Some(&my_key), Sense::ua_reservations_preempted());
        self.pr.registrations.clear();
        self.pr.reservation = None;
        self.bump();
        notices
    }

    /// Removes every registration with `sa_key` except `keep`; returns the removed ones.
    fn remove_key(&mut self, sa_key: u64, keep: &NexusKey) -> Vec<Registration> {
        let (gone, kept): (Vec<Registration>, Vec<Registration>) =
            std::mem::take(&mut self.pr.registrations)
                .into_iter()
                .partition(|r| r.key == sa_key && !r.covers(keep));
        self.pr.registrations = kept;
        gone
    }

    fn preempt(&mut self, me: usize, key: &NexusKey, sa_key: u64, pr_type: PrType) -> PrResult {
        let mut notices = Vec::new();
        let preempted = |gone: &[Registration]| {
            gone.iter()
                .map(|r| Notice { to: r.clone(), sense: Sense::ua_registrations_preempted() })
                .collect::<Vec<_>>()
        };
        match self.pr.reservation.clone() {
            Some(res) if res.pr_type.all_registrants() && sa_key == 0 => {
                let mine = self.pr.registrations[me].clone();
                let gone: Vec<Registration> =
                    self.pr.registrations.iter().filter(|r| !r.covers(key)).cloned().collect();
                self.pr.registrations = vec![mine];
                self.pr.reservation = Some(PersistentReservation { holder: key.clone(), pr_type });
                notices.extend(preempted(&gone));
            }
            Some(res)
                if !res.pr_type.all_registrants() && self.holder_key(&res) == Some(sa_key) =>
            {
                let gone = self.remove_key(sa_key, key);
                let changed = res.pr_type != pr_type;
                self.pr.reservation = Some(PersistentReservation { holder: key.clone(), pr_type });
                notices.extend(preempted(&gone));
                if changed {
                    notices.extend(self.notify_all(Some(key), Sense::ua_reservations_released()));
                }
            }
            _ => {
                if sa_key == 0 {
                    return Err(Sense::invalid_field_in_parameter_list(8, None).into());
                }
                let gone = self.remove_key(sa_key, key);
                if gone.is_empty() {
                    return Err(ScsiError::ReservationConflict);
                }
                if let Some(res) = &self.pr.reservation {
                    if res.pr_type.all_registrants() && self.pr.registrations.is_empty() {
                        self.pr.reservation = None;
                    }
                }
                notices.extend(preempted(&gone));
            }
        }
        self.bump();
        Ok(notices)
    }

    fn holder_key(&self, res: &PersistentReservation) -> Option<u64> {
        self.registration_index(&res.holder).map(|i| self.pr.registrations[i].key)
    }

    fn register_and_move(
        &mut self,
        nexus: &ItNexus,
        scope: u8,
        type_code: u8,
        list: &[u8],
        aptpl_supported: bool,
    ) -> PrResult {
        if list.len() < 24 {
            return Err(Sense::parameter_list_length_error().into());
        }
        let res_key = be64(list, 0);
        let sa_key = be64(list, 8);
        let unreg = list[17] & 0x02 != 0;
        let aptpl = list[17] & 0x01 != 0;
        let rtp = u16::from_be_bytes([list[18], list[19]]);
        let tid_len = u32::from_be_bytes([list[20], list[21], list[22], list[23]]) as usize;
        let key = NexusKey::of(nexus);
        let me = self.check_registered(&key, res_key)?;
        let Some(res) = self.pr.reservation.clone() else {
            return Err(ScsiError::ReservationConflict);
        };
        if res.pr_type.all_registrants() || res.holder != key {
            return Err(ScsiError::ReservationConflict);
        }
        if scope != 0 {
            return Err(Sense::invalid_field_in_cdb(2, Some(7)).into());
        }
        if PrType::from_code(type_code).is_none() {
            return Err(Sense::invalid_field_in_cdb(2, Some(3)).into());
        }
        if aptpl && !aptpl_supported {
            return Err(Sense::invalid_field_in_parameter_list(17, Some(0)).into());
        }
        if sa_key == 0 {
            return Err(Sense::invalid_field_in_parameter_list(8, None).into());
        }
        if list.len() != 24 + tid_len {
            return Err(Sense::parameter_list_length_error().into());
        }
        let initiator_port = parse_iscsi_transport_id(&list[24..])?;
        if rtp != nexus.relative_target_port {
            return Err(Sense::invalid_field_in_parameter_list(18, None).into());
        }
        let dest = NexusKey { initiator_port, target_port: nexus.target_port.clone() };
        if dest == key {
            return Err(Sense::invalid_field_in_parameter_list(24, None).into());
        }
        match self.registration_index(&dest) {
            Some(i) => self.pr.registrations[i].key = sa_key,
            None => {
                if self.pr.registrations.len() >= MAX_REGISTRATIONS {
                    return Err(Sense::insufficient_registration_resources().into());
                }
                self.pr.registrations.push(Registration {
                    key: sa_key,
                    nexus: dest.clone(),
                    all_tg_pt: false,
                    relative_target_port: rtp,
                });
            }
        }
        self.pr.reservation = Some(PersistentReservation { holder: dest, pr_type: res.pr_type });
        if unreg {
            // `me` is still valid: the destination was appended or updated in place.
            self.pr.registrations.remove(me);
        }
        self.pr.aptpl = aptpl;
        self.bump();
        Ok(Vec::new())
    }

    fn bump(&mut self) {
        self.pr.generation = self.pr.generation.wrapping_add(1);
    }

    /// PERSISTENT RESERVE IN data for `service_action` (0 READ KEYS, 1 READ RESERVATION,
    /// 2 REPORT CAPABILITIES, 3 READ FULL STATUS).
    pub fn persistent_reserve_in(
        &self,
        service_action: u8,
        ptpl_capable: bool,
    ) -> Result<Vec<u8>, Sense> {
        let gen = self.pr.generation.to_be_bytes();
        let mut d = Vec::new();
        match service_action {
            0 => {
                d.extend_from_slice(&gen);
                d.extend_from_slice(&[0; 4]);
                for r in &self.pr.registrations {
                    d.extend_from_slice(&r.key.to_be_bytes());
                }
            }
            1 => {
                d.extend_from_slice(&gen);
                d.extend_from_slice(&[0; 4]);
                if let Some(res) = &self.pr.reservation {
                    let key = if res.pr_type.all_registrants() {
                        0
                    } else {
                        self.holder_key(res).unwrap_or(0)
                    };
                    d.extend_from_slice(&key.to_be_bytes());
                    d.extend_from_slice(&[0; 5]);
                    d.push(res.pr_type.code());
                    d.extend_from_slice(&[0; 2]);
                }
            }
            2 => {
                let ptpl_c = if ptpl_capable { 0x01 } else { 0 };
                let ptpl_a = if self.pr.aptpl { 0x01 } else { 0 };
                // CRH 0, SIP_C 0 (SPEC_I_PT refused), ATP_C 1; TMV 1 with ALLOW COMMANDS 1.
                d.extend_from_slice(&[0, 8, 0x04 | ptpl_c, 0x80 | 0x10 | ptpl_a, 0xEA, 0x01, 0, 0]);
                return Ok(d);
            }
            3 => {
                d.extend_from_slice(&gen);
                d.extend_from_slice(&[0; 4]);
                for r in &self.pr.registrations {
                    let holder = self.is_holder(&r.nexus)
                        || self.pr.reservation.as_ref().is_some_and(|res| r.covers(&res.holder));
                    let tid = iscsi_transport_id(&r.nexus.initiator_port);
                    d.extend_from_slice(&r.key.to_be_bytes());
                    d.extend_from_slice(&[0; 4]);
                    d.push(u8::from(r.all_tg_pt) << 1 | u8::from(holder));
                    d.push(match (&self.pr.reservation, holder) {
                        (Some(res), true) => res.pr_type.code(),
                        _ => 0,
                    });
                    d.extend_from_slice(&[0; 4]);
                    d.extend_from_slice(&r.relative_target_port.to_be_bytes());
                    d.extend_from_slice(&(tid.len() as u32).to_be_bytes());
                    d.extend_from_slice(&tid);
                }
            }
            _ => return Err(Sense::invalid_field_in_cdb(1, Some(4))),
        }
        let add = (d.len() - 8) as u32;
        d[4..8].copy_from_slice(&add.to_be_bytes());
        Ok(d)
    }
}

/// An iSCSI TransportID in the initiator-port format (FORMAT CODE 01b, SPC-4 7.6.4.6).
#[must_use]
pub fn iscsi_transport_id(initiator_port: &str) -> Vec<u8> {
    let name_len = (initiator_port.len() + 1).next_multiple_of(4).max(20);
    let mut t = vec![0x45, 0];
    t.extend_from_slice(&(name_len as u16).to_be_bytes());
    t.extend_from_slice(initiator_port.as_bytes());
    t.resize(4 + name_len, 0);
    t
}

/// Reads the initiator port name from an iSCSI TransportID (FORMAT CODE 01b).
pub fn parse_iscsi_transport_id(tid: &[u8]) -> Result<String, Sense> {
    let bad = |byte: u16| Sense::invalid_field_in_parameter_list(24 + byte, None);
    if tid.len() < 4 {
        return Err(Sense::parameter_list_length_error());
    }
    if tid[0] != 0x45 {
        return Err(bad(0));
    }
    let len = usize::from(u16::from_be_bytes([tid[2], tid[3]]));
    let name = tid.get(4..4 + len).ok_or_else(Sense::parameter_list_length_error)?;
    let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
    let s = std::str::from_utf8(&name[..end]).map_err(|_| bad(4))?;
    if !s.contains(",i,0x") {
        return Err(bad(4));
    }
    Ok(s.to_string())
}
