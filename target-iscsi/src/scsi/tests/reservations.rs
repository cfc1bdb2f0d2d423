//! Persistent and SPC-2 reservations.
