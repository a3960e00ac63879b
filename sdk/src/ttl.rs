//! State time-to-live (Flink's `StateTtlConfig`, processing time only): a keyed
//! operator's value, map and list state expire `ms` after they were last written (or
//! read, with [`StateTtl::update_on_read`]), and expired state is never returned.
//!
//! Flink configures a TTL per state descriptor; here it is per operator
//! ([`KeyedStream::state_ttl`](crate::KeyedStream::state_ttl)) and covers all of its
//! states: simpler, and what joins and dedup-like operators need.
//!
//! Layout: a TTL'd value (a key's value state, a map entry's value, a list element and
//! the list's length) is its expiry instant (processing-time ms, `i64` little-endian)
//! followed by the bytes it would have without a TTL. The expiry is absolute, so it
//! survives checkpoints, restores and rescaling unchanged; the host reads only those
//! first eight bytes to drop expired state in the background (the plan tells it which
//! operators have a TTL), which is what keeps state that is never read again bounded.

/// How long a keyed operator's state lives (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateTtl {
    pub(crate) ms: u64,
    pub(crate) update_on_read: bool,
}

impl StateTtl {
    /// State expires `ms` of processing time after it was last written (Flink's
    /// `OnCreateAndWrite`).
    pub fn new(ms: u64) -> Self {
        StateTtl { ms, update_on_read: false }
    }

    /// Reads refresh the expiry too (Flink's `OnReadAndWrite`): a key's value state is
    /// refreshed by every batch that has the key, a map entry or list by every read.
    pub fn update_on_read(self) -> Self {
        StateTtl { update_on_read: true, ..self }
    }

    /// The TTL in ms.
    pub fn ms(&self) -> u64 {
        self.ms
    }
}

/// A TTL and the processing time of the current call, read once per call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TtlNow {
    pub(crate) ttl: StateTtl,
    pub(crate) now: i64,
}

/// Bytes of the expiry prefix.
pub(crate) const EXPIRY_LEN: usize = 8;

impl TtlNow {
    /// The expiry of a value written (or refreshed) now.
    #[inline]
    pub(crate) fn expiry(&self) -> i64 {
        self.now.saturating_add(i64::try_from(self.ttl.ms).unwrap_or(i64::MAX))
    }

    /// `bytes` with the expiry of a write now in front.
    pub(crate) fn wrap(&self, bytes: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(EXPIRY_LEN + bytes.len());
        v.extend_from_slice(&self.expiry().to_le_bytes());
        v.extend_from_slice(bytes);
        v
    }

    /// The value inside a TTL'd `bytes`, `None` if it expired. Bytes too short to hold
    /// an expiry (state written before the TTL was set) count as expired: they cannot
    /// be told apart from garbage.
    #[inline]
    pub(crate) fn unwrap<'b>(&self, bytes: &'b [u8]) -> Option<&'b [u8]> {
        let (expiry, rest) = bytes.split_first_chunk::<EXPIRY_LEN>()?;
        (i64::from_le_bytes(*expiry) > self.now).then_some(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_lives_until_its_expiry_and_no_longer() {
        let write = TtlNow { ttl: StateTtl::new(100), now: 1_000 };
        let bytes = write.wrap(b"v");
        assert_eq!(&bytes[..8], &1_100i64.to_le_bytes());
        assert_eq!(TtlNow { now: 1_099, ..write }.unwrap(&bytes), Some(&b"v"[..]));
        assert_eq!(TtlNow { now: 1_100, ..write }.unwrap(&bytes), None);
        assert_eq!(write.unwrap(b"short"), None);
        let forever = TtlNow { ttl: StateTtl::new(u64::MAX), now: 5 };
        assert_eq!(forever.expiry(), i64::MAX);
    }
}
