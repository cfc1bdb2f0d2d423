//! Integration tests of ferrite's drivers: every operation against the real kernel, buffer
//! ownership under cancellation, cross-shard messaging, the fault device, backend equivalence
//! and block-device conformance. One binary, one module per concern.

mod cancel;
mod conformance;
mod fallback_equivalence;
mod fault_device;
mod mailbox_load;
mod ops_file;
mod ops_net;
mod support;
