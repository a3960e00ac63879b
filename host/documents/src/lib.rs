//! The REST API's JSON documents (placeholder: filled in by the move from weir-api).
