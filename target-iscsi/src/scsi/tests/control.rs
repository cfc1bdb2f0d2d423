//! INQUIRY, VPD, mode pages, unit attentions, opcodes and target routing.
