//! [`TextField`]: how keys and values become text for text sinks.

use std::io::Write as _;

/// A key or value type that text sinks can print. The host writes one
/// `key<TAB>value` line per record; this trait produces the raw UTF-8 of one side.
///
/// `()` prints as nothing, so an unkeyed stream prints as `<TAB>value`.
pub trait TextField {
    /// Appends the text of `self` to `out`.
    fn write_text(&self, out: &mut Vec<u8>);
}

impl TextField for String {
    fn write_text(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl TextField for &str {
    fn write_text(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl TextField for char {
    fn write_text(&self, out: &mut Vec<u8>) {
        let mut buf = [0u8; 4];
        out.extend_from_slice(self.encode_utf8(&mut buf).as_bytes());
    }
}

impl TextField for bool {
    fn write_text(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(if *self { b"true" } else { b"false" });
    }
}

impl TextField for () {
    fn write_text(&self, _out: &mut Vec<u8>) {}
}

impl<T: TextField> TextField for Option<T> {
    /// `None` prints as nothing.
    fn write_text(&self, out: &mut Vec<u8>) {
        if let Some(v) = self {
            v.write_text(out);
        }
    }
}

/// Numbers print with `Display`; writing into a `Vec` cannot fail.
macro_rules! display_text {
    ($($t:ty),*) => {$(
        impl TextField for $t {
            fn write_text(&self, out: &mut Vec<u8>) {
                let _ = write!(out, "{self}");
            }
        }
    )*};
}

display_text!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64);

#[cfg(test)]
mod tests {
    use super::*;

    fn text<T: TextField>(v: T) -> String {
        let mut out = Vec::new();
        v.write_text(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn prints_plain_text() {
        assert_eq!(text("héllo".to_string()), "héllo");
        assert_eq!(text(-12i32), "-12");
        assert_eq!(text(u64::MAX), "18446744073709551615");
        assert_eq!(text(1.5f64), "1.5");
        assert_eq!(text(true), "true");
        assert_eq!(text('ß'), "ß");
        assert_eq!(text(()), "");
        assert_eq!(text(Some(3u8)), "3");
        assert_eq!(text(None::<u8>), "");
    }
}
