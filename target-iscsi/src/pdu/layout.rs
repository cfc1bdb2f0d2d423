//! How a PDU header is laid out, written once per PDU: [`bhs_layout!`] declares a header's struct
//! with the BHS byte offset of each field, and generates from that one list both the field reads
//! its `parse` returns and the field writes its `encode` makes. [`wire_enum!`] does the same for a
//! table of wire codes: the enum and its decoder come from one list of `Variant = code`.
//!
//! The generated code is what one would write by hand: one big-endian load or store per field,
//! no loop, no allocation, no dynamic dispatch.

use super::{Bhs, PduError, StatusSns};

/// A value kept at a fixed place in the BHS, big-endian (RFC 7143 §11.1).
pub(super) trait BhsField: Sized {
    /// Where the value is: a byte offset for plain fields.
    type At: Copy;

    /// Reads the value; an error only for a code the value's type does not define.
    fn read(bhs: &Bhs, at: Self::At) -> Result<Self, PduError>;

    /// Writes the value.
    fn write(self, bhs: &mut Bhs, at: Self::At);
}

impl BhsField for u8 {
    type At = usize;

    #[inline]
    fn read(bhs: &Bhs, at: usize) -> Result<Self, PduError> {
        Ok(bhs.bytes[at])
    }

    #[inline]
    fn write(self, bhs: &mut Bhs, at: usize) {
        bhs.bytes[at] = self;
    }
}

impl BhsField for u16 {
    type At = usize;

    #[inline]
    fn read(bhs: &Bhs, at: usize) -> Result<Self, PduError> {
        Ok(bhs.u16_at(at))
    }

    #[inline]
    fn write(self, bhs: &mut Bhs, at: usize) {
        bhs.set_u16(at, self);
    }
}

impl BhsField for u32 {
    type At = usize;

    #[inline]
    fn read(bhs: &Bhs, at: usize) -> Result<Self, PduError> {
        Ok(bhs.u32_at(at))
    }

    #[inline]
    fn write(self, bhs: &mut Bhs, at: usize) {
        bhs.set_u32(at, self);
    }
}

impl BhsField for u64 {
    type At = usize;

    #[inline]
    fn read(bhs: &Bhs, at: usize) -> Result<Self, PduError> {
        Ok(bhs.u64_at(at))
    }

    #[inline]
    fn write(self, bhs: &mut Bhs, at: usize) {
        bhs.set_u64(at, self);
    }
}

/// Raw bytes (the ISID, the first 16 CDB bytes).
impl<const N: usize> BhsField for [u8; N] {
    type At = usize;

    #[inline]
    fn read(bhs: &Bhs, at: usize) -> Result<Self, PduError> {
        let mut out = [0u8; N];
        out.copy_from_slice(&bhs.bytes[at..at + N]);
        Ok(out)
    }

    #[inline]
    fn write(self, bhs: &mut Bhs, at: usize) {
        bhs.bytes[at..at + N].copy_from_slice(&self);
    }
}

/// StatSN, ExpCmdSN and MaxCmdSN: three consecutive words from `at` (byte 24 in every target PDU
/// that carries them).
impl BhsField for StatusSns {
    type At = usize;

    #[inline]
    fn read(bhs: &Bhs, at: usize) -> Result<Self, PduError> {
        Ok(Self {
            stat_sn: bhs.u32_at(at),
            exp_cmd_sn: bhs.u32_at(at + 4),
            max_cmd_sn: bhs.u32_at(at + 8),
        })
    }

    #[inline]
    fn write(self, bhs: &mut Bhs, at: usize) {
        bhs.set_u32(at, self.stat_sn);
        bhs.set_u32(at + 4, self.exp_cmd_sn);
        bhs.set_u32(at + 8, self.max_cmd_sn);
    }
}

/// Declares a PDU header struct from one list of its fields and generates the two halves of its
/// codec that follow from the list. A field written `pub name: Type [AT],` is at `AT` in the BHS
/// ([`BhsField`] says how `Type` is read and written there); a field without `[AT]` (flag bits,
/// the segment lengths, a value `parse` must check before the rest) is decoded and encoded by
/// hand. Besides the struct (with the attributes given, derives included) this generates:
///
/// - `fn from_bhs(bhs: &Bhs, <each field without [AT], in order>) -> Result<Self, PduError>`:
///   the header with every `[AT]` field read from `bhs`, which `parse` returns after its checks
///   (the only error is an undefined code in an enum field);
/// - `fn write_fields(&self, b: &mut Bhs)`: every `[AT]` field written into `b`, which `encode`
///   calls after it has set the opcode, the flags and the lengths.
macro_rules! bhs_layout {
    (
        $(#[$attr:meta])*
        pub struct $name:ident {
            $( $(#[$field_attr:meta])* pub $field:ident: $ty:ty $([$at:expr])?, )*
        }
    ) => {
        $(#[$attr])*
        pub struct $name {
            $( $(#[$field_attr])* pub $field: $ty, )*
        }

        impl $name {
            #[inline]
            fn write_fields(&self, b: &mut $crate::pdu::Bhs) {
                $($( $crate::pdu::layout::BhsField::write(self.$field, b, $at); )?)*
            }
        }

        $crate::pdu::layout::bhs_layout!(@from_bhs $name [] [] $( $field: $ty $([$at])?, )*);
    };
    // A field at an offset is read from the header.
    (@from_bhs $name:ident [$($param:ident: $param_ty:ty,)*] [$($done:ident $([$done_at:expr])?,)*]
        $field:ident: $ty:ty [$at:expr], $($rest:tt)*) => {
        $crate::pdu::layout::bhs_layout!(@from_bhs $name [$($param: $param_ty,)*]
            [$($done $([$done_at])?,)* $field [$at],] $($rest)*);
    };
    // A field without one comes from the caller.
    (@from_bhs $name:ident [$($param:ident: $param_ty:ty,)*] [$($done:ident $([$done_at:expr])?,)*]
        $field:ident: $ty:ty, $($rest:tt)*) => {
        $crate::pdu::layout::bhs_layout!(@from_bhs $name [$($param: $param_ty,)* $field: $ty,]
            [$($done $([$done_at])?,)* $field,] $($rest)*);
    };
    (@from_bhs $name:ident [$($param:ident: $param_ty:ty,)*] [$($done:ident $([$done_at:expr])?,)*]) => {
        impl $name {
            // One parameter per hand-decoded field, named after it.
            #[allow(clippy::too_many_arguments)]
            #[inline]
            fn from_bhs(
                bhs: &$crate::pdu::Bhs,
                $($param: $param_ty,)*
            ) -> Result<Self, $crate::pdu::PduError> {
                Ok(Self {
                    $( $done: $crate::pdu::layout::bhs_layout!(@value bhs $done $([$done_at])?), )*
                })
            }
        }
    };
    (@value $bhs:ident $field:ident [$at:expr]) => {
        $crate::pdu::layout::BhsField::read($bhs, $at)?
    };
    (@value $bhs:ident $field:ident) => {
        $field
    };
}

/// Declares an enum of wire codes (`Variant = code`, with the attributes given) and its `const`
/// decoder named `$decode` (`from_u8`...), which gives `None` for a code the list does not hold.
/// With `unknown = "..."`, the enum is also a [`BhsField`] whose undefined codes are refused as
/// [`PduError::InvalidField`] with that text.
macro_rules! wire_enum {
    (
        $(#[$attr:meta])*
        pub enum $name:ident: $repr:ident, $decode:ident $(, unknown = $unknown:literal)? {
            $( $(#[$variant_attr:meta])* $variant:ident = $code:literal, )*
        }
    ) => {
        $(#[$attr])*
        #[repr($repr)]
        pub enum $name {
            $( $(#[$variant_attr])* $variant = $code, )*
        }

        impl $name {
            /// Decodes a wire code; `None` for a reserved or unknown one.
            #[must_use]
            pub const fn $decode(v: $repr) -> Option<Self> {
                match v {
                    $( $code => Some(Self::$variant), )*
                    _ => None,
                }
            }
        }

        $(
            impl $crate::pdu::layout::BhsField for $name {
                type At = usize;

                #[inline]
                fn read(bhs: &$crate::pdu::Bhs, at: usize) -> Result<Self, $crate::pdu::PduError> {
                    let code = <$repr as $crate::pdu::layout::BhsField>::read(bhs, at)?;
                    Self::$decode(code).ok_or($crate::pdu::PduError::InvalidField($unknown))
                }

                #[inline]
                fn write(self, bhs: &mut $crate::pdu::Bhs, at: usize) {
                    $crate::pdu::layout::BhsField::write(self as $repr, bhs, at);
                }
            }
        )?
    };
}

pub(super) use {bhs_layout, wire_enum};
