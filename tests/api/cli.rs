//! The `outbound` binary.
