//! Fuzzes `FrameDecoder` with arbitrary bytes in arbitrary splits.
//!
//! Invariants: never panics; without an error every input byte is consumed exactly once;
//! every yielded payload re-encodes to exactly the bytes it was decoded from; typed
//! message decoding of any payload returns (Ok or Err) without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use weir_net::frame::{FrameDecoder, decode_message, frame_header};

/// A message shape with the usual serde features: enums, strings, vectors, options.
#[derive(Debug, Deserialize)]
#[allow(dead_code)]
enum Msg {
    Register { name: String, slots: u32 },
    Batch(Vec<u8>),
    Plan(Vec<(u64, Option<String>)>),
    Stop,
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, input)) = data.split_first() else {
        return;
    };
    // Low bits: max frame size (small ones make oversize paths reachable); high bits:
    // chunk size of each feed, so splits land everywhere.
    let max = [0u32, 1, 7, 64, 4096, u32::MAX][usize::from(ctl & 7) % 6];
    let chunk = usize::from(ctl >> 3) + 1;
    let mut dec = FrameDecoder::new(max);
    let mut rebuilt = Vec::with_capacity(input.len());
    for piece in input.chunks(chunk) {
        let mut rest = piece;
        while !rest.is_empty() {
            match dec.feed(rest) {
                Ok((used, frame)) => {
                    assert!(used > 0 && used <= rest.len(), "feed must make progress");
                    rest = &rest[used..];
                    if let Some(payload) = frame {
                        let header =
                            frame_header(payload.len(), max).expect("decoded frame fits max");
                        rebuilt.extend_from_slice(&header);
                        rebuilt.extend_from_slice(&payload);
                        let _ = decode_message::<Msg>(&payload);
                    }
                }
                Err(e) => {
                    assert!(e.is_protocol_violation());
                    return;
                }
            }
        }
    }
    match dec.finish() {
        Ok(()) => assert_eq!(
            rebuilt, input,
            "clean end must mean every byte was a whole frame"
        ),
        Err(e) => assert!(e.is_protocol_violation() && input.starts_with(&rebuilt)),
    }
});
