//! Test support (placeholder: filled in by the move from tests/support.rs).
