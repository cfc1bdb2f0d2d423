//! The I_T nexus a command arrives on, as the transport describes it.

/// One I_T nexus (iSCSI session): initiator port and target port identities (SAM-5 4.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItNexus {
    /// Transport-assigned id, unique while the session lives.
    pub nexus_id: u64,
    /// Initiator port name: `"<iqn>,i,0x<isid as 12 hex digits>"`.
    pub initiator_port: String,
    /// Initiator name (iSCSI name) without the ISID.
    pub initiator_name: String,
    /// Initiator session id.
    pub isid: [u8; 6],
    /// Target port name: `"<iqn>,t,0x<tpgt as 4 hex digits>"`.
    pub target_port: String,
    /// RELATIVE TARGET PORT IDENTIFIER of the target port (1-based).
    pub relative_target_port: u16,
    /// TARGET PORT GROUP the target port belongs to.
    pub target_port_group: u16,
}

impl ItNexus {
    /// Builds a nexus with the port names in the iSCSI format.
    #[must_use]
    pub fn new(
        nexus_id: u64,
        initiator_name: &str,
        isid: [u8; 6],
        target_name: &str,
        tpgt: u16,
    ) -> ItNexus {
        let isid_hex: String = isid.iter().map(|b| format!("{b:02x}")).collect();
        ItNexus {
            nexus_id,
            initiator_port: format!("{initiator_name},i,0x{isid_hex}"),
            initiator_name: initiator_name.to_string(),
            isid,
            target_port: format!("{target_name},t,0x{tpgt:04x}"),
            relative_target_port: tpgt.max(1),
            target_port_group: tpgt,
        }
    }
}

/// The identity of an I_T nexus that outlives a session: initiator port + target port.
/// Persistent reservation registrations are held by this identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct NexusKey {
    /// Initiator port name (`"<iqn>,i,0x<isid>"`).
    pub initiator_port: String,
    /// Target port name (`"<iqn>,t,0x<tpgt>"`).
    pub target_port: String,
}

impl NexusKey {
    /// The identity of `nexus`.
    #[must_use]
    pub fn of(nexus: &ItNexus) -> NexusKey {
        NexusKey {
            initiator_port: nexus.initiator_port.clone(),
            target_port: nexus.target_port.clone(),
        }
    }

    /// True when this identity is `nexus`.
    #[must_use]
    pub fn is(&self, nexus: &ItNexus) -> bool {
        self.initiator_port == nexus.initiator_port && self.target_port == nexus.target_port
    }
}
