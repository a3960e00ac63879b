//! {{name}}: a Weir operator (component of world `operator-component`).
//! Every record comes out with its value in ASCII uppercase; key and ts unchanged.

use weir_sdk_operator::{Emitter, Error, OpenContext, Operator, RawRecord};

struct Upper;

impl Operator for Upper {
    fn open(_ctx: &OpenContext) -> Result<Self, Error> {
        Ok(Upper)
    }

    fn process(&mut self, r: RawRecord<'_>, out: &mut Emitter) -> Result<(), Error> {
        out.emit_with(r.ts, r.key, |b| b.extend(r.value.iter().map(u8::to_ascii_uppercase)));
        Ok(())
    }
}

weir_sdk_operator::export_operator!(Upper);
