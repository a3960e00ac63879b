//! Unit and deterministic property tests of the pure decoder. They stand in for the
//! fuzzer where no nightly toolchain is around (see `host/net/fuzz/`).

use super::*;
use serde::Deserialize;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Msg {
    Hello { name: String, slots: u32 },
    Batch(Vec<u8>),
    Bye,
}

/// splitmix64: tiny, seedable, good enough to spray bytes.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn samples() -> Vec<Msg> {
    vec![Msg::Hello { name: "tm-1".into(), slots: 4 }, Msg::Batch(vec![7; 1000]), Msg::Bye, Msg::Batch(Vec::new())]
}

fn encode_all(msgs: &[Msg]) -> Vec<u8> {
    let mut wire = Vec::new();
    for m in msgs {
        wire.extend(encode_frame(m, DEFAULT_MAX_FRAME).expect("encodes"));
    }
    wire
}

/// Feeds `wire` in chunks of random sizes and decodes every frame as a `Msg`.
fn decode_chunked(wire: &[u8], rng: &mut SplitMix, max: u32) -> Result<Vec<Msg>, FrameError> {
    let mut dec = FrameDecoder::new(max);
    let mut out = Vec::new();
    let mut rest = wire;
    while !rest.is_empty() {
        let n = (rng.below(64) as usize + 1).min(rest.len());
        for p in dec.feed_all(&rest[..n])? {
            out.push(decode_message(&p)?);
        }
        rest = &rest[n..];
    }
    dec.finish()?;
    Ok(out)
}

#[test]
fn round_trip_in_any_split() {
    let wire = encode_all(&samples());
    let mut rng = SplitMix(1);
    for _ in 0..500 {
        assert_eq!(decode_chunked(&wire, &mut rng, DEFAULT_MAX_FRAME).expect("decodes"), samples());
    }
}

#[test]
fn oversized_header_is_rejected_before_payload() {
    let mut dec = FrameDecoder::new(1024);
    let err = dec.feed(&u32::MAX.to_le_bytes()).expect_err("oversized");
    assert!(matches!(err, FrameError::Oversized { len, max: 1024 } if len == u64::from(u32::MAX)));
    assert!(err.is_protocol_violation());
    // Exactly the maximum is fine.
    let mut dec = FrameDecoder::new(4);
    let frames = dec.feed_all(&[4, 0, 0, 0, 1, 2, 3, 4]).expect("max-size frame");
    assert_eq!(frames, vec![vec![1, 2, 3, 4]]);
}

#[test]
fn sender_refuses_oversized() {
    let err = encode_frame(&Msg::Batch(vec![0; 100]), 50).expect_err("too big");
    assert!(matches!(err, FrameError::Oversized { max: 50, .. }));
    assert!(frame_header(usize::MAX, u32::MAX).is_err());
}

#[test]
fn every_truncation_of_valid_frames_is_an_error() {
    let wire = encode_all(&samples());
    // Frame boundaries: a cut exactly there is a clean end, anywhere else is Truncated.
    let mut boundaries = vec![0];
    for m in samples() {
        let last = *boundaries.last().expect("non-empty");
        boundaries.push(last + encode_frame(&m, DEFAULT_MAX_FRAME).expect("encodes").len());
    }
    let mut rng = SplitMix(2);
    for cut in 0..wire.len() {
        let res = decode_chunked(&wire[..cut], &mut rng, DEFAULT_MAX_FRAME);
        if boundaries.contains(&cut) {
            assert!(res.is_ok(), "cut at boundary {cut}: {res:?}");
        } else {
            assert!(matches!(res, Err(FrameError::Truncated { .. })), "cut at {cut}: {res:?}");
        }
    }
}

#[test]
fn random_garbage_never_panics() {
    let mut rng = SplitMix(3);
    let mut errors = 0;
    for case in 0..20_000 {
        let len = rng.below(if case % 10 == 0 { 4096 } else { 64 }) as usize;
        let garbage = rng.bytes(len);
        // A small max makes most random headers oversized; a big one exercises truncation.
        let max = if case % 2 == 0 { 256 } else { DEFAULT_MAX_FRAME };
        if decode_chunked(&garbage, &mut rng, max).is_err() {
            errors += 1;
        }
    }
    // Random bytes almost never form whole valid frames of valid messages.
    assert!(errors > 19_000, "only {errors} of 20000 garbage inputs were errors");
}

#[test]
fn garbage_payload_in_valid_framing_is_a_decode_error() {
    let mut rng = SplitMix(4);
    let mut decode_errors = 0;
    for _ in 0..5_000 {
        let len = rng.below(40) as usize + 1;
        let payload = rng.bytes(len);
        match decode_message::<Msg>(&payload) {
            Err(FrameError::Decode(_) | FrameError::TrailingBytes { .. }) => decode_errors += 1,
            Err(other) => panic!("unexpected error kind: {other}"),
            Ok(_) => {}
        }
    }
    assert!(decode_errors > 4_000, "{decode_errors}");
    // A valid message followed by junk is caught too.
    let mut payload = postcard::to_allocvec(&Msg::Bye).expect("encodes");
    payload.push(0xAA);
    assert!(matches!(decode_message::<Msg>(&payload), Err(FrameError::TrailingBytes { extra: 1 })));
}

#[test]
fn mutated_valid_streams_never_panic() {
    let wire = encode_all(&samples());
    let mut rng = SplitMix(5);
    for _ in 0..10_000 {
        let mut w = wire.clone();
        for _ in 0..=rng.below(4) {
            let i = rng.below(w.len() as u64) as usize;
            w[i] = rng.next() as u8;
        }
        let _ = decode_chunked(&w, &mut rng, DEFAULT_MAX_FRAME);
    }
}
