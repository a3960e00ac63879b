//! Windows as pure logic over timestamps, as Flink's window assigners and merging
//! window sets do: which windows a record belongs to, how session windows merge, and
//! when a window fires and when it can be dropped. The keyed-window operator keeps
//! each key's open windows (and their accumulators) in the key's value state and sets
//! timers at the times these functions name.

use core::marker::PhantomData;
use core::ops::Range;

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

/// A window `[start, end)` of event or processing time, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Window {
    /// First instant in the window.
    pub start: i64,
    /// First instant after the window.
    pub end: i64,
}

impl Window {
    /// The last instant in the window: it fires when the watermark reaches this.
    pub fn max_timestamp(&self) -> i64 {
        self.end.saturating_sub(1)
    }

    /// The smallest window holding both.
    fn cover(&self, other: &Window) -> Window {
        Window { start: self.start.min(other.start), end: self.end.max(other.end) }
    }
}

/// How records are grouped into windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Windows {
    /// Fixed, non-overlapping windows of `size` ms, aligned to the epoch plus `offset`.
    Tumbling {
        /// Length.
        size: i64,
        /// Shift from the epoch.
        offset: i64,
    },
    /// Windows of `size` ms starting every `slide` ms: a record is in `size / slide`.
    Sliding {
        /// Length.
        size: i64,
        /// Distance between starts.
        slide: i64,
        /// Shift from the epoch.
        offset: i64,
    },
    /// Per key, a window that lasts until `gap` ms pass without a record; sessions
    /// that come within the gap of each other merge.
    Session {
        /// Inactivity that ends a session.
        gap: i64,
    },
}

/// Flink's `TimeWindow.getWindowStartWithOffset`: the start of the window of length
/// `size` (shifted by `offset`) that holds `ts`, also for negative times.
/// Times come from records, so nothing here may overflow; `size` is positive
/// ([`Windows::check`]).
#[inline(always)]
fn window_start(ts: i64, offset: i64, size: i64) -> i64 {
    ts.saturating_sub(ts.wrapping_sub(offset).rem_euclid(size))
}

impl Windows {
    /// Tumbling windows of `size_ms`.
    pub fn tumbling(size_ms: u64) -> Self {
        Windows::Tumbling { size: clamp(size_ms), offset: 0 }
    }

    /// Sliding windows of `size_ms` every `slide_ms`.
    pub fn sliding(size_ms: u64, slide_ms: u64) -> Self {
        Windows::Sliding { size: clamp(size_ms), slide: clamp(slide_ms), offset: 0 }
    }

    /// Session windows closing after `gap_ms` of inactivity.
    pub fn session(gap_ms: u64) -> Self {
        Windows::Session { gap: clamp(gap_ms) }
    }

    /// True for session windows, whose windows merge.
    pub fn merges(&self) -> bool {
        matches!(self, Windows::Session { .. })
    }

    /// The one window of a record at `ts` for the assigners that give one (tumbling,
    /// session), so the operators' per-record path needs no list; `None` for sliding
    /// windows.
    #[inline(always)]
    pub(crate) fn single(&self, ts: i64) -> Option<Window> {
        match *self {
            Windows::Tumbling { size, offset } => {
                let start = window_start(ts, offset, size);
                Some(Window { start, end: start.saturating_add(size) })
            }
            Windows::Session { gap } => Some(Window { start: ts, end: ts.saturating_add(gap) }),
            Windows::Sliding { .. } => None,
        }
    }

    /// The windows a record at `ts` belongs to, appended to `out` (earliest first).
    pub fn assign(&self, ts: i64, out: &mut Vec<Window>) {
        match *self {
            Windows::Tumbling { .. } | Windows::Session { .. } => out.extend(self.single(ts)),
            Windows::Sliding { size, slide, offset } => {
                let last = window_start(ts, offset, slide);
                let first = out.len();
                let mut start = last;
                while start > ts.saturating_sub(size) {
                    out.push(Window { start, end: start.saturating_add(size) });
                    match start.checked_sub(slide) {
                        Some(s) => start = s,
                        None => break,
                    }
                }
                if let Some(added) = out.get_mut(first..) {
                    added.reverse();
                }
            }
        }
    }

    /// Validity of the parameters, checked when the plan is built.
    pub fn check(&self) -> Result<(), &'static str> {
        match *self {
            Windows::Tumbling { .. } | Windows::Session { .. } if self.length() <= 0 => Err("a window's size or gap must be positive"),
            Windows::Sliding { size, slide, .. } if slide <= 0 || size <= 0 => Err("a sliding window's size and slide must be positive"),
            Windows::Sliding { size, slide, .. } if size / slide > 10_000 => Err("a sliding window may overlap at most 10000 others (size / slide)"),
            _ => Ok(()),
        }
    }

    fn length(&self) -> i64 {
        match *self {
            Windows::Tumbling { size, .. } | Windows::Sliding { size, .. } => size,
            Windows::Session { gap } => gap,
        }
    }
}

fn clamp(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// When a window of event time is done with: it fires at `max_timestamp`, and with
/// `lateness` ms of allowed lateness its state is kept until the watermark passes
/// `max_timestamp + lateness`, so late records can still update it (and fire it again).
pub fn cleanup_time(w: &Window, lateness: i64) -> i64 {
    w.max_timestamp().saturating_add(lateness)
}

/// True if a record for `w` arriving at watermark `watermark` is too late to count:
/// the window's state is gone (or would be) and it can never fire again.
pub fn is_late(w: &Window, lateness: i64, watermark: i64) -> bool {
    cleanup_time(w, lateness) <= watermark
}

/// The value state of one key of a window operator: its open windows ("panes") with
/// their accumulators, sorted by start. Session windows are also disjoint and never
/// touch (sessions that touch merge), like Flink's `MergingWindowSet`.
///
/// Most keys have one open window at a time (tumbling windows over nearly ordered
/// data), so one pane is held inline: decoding a key's state, which happens once per key
/// and batch, then allocates nothing. More panes (sliding windows, or records on both
/// sides of a window boundary) spill into a `Vec`. (Two inline panes were measured:
/// the bigger state costs every key more than the boundaries save.)
///
/// Encoded as a postcard sequence of `(start, length, accumulator)`; the length
/// `end - start` is a small varint where the end, an epoch-ms time, would take 6 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Panes<A> {
    items: Small<(Window, A)>,
}

/// A vector with room for one element inline.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
enum Small<T> {
    #[default]
    Empty,
    One(T),
    Many(Vec<T>),
}

impl<A> Panes<A> {
    /// No panes.
    pub(crate) fn new() -> Self {
        Panes { items: Small::Empty }
    }

    /// The panes, earliest first.
    #[inline(always)]
    pub(crate) fn as_slice(&self) -> &[(Window, A)] {
        match &self.items {
            Small::Empty => &[],
            Small::One(p) => core::slice::from_ref(p),
            Small::Many(v) => v,
        }
    }

    /// The panes, earliest first, to update accumulators in place.
    #[inline(always)]
    pub(crate) fn as_mut_slice(&mut self) -> &mut [(Window, A)] {
        match &mut self.items {
            Small::Empty => &mut [],
            Small::One(p) => core::slice::from_mut(p),
            Small::Many(v) => v,
        }
    }

    /// True if no window is open.
    pub(crate) fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    /// Where the window starting at `start` is (`Ok`), or where it would go (`Err`).
    /// For windows of one fixed size (tumbling, sliding) the start identifies the window.
    /// The newest window is checked first: in-order data hits it nearly always.
    #[inline(always)]
    pub(crate) fn find(&self, start: i64) -> Result<usize, usize> {
        let panes = self.as_slice();
        match panes.last() {
            Some((last, _)) if last.start == start => Ok(panes.len() - 1),
            Some((last, _)) if last.start < start => Err(panes.len()),
            _ => panes.binary_search_by(|(w, _)| w.start.cmp(&start)),
        }
    }

    /// Inserts a pane at `index` (clamped to the end), which must keep the order.
    pub(crate) fn insert(&mut self, index: usize, pane: (Window, A)) {
        self.items = match core::mem::take(&mut self.items) {
            Small::Empty => Small::One(pane),
            Small::One(first) if index == 0 => Small::Many(vec![pane, first]),
            Small::One(first) => Small::Many(vec![first, pane]),
            Small::Many(mut v) => {
                v.insert(index.min(v.len()), pane);
                Small::Many(v)
            }
        };
    }

    /// Exactly one pane.
    #[inline(always)]
    pub(crate) fn one(pane: (Window, A)) -> Self {
        Panes { items: Small::One(pane) }
    }

    /// Appends a pane, which must be the latest.
    pub(crate) fn push(&mut self, pane: (Window, A)) {
        self.insert(usize::MAX, pane);
    }

    /// Removes and returns the pane at `index`, if there is one.
    pub(crate) fn remove(&mut self, index: usize) -> Option<(Window, A)> {
        match &mut self.items {
            Small::One(_) if index == 0 => match core::mem::take(&mut self.items) {
                Small::One(p) => Some(p),
                _ => None,
            },
            Small::Many(v) if index < v.len() => Some(v.remove(index)),
            _ => None,
        }
    }

    /// Keeps the panes whose window satisfies `keep`.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&Window) -> bool) {
        match &mut self.items {
            Small::Empty => {}
            Small::One((w, _)) => {
                if !keep(w) {
                    self.items = Small::Empty;
                }
            }
            Small::Many(v) => v.retain(|(w, _)| keep(w)),
        }
    }

    /// The sessions a new session window `w` meets (a range of indices, empty if none:
    /// `w` would go at its start) and the window they merge into. Sessions are sorted
    /// and never touch, so the ones `w` meets are consecutive, and their cover cannot
    /// meet any other (each neighbour ended before, or starts after, both `w` and them).
    pub(crate) fn session_run(&self, w: Window) -> (Range<usize>, Window) {
        let panes = self.as_slice();
        let first = panes.partition_point(|(p, _)| p.end < w.start);
        let end = panes.partition_point(|(p, _)| p.start <= w.end).max(first);
        let run = panes.get(first..end).unwrap_or(&[]);
        (first..end, run.iter().fold(w, |cover, (p, _)| cover.cover(p)))
    }

    /// Merges the sessions of the non-empty `run` (from [`Panes::session_run`]) into one
    /// pane with window `cover`; their accumulators are folded with `merge` (earlier
    /// first). Windows that no longer exist are appended to `replaced`, so the caller
    /// can move their timers. Returns the index of the merged pane.
    pub(crate) fn merge_run(&mut self, run: Range<usize>, cover: Window, mut merge: impl FnMut(A, A) -> A, replaced: &mut Vec<Window>) -> usize {
        let at = run.start;
        if run.len() == 1 {
            // The common case, a record inside a session or extending it: the
            // accumulator stays where it is.
            if let Some((w, _)) = self.as_mut_slice().get_mut(at)
                && *w != cover
            {
                replaced.push(*w);
                *w = cover;
            }
            return at;
        }
        let mut acc = None;
        for index in run.rev() {
            if let Some((w, a)) = self.remove(index) {
                replaced.push(w);
                acc = Some(match acc {
                    None => a,
                    Some(later) => merge(a, later),
                });
            }
        }
        if let Some(acc) = acc {
            self.insert(at, (cover, acc));
        }
        at
    }
}

impl<A: Serialize> Serialize for Panes<A> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let panes = self.as_slice();
        let mut seq = s.serialize_seq(Some(panes.len()))?;
        for (w, acc) in panes {
            // Wrapping: exactly undone on decoding, whatever the window.
            seq.serialize_element(&(w.start, w.end.wrapping_sub(w.start) as u64, acc))?;
        }
        seq.end()
    }
}

impl<'de, A: Deserialize<'de>> Deserialize<'de> for Panes<A> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PanesVisitor<A>(PhantomData<fn() -> A>);

        impl<'de, A: Deserialize<'de>> Visitor<'de> for PanesVisitor<A> {
            type Value = Panes<A>;

            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("a sequence of windows with accumulators")
            }

            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Panes<A>, S::Error> {
                let pane = |(start, len, acc): (i64, u64, A)| (Window { start, end: start.wrapping_add(len as i64) }, acc);
                let mut panes = Panes::new();
                while let Some(next) = seq.next_element()? {
                    panes.push(pane(next));
                }
                Ok(panes)
            }
        }

        d.deserialize_seq(PanesVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn assign(w: Windows, ts: i64) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        w.assign(ts, &mut out);
        out.iter().map(|w| (w.start, w.end)).collect()
    }

    #[test]
    fn tumbling_windows_hold_their_start_and_not_their_end() {
        let w = Windows::tumbling(60_000);
        assert_eq!(assign(w, 0), [(0, 60_000)]);
        assert_eq!(assign(w, 59_999), [(0, 60_000)]);
        assert_eq!(assign(w, 60_000), [(60_000, 120_000)]);
        assert_eq!(assign(w, -1), [(-60_000, 0)], "negative times round down");
        assert_eq!(Window { start: 0, end: 60_000 }.max_timestamp(), 59_999);
    }

    #[test]
    fn sliding_windows_overlap_size_over_slide_times() {
        let w = Windows::sliding(10_000, 1_000);
        let got = assign(w, 12_345);
        assert_eq!(got.len(), 10);
        assert_eq!(got[0], (3_000, 13_000));
        assert_eq!(got[9], (12_000, 22_000));
        assert!(got.iter().all(|&(s, e)| s <= 12_345 && 12_345 < e));
        assert_eq!(assign(Windows::sliding(1_000, 400), 1_000), [(400, 1_400), (800, 1_800)], "size not a multiple of slide");
    }

    #[test]
    fn bad_parameters_are_named() {
        assert!(Windows::tumbling(0).check().is_err());
        assert!(Windows::sliding(10, 0).check().is_err());
        assert!(Windows::sliding(1_000_000, 1).check().is_err());
        assert!(Windows::session(5).check().is_ok());
    }

    #[test]
    fn lateness_keeps_a_window_until_the_watermark_passes_it() {
        let w = Window { start: 0, end: 1000 };
        assert!(!is_late(&w, 0, 998));
        assert!(is_late(&w, 0, 999), "fired at 999 and dropped with it");
        assert!(!is_late(&w, 500, 1498));
        assert!(is_late(&w, 500, 1499));
    }

    /// What adding a session window did: the session now holding it, its index, and
    /// the sessions it replaced.
    struct Merged {
        window: Window,
        index: usize,
        replaced: Vec<Window>,
    }

    /// Adds the session of a record at `ts` (gap 100) as the window operator does.
    fn session_add(s: &mut Panes<u64>, ts: i64) -> Merged {
        let w = Windows::session(100).single(ts).unwrap();
        let (run, cover) = s.session_run(w);
        let mut replaced = Vec::new();
        let index = if run.is_empty() {
            s.insert(run.start, (cover, 0));
            run.start
        } else {
            s.merge_run(run, cover, |a, b| a + b, &mut replaced)
        };
        Merged { window: cover, index, replaced }
    }

    fn w(start: i64, end: i64) -> Window {
        Window { start, end }
    }

    #[test]
    fn sessions_merge_what_comes_within_the_gap() {
        let mut s = Panes::<u64>::new();
        let m = session_add(&mut s, 0);
        s.as_mut_slice()[m.index].1 += 1;
        let m = session_add(&mut s, 500);
        s.as_mut_slice()[m.index].1 += 1;
        assert_eq!(s.as_slice().len(), 2);
        assert!(m.replaced.is_empty());
        let m = session_add(&mut s, 50);
        assert_eq!(m.window, w(0, 150));
        assert_eq!(m.replaced, [w(0, 100)]);
        s.as_mut_slice()[m.index].1 += 1;
        let m = session_add(&mut s, 420);
        assert_eq!(m.window, w(420, 600), "420 + 100 reaches 500's session, not 0's");
        s.as_mut_slice()[m.index].1 += 1;
        assert_eq!(s.as_slice(), [(w(0, 150), 2), (w(420, 600), 2)]);
        let m = session_add(&mut s, 460);
        assert_eq!(m.window, w(420, 600), "inside a session: nothing changes");
        assert!(m.replaced.is_empty());
        let m = session_add(&mut s, -200);
        assert_eq!((m.window, m.index), (w(-200, -100), 0), "a new earliest session goes first");
        assert_eq!(s.as_slice().len(), 3);
    }

    #[test]
    fn a_bridging_record_merges_both_neighbours_and_their_accumulators() {
        let mut s = Panes::<u64>::new();
        for ts in [0, 150, 1000] {
            let m = session_add(&mut s, ts);
            s.as_mut_slice()[m.index].1 += 1;
        }
        assert_eq!(s.as_slice().len(), 3);
        let m = session_add(&mut s, 100);
        s.as_mut_slice()[m.index].1 += 1;
        assert_eq!(s.as_slice(), [(w(0, 250), 3), (w(1000, 1100), 1)]);
        let mut replaced = m.replaced.clone();
        replaced.sort();
        assert_eq!(replaced, [w(0, 100), w(150, 250)]);
    }

    #[test]
    fn panes_stay_sorted_and_spill_past_one() {
        let mut p = Panes::<u64>::new();
        assert!(p.is_empty());
        assert_eq!(p.find(10), Err(0));
        p.insert(0, (w(10, 20), 1));
        assert!(matches!(p.items, Small::One(_)));
        assert_eq!(p.find(10), Ok(0));
        assert_eq!(p.find(30), Err(1));
        assert_eq!(p.find(0), Err(0));
        p.insert(0, (w(0, 10), 2));
        p.insert(2, (w(30, 40), 3));
        p.insert(2, (w(20, 30), 4));
        assert_eq!(p.as_slice().iter().map(|(w, a)| (w.start, *a)).collect::<Vec<_>>(), [(0, 2), (10, 1), (20, 4), (30, 3)]);
        assert_eq!(p.find(20), Ok(2));
        assert_eq!(p.find(25), Err(3));
        assert_eq!(p.remove(1), Some((w(10, 20), 1)));
        assert_eq!(p.remove(9), None);
        p.retain(|w| w.start >= 20);
        assert_eq!(p.as_slice(), [(w(20, 30), 4), (w(30, 40), 3)]);
        p.retain(|_| false);
        assert!(p.is_empty());
        let mut one = Panes::<u64>::new();
        one.insert(5, (w(1, 2), 7));
        assert_eq!(one.remove(0), Some((w(1, 2), 7)));
        assert!(one.is_empty());
    }

    #[test]
    fn panes_encode_lengths_and_decode_one_inline() {
        let mut p = Panes::<u64>::new();
        let enc = |p: &Panes<u64>| postcard::to_allocvec(p).unwrap();
        let dec = |b: &[u8]| postcard::from_bytes::<Panes<u64>>(b).unwrap();
        assert_eq!(enc(&p), [0]);
        assert_eq!(dec(&[0]), p);
        let minute = w(1_700_000_040_000, 1_700_000_100_000);
        p.insert(0, (minute, 3));
        let bytes = enc(&p);
        // count, start (zigzag varint, 6 bytes), length 60000 (3 bytes), count
        assert_eq!(bytes.len(), 1 + 6 + 3 + 1);
        assert!(matches!(dec(&bytes).items, Small::One(_)));
        let mut two = p.clone();
        two.push((w(1_700_000_100_000, 1_700_000_160_000), 1));
        assert!(matches!(dec(&enc(&two)).items, Small::Many(_)));
        assert_eq!(dec(&bytes), p);
        p.insert(1, (w(i64::MAX - 5, i64::MAX), 4));
        p.insert(0, (w(i64::MIN, i64::MIN + 1), 5));
        assert_eq!(dec(&enc(&p)), p);
        assert!(postcard::from_bytes::<Panes<u64>>(&[5, 0]).is_err(), "a count with too few panes");
    }
}
