//! What both file formats share: a 4-byte magic and a u16 LE format version up front,
//! and an xxh3-64 checksum (u64 LE) of everything before it as the last 8 bytes.
//!
//! The checksum catches torn writes and bit rot, not malice: the decoders still check
//! every length and tag as if the checksum had matched by accident.

/// A file that is not a valid checkpoint file (or a value that cannot be written as one).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    /// Shorter than the fixed header and trailer.
    #[error("{len} bytes is too short for a {what} (at least {min})")]
    TooShort {
        /// The file kind.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The minimum length.
        min: usize,
    },
    /// Not this kind of file at all.
    #[error("not a {what} (magic bytes {found:02x?})")]
    BadMagic {
        /// The expected file kind.
        what: &'static str,
        /// The first four bytes found.
        found: [u8; 4],
    },
    /// Written by another version of Weir.
    #[error("{what} format version {found} is not supported (this build reads version {supported})")]
    UnsupportedVersion {
        /// The file kind.
        what: &'static str,
        /// The version in the file.
        found: u16,
        /// The newest version this build reads.
        supported: u16,
    },
    /// The content does not match its checksum: a torn write or corruption.
    #[error("checksum mismatch (stored {stored:016x}, computed {computed:016x}): the file is corrupted")]
    ChecksumMismatch {
        /// The checksum in the trailer.
        stored: u64,
        /// The checksum of the content.
        computed: u64,
    },
    /// A length field reaches past the end of the data.
    #[error("{what} at byte {offset} needs {need} bytes but only {left} remain")]
    Truncated {
        /// The field or item being read.
        what: &'static str,
        /// Its offset in the file.
        offset: usize,
        /// The bytes it needs.
        need: u64,
        /// The bytes left before the trailer.
        left: usize,
    },
    /// An unknown enumeration value.
    #[error("unknown {what} {value} at byte {offset}")]
    UnknownTag {
        /// The field.
        what: &'static str,
        /// The value found.
        value: u8,
        /// Its offset in the file.
        offset: usize,
    },
    /// The trailer's entry count differs from the entries present.
    #[error("the trailer counts {stored} entries but the file holds {found}")]
    CountMismatch {
        /// The count in the trailer.
        stored: u64,
        /// The entries decoded.
        found: u64,
    },
    /// The metadata payload does not deserialize.
    #[error("metadata payload: {0}")]
    Payload(String),
    /// Well-formed bytes with an impossible meaning (or a value too large to encode).
    #[error("{0}")]
    Invalid(String),
}

/// Length of the magic + version prefix.
pub(crate) const PREFIX_LEN: usize = 6;
/// Length of the checksum that ends every file.
pub(crate) const CHECKSUM_LEN: usize = 8;

pub(crate) fn checksum(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

pub(crate) fn write_prefix(out: &mut Vec<u8>, magic: &[u8; 4], version: u16) {
    out.extend_from_slice(magic);
    out.extend_from_slice(&version.to_le_bytes());
}

/// Appends the checksum of everything in `out` so far.
pub(crate) fn seal(out: &mut Vec<u8>) {
    let sum = checksum(out);
    out.extend_from_slice(&sum.to_le_bytes());
}

/// Checks the prefix and the checksum, and returns the bytes between them. `min` is the
/// smallest valid file length.
///
/// Magic and version come before the checksum so that a file of another kind or version
/// is named as such rather than reported as corrupted.
pub(crate) fn open<'a>(bytes: &'a [u8], what: &'static str, magic: &[u8; 4], version: u16, min: usize) -> Result<&'a [u8], FormatError> {
    open_any(bytes, what, magic, version..=version, min).map(|(_, inner)| inner)
}

/// [`open`] for a format whose decoder still reads older versions (`versions`): also
/// returns the version found.
pub(crate) fn open_any<'a>(
    bytes: &'a [u8],
    what: &'static str,
    magic: &[u8; 4],
    versions: std::ops::RangeInclusive<u16>,
    min: usize,
) -> Result<(u16, &'a [u8]), FormatError> {
    let too_short = || FormatError::TooShort { what, len: bytes.len(), min: min.max(PREFIX_LEN + CHECKSUM_LEN) };
    if bytes.len() < min {
        return Err(too_short());
    }
    let Some((content, trailer)) = bytes.split_last_chunk::<CHECKSUM_LEN>() else { return Err(too_short()) };
    let Some(([m0, m1, m2, m3, v0, v1], inner)) = content.split_first_chunk::<PREFIX_LEN>() else { return Err(too_short()) };
    if [*m0, *m1, *m2, *m3] != *magic {
        return Err(FormatError::BadMagic { what, found: [*m0, *m1, *m2, *m3] });
    }
    let found = u16::from_le_bytes([*v0, *v1]);
    if !versions.contains(&found) {
        return Err(FormatError::UnsupportedVersion { what, found, supported: *versions.end() });
    }
    let stored = u64::from_le_bytes(*trailer);
    let computed = checksum(content);
    if stored != computed {
        return Err(FormatError::ChecksumMismatch { stored, computed });
    }
    Ok((found, inner))
}

/// The process's peak virtual memory in KiB, where the platform reports it. A buffer
/// sized from a hostile length would raise it by gigabytes even if never touched, so
/// tests compare it around hostile decodes (other tests running concurrently add
/// megabytes at most).
#[cfg(test)]
pub(crate) fn vm_peak_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmPeak:"))?.trim().strip_suffix("kB")?.trim().parse().ok()
}

/// Runs `decode` and fails if the peak virtual memory grew by 1 GiB or more meanwhile.
#[cfg(test)]
pub(crate) fn assert_no_huge_allocation(decode: impl FnOnce()) {
    let before = vm_peak_kib();
    decode();
    if let (Some(before), Some(after)) = (before, vm_peak_kib()) {
        assert!(after.saturating_sub(before) < 1 << 20, "peak virtual memory grew from {before} KiB to {after} KiB");
    }
}
