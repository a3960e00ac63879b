//! Fixture: operator "garble" bypasses the SDK's codec and returns a malformed output
//! batch (records-len larger than the buffer, a key-len pointing past the end), so the
//! host's output validation must reject it.

use weir_sdk::prelude::*;

/// `records-len` claims 4096 bytes; the one record present says its key has 1000 bytes
/// but only 3 follow.
fn garble(_input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&4096u32.to_le_bytes());
    out.extend_from_slice(&0i64.to_le_bytes());
    out.extend_from_slice(&1000u32.to_le_bytes());
    out.extend_from_slice(b"abc");
    out
}

fn build(job: &mut Job) {
    job.name("bad_output");
    job.generator("numbers", 0, 10).raw_operator::<(), u64>("garble", garble).discard("out");
}

weir_sdk::export_job!(build);
