//! Pipeline stage 1 (Rust): parse CSV order lines `order_id,customer,country,amount`.
//!
//! Input: the host's file-lines source (empty key, value = the line as a postcard
//! string). Blank lines, `#` comments and malformed lines (not 4 fields, or an amount
//! that is not an integer) are skipped. Output: empty key, value = UTF-8
//! `customer,country,amount` (customer trimmed, country trimmed and uppercased, amount
//! as a canonical decimal integer).

use weir_sdk_operator::{Emitter, Error, OpenContext, Operator, RawRecord, log, postcard_str};

struct Parse {
    skipped: u64,
}

impl Operator for Parse {
    fn open(_ctx: &OpenContext) -> Result<Self, Error> {
        Ok(Parse { skipped: 0 })
    }

    fn process(&mut self, r: RawRecord<'_>, out: &mut Emitter) -> Result<(), Error> {
        let line = postcard_str(r.value)?.trim();
        if line.is_empty() || line.starts_with('#') {
            return Ok(());
        }
        let fields: Vec<&str> = line.split(',').collect();
        let amount = match fields.as_slice() {
            [_, _, _, amount] => amount.trim().parse::<i64>().ok(),
            _ => None,
        };
        let Some(amount) = amount else {
            self.skipped += 1;
            return Ok(());
        };
        let (customer, country) = (fields[1].trim(), fields[2].trim().to_uppercase());
        out.emit_with(r.ts, b"", |b| {
            use std::io::Write;
            let _ = write!(b, "{customer},{country},{amount}");
        });
        Ok(())
    }

    fn close(&mut self) -> Result<(), Error> {
        if self.skipped > 0 {
            log::info(&format!("parse: skipped {} malformed lines", self.skipped));
        }
        Ok(())
    }
}

weir_sdk_operator::export_operator!(Parse);
