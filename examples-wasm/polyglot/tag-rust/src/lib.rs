//! Map benchmark operator: every record comes out with the same ts and key and the
//! value `b"v:" + value`.

use weir_sdk_operator::{Emitter, Error, OpenContext, Operator, RawRecord};

struct Tag;

impl Operator for Tag {
    fn open(_ctx: &OpenContext) -> Result<Self, Error> {
        Ok(Tag)
    }

    fn process(&mut self, r: RawRecord<'_>, out: &mut Emitter) -> Result<(), Error> {
        out.emit_parts(r.ts, r.key, &[b"v:", r.value]);
        Ok(())
    }
}

weir_sdk_operator::export_operator!(Tag);
