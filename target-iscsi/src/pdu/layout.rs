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

/// Big-endian integers, as every numeric BHS field is.
macro_rules! big_endian_field {
    ($($int:ty),*) => {$(
        impl BhsField for $int {
            type At = usize;

            #[inline]
            fn read(bhs: &Bhs, at: usize) -> Result<Self, PduError> {
                <[u8; core::mem::size_of::<$int>()]>::read(bhs, at).map(<$int>::from_be_bytes)
            }

            #[inline]
            fn write(self, bhs: &mut Bhs, at: usize) {
                self.to_be_bytes().write(bhs, at);
            }
        }
    )*};
}

big_endian_field!(u8, u16, u32, u64);

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

/// The layout of one PDU's header: its opcode, the fields `parse` decodes by hand (flag bits,
/// the segment lengths, values it must check before the rest), and for every other field of the
/// struct the place [`BhsField`] reads and writes it at:
///
/// ```text
/// bhs_layout! {
///     Opcode::NopIn => NopIn(data_segment_length: u32) {
///         lun @ LUN, itt @ ITT, ttt @ TTT, sns @ STAT_SN
///     }
/// }
/// ```
///
/// generates, for the struct declared next to it:
///
/// - `fn from_bhs(bhs, <the hand-decoded fields, in the order given>) -> Result<Self, PduError>`:
///   the header with every `@` field read from `bhs`, which `parse` returns after its checks (the
///   only error is an undefined code in an enum field);
/// - `fn encode_header(&self, immediate, flags, total_ahs_length_words, data_segment_length)`:
///   the BHS with the opcode, the I bit, byte 1, the lengths and every `@` field written, which
///   `encode` returns after any hand-encoded field.
///
/// The struct literal in `from_bhs` names every field once, so the compiler refuses a layout
/// that forgets a field of the struct or names one twice.
macro_rules! bhs_layout {
    (
        $opcode:path => $name:ident($($param:ident: $param_ty:ty),* $(,)?) {
            $($field:ident @ $at:expr),* $(,)?
        }
    ) => {
        impl $name {
            /// The opcode of this PDU.
            const OPCODE: $crate::pdu::Opcode = $opcode;

            // One parameter per hand-decoded field, named after it (eight for a SCSI Command).
            #[allow(clippy::too_many_arguments)]
            #[inline]
            fn from_bhs(
                bhs: &$crate::pdu::Bhs,
                $($param: $param_ty,)*
            ) -> Result<Self, $crate::pdu::PduError> {
                Ok(Self {
                    $($param,)*
                    $($field: $crate::pdu::layout::BhsField::read(bhs, $at)?,)*
                })
            }

            #[inline]
            fn encode_header(
                &self,
                immediate: bool,
                flags: u8,
                total_ahs_length_words: u8,
                data_segment_length: u32,
            ) -> $crate::pdu::Bhs {
                let mut b = $crate::pdu::Bhs::with_opcode(Self::OPCODE, immediate);
                b.bytes[1] = flags;
                b.set_lengths(total_ahs_length_words, data_segment_length);
                $($crate::pdu::layout::BhsField::write(self.$field, &mut b, $at);)*
                b
            }
        }
    };
}

/// `parse` and `encode` for a PDU laid out by [`bhs_layout!`] that has nothing to decode by hand:
/// the F bit set, no AHS, and either no data segment (`simple_codec!(R2t)`) or one whose length
/// is the only hand-decoded field (`simple_codec!(NopIn, data_segment_length)`).
macro_rules! simple_codec {
    ($name:ident) => {
        impl $name {
            /// Encodes the header.
            #[must_use]
            pub fn encode(&self) -> $crate::pdu::Bhs {
                self.encode_header(false, 0x80, 0, 0)
            }
        }
        $crate::pdu::layout::simple_codec!(@parse $name, $crate::pdu::bhs::NO_DATA, []);
    };
    ($name:ident, $data_segment_length:ident) => {
        impl $name {
            /// Encodes the header.
            #[must_use]
            pub fn encode(&self) -> $crate::pdu::Bhs {
                self.encode_header(false, 0x80, 0, self.$data_segment_length)
            }
        }
        $crate::pdu::layout::simple_codec!(@parse $name, 0, [$data_segment_length]);
    };
    (@parse $name:ident, $data_rule:expr, [$($data_segment_length:ident)?]) => {
        impl $name {
            /// Parses a header of this PDU.
            ///
            /// # Errors
            /// [`PduError`](crate::pdu::PduError) on a malformed header or an undefined code.
            pub fn parse(bhs: &$crate::pdu::Bhs) -> Result<Self, $crate::pdu::PduError> {
                use $crate::pdu::bhs::{expect_header, FINAL, NO_AHS};
                expect_header(bhs, Self::OPCODE, FINAL | NO_AHS | $data_rule)?;
                Self::from_bhs(bhs $(, bhs.$data_segment_length())?)
            }
        }
    };
}

/// Declares an enum of wire codes (`Variant = code`, with the attributes given), always
/// `#[repr($repr)]` with the same derives, and from the same list:
///
/// - `pub const fn $decode(v) -> Option<Self>` (`from_u8`...), `None` for a code the list does
///   not hold;
/// - `fn decode(v) -> Result<Self, PduError>`, which refuses such a code as
///   [`PduError::InvalidField`] with the `unknown` text;
/// - a [`BhsField`] codec, for a header field that holds the code.
macro_rules! wire_enum {
    (
        $(#[$attr:meta])*
        pub enum $name:ident: $repr:ident, $decode:ident, unknown = $unknown:literal {
            $( $(#[$variant_attr:meta])* $variant:ident = $code:literal, )*
        }
    ) => {
        $(#[$attr])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
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

            /// Decodes a wire code, refusing a reserved or unknown one.
            #[inline]
            pub(super) fn decode(v: $repr) -> Result<Self, $crate::pdu::PduError> {
                Self::$decode(v).ok_or($crate::pdu::PduError::InvalidField($unknown))
            }
        }

        impl $crate::pdu::layout::BhsField for $name {
            type At = usize;

            #[inline]
            fn read(bhs: &$crate::pdu::Bhs, at: usize) -> Result<Self, $crate::pdu::PduError> {
                Self::decode(<$repr as $crate::pdu::layout::BhsField>::read(bhs, at)?)
            }

            #[inline]
            fn write(self, bhs: &mut $crate::pdu::Bhs, at: usize) {
                $crate::pdu::layout::BhsField::write(self as $repr, bhs, at);
            }
        }
    };
}

pub(super) use {bhs_layout, simple_codec, wire_enum};
