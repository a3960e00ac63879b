//! The layout's readers and writers against each other and against hostile input; the
//! vectors in sdk/vectors pin the bytes down for every language (host/types/tests).

#![allow(clippy::unwrap_used)]

use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use super::*;

#[test]
fn records_round_trip() {
    let mut b = Vec::new();
    push_record(&mut b, 7, b"k", b"value");
    push_record(&mut b, -1, b"", b"");
    let got: Vec<_> = records(&b).collect::<Result<_, _>>().expect("valid");
    assert_eq!(got, vec![Record { ts: 7, key: b"k", value: b"value" }, Record { ts: -1, key: b"", value: b"" }]);
    assert_eq!(validate(&b), Ok(2));
    assert_eq!(b.len(), 2 * RECORD_HEADER_BYTES + 6);
}

#[test]
fn record_writers_agree() {
    let mut plain = Vec::new();
    push_record(&mut plain, 3, b"key", b"v:x");
    let mut parts = Vec::new();
    push_record_parts(&mut parts, 3, b"key", &[b"v:", b"", b"x"]);
    let mut with = Vec::new();
    push_record_with(&mut with, 3, b"key", |w: &mut Vec<u8>| w.extend_from_slice(b"v:x"));
    assert_eq!(parts, plain);
    assert_eq!(with, plain);
}

#[test]
fn truncated_and_lying_lengths_are_errors_not_panics() {
    let mut b = Vec::new();
    push_record(&mut b, 1, b"key", b"value");
    for cut in 1..b.len() {
        assert!(validate(&b[..cut]).is_err(), "cut at {cut}");
    }
    let mut lying = b.clone();
    lying[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(validate(&lying), Err(BatchError::Truncated { what: "record key", offset: 12, need: u64::from(u32::MAX), have: 12 }));
}

#[test]
fn errors_name_the_field_the_batch_ends_in() {
    let mut b = Vec::new();
    push_record(&mut b, 1, b"key", b"value");
    let err = |cut: usize| validate(&b[..cut]).unwrap_err();
    assert_eq!(err(5), BatchError::Truncated { what: "record timestamp", offset: 0, need: 8, have: 5 });
    assert_eq!(err(10), BatchError::Truncated { what: "record key", offset: 8, need: 4, have: 2 });
    assert_eq!(err(14), BatchError::Truncated { what: "record key", offset: 12, need: 3, have: 2 });
    assert_eq!(err(17), BatchError::Truncated { what: "record value", offset: 15, need: 4, have: 2 });
    assert_eq!(err(20), BatchError::Truncated { what: "record value", offset: 19, need: 5, have: 1 });
    assert_eq!(err(5).to_string(), "record timestamp at byte 0 needs 8 bytes but only 5 remain");
    // The iterator stops after the first bad record.
    let mut two = b.clone();
    two.extend_from_slice(&[0; 3]);
    let mut it = records(&two);
    assert!(it.next().unwrap().is_ok());
    assert!(it.next().unwrap().is_err());
    assert!(it.next().is_none());
}

#[test]
fn output_checks_states_and_trailing_bytes() {
    let mut recs = Vec::new();
    push_record(&mut recs, 0, b"a", b"1");
    let mut out = Vec::new();
    let at = begin_output(&mut out);
    out.extend_from_slice(&recs);
    end_records(&mut out, at);
    push_state_update(&mut out, StateUpdate::Unchanged);
    push_state_update(&mut out, StateUpdate::Set(b"hi"));
    push_state_update(&mut out, StateUpdate::Cleared);
    assert_eq!(out[4 + recs.len()..], [STATE_UNCHANGED, STATE_SET, 2, 0, 0, 0, b'h', b'i', STATE_CLEARED]);
    let o = parse_output(&out, Some(3)).expect("valid");
    assert_eq!((o.records, o.record_count), (&recs[..], 1));
    assert_eq!(o.states, vec![StateUpdate::Unchanged, StateUpdate::Set(b"hi"), StateUpdate::Cleared]);
    assert!(matches!(parse_output(&out, Some(4)), Err(BatchError::Truncated { .. })));
    // Bytes after the state updates are timer changes, and one byte is not a count.
    assert!(matches!(parse_output(&out, Some(2)), Err(BatchError::Truncated { what: "timer change count", .. })));
    // After an unkeyed output's records come side outputs, and these bytes are none.
    assert!(matches!(parse_output(&out, None), Err(BatchError::Truncated { what: "side output records", .. })));
    let mut bad = out.clone();
    bad[4 + recs.len()] = 9;
    assert_eq!(parse_output(&bad, Some(3)).err(), Some(BatchError::BadStateTag { index: 0, tag: 9 }));
}

#[test]
fn keyed_input_round_trip_and_bad_index() {
    let mut b = Vec::new();
    push_key_count(&mut b, 2);
    push_key_with_state(&mut b, b"x", None);
    push_key_with_state(&mut b, b"y", Some(b"s"));
    push_keyed_records_header(&mut b, 2);
    push_keyed_record(&mut b, 1, 5, b"v1");
    push_keyed_record(&mut b, 0, 6, b"v2");
    let k = parse_keyed_input(&b).expect("valid");
    assert_eq!(k.keys, vec![(&b"x"[..], None), (&b"y"[..], Some(&b"s"[..]))]);
    assert_eq!(k.records, vec![KeyedRecord { key_index: 1, ts: 5, value: b"v1" }, KeyedRecord { key_index: 0, ts: 6, value: b"v2" }]);
    for cut in 0..b.len() {
        assert!(parse_keyed_input(&b[..cut]).is_err(), "cut at {cut}");
    }
    let mut bad = b.clone();
    let at = b.len() - KEYED_RECORD_HEADER_BYTES - 2;
    bad[at..at + 4].copy_from_slice(&7u32.to_le_bytes());
    assert_eq!(parse_keyed_input(&bad), Err(BatchError::BadKeyIndex { record: 1, index: 7, keys: 2 }));
    let mut trailing = b.clone();
    trailing.push(0);
    assert_eq!(parse_keyed_input(&trailing), Err(BatchError::Trailing { what: "keyed input", extra: 1 }));
}

#[test]
fn keyed_reads_in_place() {
    let mut b = Vec::new();
    push_key_count(&mut b, 1);
    push_key_with_state(&mut b, b"k", Some(b""));
    push_keyed_records_header(&mut b, 1);
    push_keyed_record(&mut b, 0, i64::MIN, b"v");
    let mut r = Reader::new(&b);
    assert_eq!(r.u32("key count"), Ok(1));
    // An empty state is a state, not NO_STATE.
    assert_eq!(r.key_entry(), Ok((&b"k"[..], Some(&b""[..]))));
    assert_eq!(r.u32("record count"), Ok(1));
    let rest = r.rest();
    assert_eq!(r.keyed_record(), Ok(KeyedRecord { key_index: 0, ts: i64::MIN, value: b"v" }));
    assert_eq!(rest.len(), KEYED_RECORD_HEADER_BYTES + 1);
    assert_eq!(r.finish("keyed input"), Ok(()));
    assert_eq!(r.position(), b.len());
    let mut short = Reader::new(&b[b.len() - 14..b.len() - 4]);
    assert_eq!(short.keyed_record(), Err(BatchError::Truncated { what: "record timestamp", offset: 4, need: 8, have: 6 }));
}

#[test]
fn huge_lengths_do_not_overflow() {
    let mut b = 0i64.to_le_bytes().to_vec();
    push_u32(&mut b, u32::MAX);
    assert!(matches!(Reader::new(&b).record(), Err(BatchError::Truncated { .. })));
    let mut w = Vec::new();
    push_u32(&mut w, u32::MAX - 1);
    assert!(matches!(Reader::new(&w).len_prefixed("x"), Err(BatchError::Truncated { need: 0xffff_fffe, have: 0, .. })));
}

#[test]
fn timer_changes_follow_the_state_updates() {
    let mut out = Vec::new();
    let at = begin_output(&mut out);
    end_records(&mut out, at);
    push_state_update(&mut out, StateUpdate::Unchanged);
    push_state_update(&mut out, StateUpdate::Unchanged);
    let changes = [
        TimerChange { set: true, domain: TimeDomain::Event, key_index: 1, ts: -5 },
        TimerChange { set: false, domain: TimeDomain::Event, key_index: 0, ts: 7 },
        TimerChange { set: true, domain: TimeDomain::Processing, key_index: 0, ts: i64::MAX },
        TimerChange { set: false, domain: TimeDomain::Processing, key_index: 1, ts: 0 },
    ];
    push_timers_header(&mut out, changes.len() as u32);
    for c in changes {
        push_timer_change(&mut out, c);
    }
    assert_eq!(changes.map(|c| c.kind()), [0, 1, 2, 3]);
    let o = parse_output(&out, Some(2)).expect("valid");
    assert_eq!(o.timers, changes);
    assert_eq!(out.len(), 4 + 2 + 4 + changes.len() * TIMER_CHANGE_BYTES);
    // A key index past the key table, and an unknown kind, are refused.
    assert!(matches!(parse_output(&out, Some(1)), Err(BatchError::Truncated { .. }) | Err(BatchError::BadKeyIndex { .. })));
    let mut bad = out.clone();
    bad[4 + 2 + 4 + 1] = 2;
    assert_eq!(parse_output(&bad, Some(2)).err(), Some(BatchError::BadKeyIndex { record: 0, index: 2, keys: 2 }));
    let mut bad = out.clone();
    bad[4 + 2 + 4] = 4;
    assert_eq!(parse_output(&bad, Some(2)).err(), Some(BatchError::BadTimer { index: 0, kind: 4 }));
    // An unkeyed operator has no timers: the bytes are no side section either.
    assert!(parse_output(&out, None).is_err());
}

#[test]
fn timer_input_round_trip_and_bad_index() {
    let mut b = Vec::new();
    push_key_count(&mut b, 2);
    push_key_with_state(&mut b, b"x", None);
    push_key_with_state(&mut b, b"y", Some(b"s"));
    let fired =
        [FiredTimer { key_index: 1, ts: 59_999, domain: TimeDomain::Event }, FiredTimer { key_index: 0, ts: 3, domain: TimeDomain::Processing }];
    push_timers_header(&mut b, 2);
    for t in fired {
        push_fired_timer(&mut b, t);
    }
    let parsed = parse_timer_input(&b).expect("valid");
    assert_eq!(parsed.keys, vec![(&b"x"[..], None), (&b"y"[..], Some(&b"s"[..]))]);
    assert_eq!(parsed.timers, fired);
    let mut bad = b.clone();
    let first_timer = b.len() - 2 * FIRED_TIMER_BYTES;
    bad[first_timer] = 5;
    assert_eq!(parse_timer_input(&bad).err(), Some(BatchError::BadKeyIndex { record: 0, index: 5, keys: 2 }));
    let mut bad = b.clone();
    *bad.last_mut().unwrap() = 9;
    assert_eq!(parse_timer_input(&bad).err(), Some(BatchError::BadTimer { index: 1, kind: 9 }));
    assert!(parse_timer_input(&b[..b.len() - 1]).is_err());
}

/// Two records for side output 1 and one for side output 0, as a writer appends them.
fn side_section(out: &mut Vec<u8>) -> Vec<u8> {
    let mut late = Vec::new();
    push_record(&mut late, 5, b"k", b"too late");
    push_record(&mut late, -3, b"", b"");
    let mut other = Vec::new();
    push_record(&mut other, 9, b"j", b"x");
    push_side_header(out, 2);
    push_side_batch(out, 1, &late);
    push_side_batch(out, 0, &other);
    late
}

#[test]
fn side_outputs_follow_an_unkeyed_outputs_records() {
    let mut out = Vec::new();
    let at = begin_output(&mut out);
    push_record(&mut out, 1, b"a", b"main");
    end_records(&mut out, at);
    let plain = out.clone();
    let late = side_section(&mut out);
    let o = parse_output(&out, None).expect("valid");
    assert_eq!(o.record_count, 1);
    assert_eq!(o.side.len(), 2);
    assert_eq!((o.side[0].output, o.side[0].records, o.side[0].record_count), (1, &late[..], 2));
    assert_eq!((o.side[1].output, o.side[1].record_count), (0, 1));
    // Without a side section nothing changes: the same bytes as before side outputs.
    let o = parse_output(&plain, None).expect("valid");
    assert!(o.side.is_empty() && o.side.capacity() == 0);
    for cut in plain.len() + 1..out.len() {
        assert!(parse_output(&out[..cut], None).is_err(), "cut at {cut}");
    }
    let mut trailing = out.clone();
    trailing.push(0);
    assert_eq!(parse_output(&trailing, None).err(), Some(BatchError::Trailing { what: "operator output", extra: 1 }));
    // A side batch must hold whole records.
    let mut bad = out.clone();
    let first_value_len = plain.len() + 4 + 4 + 4 + 8 + 4 + 1;
    bad[first_value_len] = 200;
    assert!(matches!(parse_output(&bad, None), Err(BatchError::Truncated { what: "record value", .. })));
}

#[test]
fn side_outputs_of_a_keyed_output_come_after_its_timer_changes() {
    let mut out = Vec::new();
    let at = begin_output(&mut out);
    end_records(&mut out, at);
    push_state_update(&mut out, StateUpdate::Cleared);
    // No timer changes: their count is 0, so the side section has a place.
    push_timers_header(&mut out, 0);
    let late = side_section(&mut out);
    let o = parse_output(&out, Some(1)).expect("valid");
    assert_eq!(o.states, vec![StateUpdate::Cleared]);
    assert!(o.timers.is_empty());
    assert_eq!(o.side.iter().map(|s| (s.output, s.record_count)).collect::<Vec<_>>(), vec![(1, 2), (0, 1)]);
    assert_eq!(o.side[0].records, &late[..]);
    let mut with_timer = Vec::new();
    let at = begin_output(&mut with_timer);
    end_records(&mut with_timer, at);
    push_state_update(&mut with_timer, StateUpdate::Unchanged);
    push_timers_header(&mut with_timer, 1);
    push_timer_change(&mut with_timer, TimerChange { set: true, domain: TimeDomain::Event, key_index: 0, ts: 99 });
    side_section(&mut with_timer);
    let o = parse_output(&with_timer, Some(1)).expect("valid");
    assert_eq!((o.timers.len(), o.side.len()), (1, 2));
    // Only the cuts before an optional section leave a valid output.
    let valid_cuts = [4 + 1, 4 + 1 + 4 + TIMER_CHANGE_BYTES];
    for cut in 0..with_timer.len() {
        assert_eq!(parse_output(&with_timer[..cut], Some(1)).is_ok(), valid_cuts.contains(&cut), "cut at {cut}");
    }
}

#[test]
fn a_connect_batch_ends_with_its_input() {
    let mut b = Vec::new();
    push_key_count(&mut b, 1);
    push_key_with_state(&mut b, b"k", None);
    push_keyed_records_header(&mut b, 1);
    push_keyed_record(&mut b, 0, 5, b"v");
    let keyed = b.clone();
    push_u32(&mut b, 1);
    assert_eq!(split_input(&b), Ok((&keyed[..], 1)));
    assert!(parse_keyed_input(split_input(&b).unwrap().0).is_ok());
    let mut third = keyed.clone();
    push_u32(&mut third, 2);
    assert_eq!(split_input(&third), Err(BatchError::BadInput { input: 2 }));
    assert!(split_input(&[0, 0, 0]).is_err(), "too short for a tag");
}
