//! Serial-number arithmetic (RFC 1982, SERIAL_BITS = 32) for CmdSN, StatSN, DataSN and R2TSN.

/// RFC 1982 serial-number "less than" with SERIAL_BITS = 32 (CmdSN, StatSN, DataSN...).
///
/// Two numbers exactly 2^31 apart are neither less nor greater than each other.
#[must_use]
pub const fn sn_lt(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < 0x8000_0000
}

/// RFC 1982 "greater than".
#[must_use]
pub const fn sn_gt(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000_0000
}

/// RFC 1982 "less than or equal".
#[must_use]
pub const fn sn_le(a: u32, b: u32) -> bool {
    a == b || sn_lt(a, b)
}

/// RFC 1982 "greater than or equal".
#[must_use]
pub const fn sn_ge(a: u32, b: u32) -> bool {
    a == b || sn_gt(a, b)
}

/// True when `sn` lies in the command window `[exp_cmd_sn, max_cmd_sn]` (RFC 7143 §4.2.2.1).
/// An empty window (MaxCmdSN = ExpCmdSN - 1) accepts nothing.
#[must_use]
pub const fn sn_in_window(sn: u32, exp_cmd_sn: u32, max_cmd_sn: u32) -> bool {
    sn_ge(sn, exp_cmd_sn) && sn_le(sn, max_cmd_sn)
}
