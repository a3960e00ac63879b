//! Keys are hashed into a fixed number of key groups (the job's max parallelism), and
//! each subtask of a keyed operator owns a contiguous range of them, as in Flink. State,
//! routing and (later) rescaling all work per key group, so the hash must be stable
//! across processes, machines and versions: xxh3 with a fixed seed.

/// Default number of key groups, as Flink's default max parallelism.
pub const DEFAULT_MAX_PARALLELISM: u32 = 128;

/// The "key group" that stored broadcast state starts with: past every real group (max
/// parallelism is at most 32768), so no subtask's key-group range ever holds it and
/// rescaling never splits it. Every subtask keeps its own copy (tagged by the first key
/// group it owns, since a job's subtasks on one TaskManager share a database); only the
/// copy of the subtask owning group 0 is checkpointed, and a restore hands that copy to
/// every new subtask, whatever the parallelism.
pub const BROADCAST_GROUP: u16 = u16::MAX;

/// The 64-bit stable hash of a key.
#[inline]
pub fn key_hash(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}

/// The key group of a key hash.
#[inline]
pub fn key_group_of_hash(hash: u64, max_parallelism: u32) -> u32 {
    // max_parallelism is validated non-zero when the plan is checked.
    (hash % u64::from(max_parallelism.max(1))) as u32
}

/// The key group of a key.
#[inline]
pub fn key_group(key: &[u8], max_parallelism: u32) -> u32 {
    key_group_of_hash(key_hash(key), max_parallelism)
}

/// The subtask (of `parallelism`) that owns `key_group`, with Flink's formula so that
/// each subtask owns one contiguous range.
#[inline]
pub fn subtask_for_key_group(key_group: u32, max_parallelism: u32, parallelism: u32) -> u32 {
    let max = u64::from(max_parallelism.max(1));
    (u64::from(key_group) * u64::from(parallelism) / max) as u32
}

/// The half-open range of key groups owned by `subtask` of `parallelism`.
pub fn key_group_range(subtask: u32, max_parallelism: u32, parallelism: u32) -> std::ops::Range<u32> {
    let (max, p) = (u64::from(max_parallelism), u64::from(parallelism.max(1)));
    let s = u64::from(subtask);
    // The inverse of subtask_for_key_group: the first group g with g*p/max >= s.
    let start = (s * max).div_ceil(p) as u32;
    let end = ((s + 1) * max).div_ceil(p) as u32;
    start..end.min(max_parallelism)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_partition_all_groups_and_match_routing() {
        for max in [1u32, 7, 128, 1000] {
            for p in 1..=max.min(13) {
                let mut next = 0;
                for s in 0..p {
                    let r = key_group_range(s, max, p);
                    assert_eq!(r.start, next, "max {max} p {p} s {s}");
                    for g in r.clone() {
                        assert_eq!(subtask_for_key_group(g, max, p), s);
                    }
                    next = r.end;
                }
                assert_eq!(next, max);
            }
        }
    }

    #[test]
    fn hash_is_stable() {
        // Pinned: state and checkpoints depend on this never changing.
        assert_eq!(key_group(b"weir", 128), key_group(b"weir", 128));
        assert_eq!(key_hash(b""), 0x2d06800538d394c2);
    }
}
