//! What the on-disk records share (docs/format.md): enums stored as integers, records sealed
//! by a magic and a checksum, and objects that are arrays of fixed-size entries.
//!
//! Every record is a `#[repr(C)]` little-endian `bytemuck::Pod` type (format.rs refuses to
//! build for a big-endian target), so a record's layout is its struct definition and nothing
//! else: encoding is a cast, and no code here or in the records writes a field at an offset.

use std::mem::size_of;

use bytemuck::Pod;

use crate::format::{checksum, Checksum};

/// Bytes of the checksum that ends a sealed record.
pub const SEAL_BYTES: usize = size_of::<Checksum>();

/// A record that starts with its magic (a u64) and ends with the xxh3-128 of every byte
/// before that checksum: the label header, the uberblock, the owner record.
/// [`sealed_record!`] implements it and asserts that layout at compile time.
pub trait Sealed: Pod {
    /// The record's magic, its first eight bytes.
    const MAGIC: u64;
}

/// Why bytes did not open as a sealed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsealed {
    /// Fewer bytes than the record.
    TooShort,
    /// Another magic: not this kind of record.
    Magic,
    /// The checksum does not match: a damaged or torn copy.
    Checksum,
}

/// xxh3-128 of every byte of `record` before its checksum.
fn body_checksum<T: Sealed>(record: &T) -> Checksum {
    let bytes = bytemuck::bytes_of(record);
    checksum(&bytes[..bytes.len() - SEAL_BYTES])
}

/// Sets `record`'s checksum (its last [`SEAL_BYTES`]) to that of every byte before it.
pub fn seal<T: Sealed>(record: &mut T) {
    let sum = body_checksum(record);
    let bytes = bytemuck::bytes_of_mut(record);
    let at = bytes.len() - SEAL_BYTES;
    bytes[at..].copy_from_slice(bytemuck::bytes_of(&sum));
}

/// `record`, sealed, at the front of `image_bytes` of zeros (its slot on disk).
#[must_use]
pub fn sealed_image<T: Sealed>(mut record: T, image_bytes: usize) -> Vec<u8> {
    seal(&mut record);
    let mut image = vec![0u8; image_bytes.max(size_of::<T>())];
    image[..size_of::<T>()].copy_from_slice(bytemuck::bytes_of(&record));
    image
}

/// The record at the front of `bytes`, once its magic and checksum are checked.
///
/// # Errors
/// What is wrong with it, checked in this order: length, magic, checksum.
pub fn unseal<T: Sealed>(bytes: &[u8]) -> Result<T, Unsealed> {
    let record: T = read_front(bytes).ok_or(Unsealed::TooShort)?;
    let image = bytemuck::bytes_of(&record);
    if read_front::<u64>(image) != Some(T::MAGIC) {
        return Err(Unsealed::Magic);
    }
    if image[image.len() - SEAL_BYTES..] != *bytemuck::bytes_of(&body_checksum(&record)) {
        return Err(Unsealed::Checksum);
    }
    Ok(record)
}

/// The `T` at the front of `bytes`; `None` when there are fewer bytes than a `T`.
#[must_use]
pub fn read_front<T: Pod>(bytes: &[u8]) -> Option<T> {
    bytes.get(..size_of::<T>()).map(bytemuck::pod_read_unaligned)
}

/// An object that is an array of `T` (directory entries, block pointers, dedup entries);
/// `None` when its length is not a whole number of them.
#[must_use]
pub fn read_array<T: Pod>(bytes: &[u8]) -> Option<Vec<T>> {
    let size = size_of::<T>();
    bytes
        .len()
        .is_multiple_of(size)
        .then(|| bytes.chunks_exact(size).map(bytemuck::pod_read_unaligned).collect())
}

/// Makes `$record` (with fields `magic` and `checksum`) a [`Sealed`] record of `$bytes` with
/// magic `$magic`, asserting at compile time its size, the magic first and the checksum last.
macro_rules! sealed_record {
    ($record:ty, $magic:expr, $bytes:expr) => {
        const _: () = {
            assert!(std::mem::size_of::<$record>() == $bytes);
            assert!(std::mem::offset_of!($record, magic) == 0);
            assert!(std::mem::offset_of!($record, checksum) + $crate::record::SEAL_BYTES == $bytes);
        };

        impl $crate::record::Sealed for $record {
            const MAGIC: u64 = $magic;
        }
    };
}
pub(crate) use sealed_record;

/// Declares an enum stored on disk as an integer: `#[repr]` of that integer, `Debug`, `Clone`,
/// `Copy`, `PartialEq`, `Eq`, and `$decode`, which decodes a stored value (`None` for one this
/// build does not know). Attributes before `pub enum` (docs, more derives) are kept.
macro_rules! stored_enum {
    (
        $(#[$attr:meta])*
        pub enum $name:ident: $repr:ident, $decode:ident {
            $($(#[$variant_attr:meta])* $variant:ident = $value:literal,)+
        }
    ) => {
        $(#[$attr])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr($repr)]
        pub enum $name {
            $($(#[$variant_attr])* $variant = $value,)+
        }

        impl $name {
            /// Decodes a stored value (`None` for a value this build does not know).
            #[must_use]
            pub fn $decode(v: $repr) -> Option<$name> {
                match v {
                    $($value => Some($name::$variant),)+
                    _ => None,
                }
            }
        }
    };
}
pub(crate) use stored_enum;

/// Test builds: the image a record must encode to, written field by field in little-endian
/// from the documented layout (docs/format.md), independently of the struct that encodes it.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct DocumentedImage(Vec<u8>);

#[cfg(test)]
impl DocumentedImage {
    pub(crate) fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.extend_from_slice(bytes);
        self
    }

    pub(crate) fn zeros(&mut self, len: usize) -> &mut Self {
        self.0.resize(self.0.len() + len, 0);
        self
    }

    pub(crate) fn u16(&mut self, v: u16) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }

    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }

    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }

    /// Zeros up to `sealed_bytes`, the xxh3-128 of those bytes, then zeros up to
    /// `image_bytes`: the image and the checksum it carries.
    pub(crate) fn sealed(&self, sealed_bytes: usize, image_bytes: usize) -> (Vec<u8>, Checksum) {
        let mut image = self.0.clone();
        assert!(image.len() <= sealed_bytes, "fields run past the checksum");
        image.resize(sealed_bytes, 0);
        let sum = checksum(&image);
        image.extend_from_slice(bytemuck::bytes_of(&sum));
        image.resize(image_bytes, 0);
        (image, sum)
    }
}

#[cfg(test)]
mod tests {
    use bytemuck::{Pod, Zeroable};

    use super::*;

    #[repr(C)]
    #[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq)]
    struct Probe {
        magic: u64,
        value: u64,
        checksum: Checksum,
    }

    sealed_record!(Probe, 0x5052_4f42, 32);

    stored_enum! {
        /// A stored enum with a gap in its values.
        pub enum Shade: u16, from_u16 {
            /// Zero.
            Dark = 0,
            /// Seven.
            Light = 7,
        }
    }

    #[test]
    fn sealed_records_open_only_whole_with_their_magic_and_checksum() {
        let record = Probe { magic: 0x5052_4f42, value: 9, checksum: [0, 0] };
        let image = sealed_image(record, 64);
        assert_eq!(image.len(), 64);
        assert!(image[32..].iter().all(|b| *b == 0), "the slot is zero padded");
        let opened: Probe = unseal(&image).expect("sealed");
        assert_eq!(opened.value, 9);
        assert_eq!(opened.checksum, checksum(&image[..16]));
        assert_eq!(unseal::<Probe>(&image[..31]), Err(Unsealed::TooShort));
        let mut other = image.clone();
        other[0] ^= 1;
        assert_eq!(unseal::<Probe>(&other), Err(Unsealed::Magic));
        let mut damaged = image;
        damaged[8] ^= 1;
        assert_eq!(unseal::<Probe>(&damaged), Err(Unsealed::Checksum));
    }

    #[test]
    fn arrays_are_whole_numbers_of_entries() {
        let words = [1u64, 2, 3];
        let bytes = bytemuck::cast_slice::<u64, u8>(&words);
        assert_eq!(read_array::<u64>(bytes), Some(words.to_vec()));
        assert_eq!(read_array::<u64>(&bytes[..23]), None);
        assert_eq!(read_array::<u64>(&[]), Some(Vec::new()));
        assert_eq!(
            read_front::<u64>(&bytes[3..]),
            Some(u64::from_le_bytes(*b"\0\0\0\0\0\x02\0\0"))
        );
        assert_eq!(read_front::<u64>(&bytes[..7]), None);
    }

    #[test]
    fn stored_enums_decode_their_values_only() {
        assert_eq!(Shade::from_u16(0), Some(Shade::Dark));
        assert_eq!(Shade::from_u16(7), Some(Shade::Light));
        assert_eq!(Shade::Light as u16, 7);
        assert_eq!(Shade::from_u16(1), None);
    }
}
