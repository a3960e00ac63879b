//! The exported entry points: one operator instance (id 0) per component instance.

use core::any::Any;
use core::cell::RefCell;

use weir_batch::{BatchError, KEY_ENTRY_HEADER_BYTES, Reader};

use crate::codec::{Emitter, KeyState};
use crate::wit::exports::weir::dataflow::operator as wit_op;
use crate::{Error, KeyedOperator, OpenContext, Operator, RawRecord};

/// Implemented by the type `export_operator!` declares; the SDK implements the exported
/// WIT interface for every such type.
#[doc(hidden)]
pub trait Export {
    fn open(ctx: OpenContext) -> Result<(), Error>;
    fn process(batch: &[u8]) -> Result<Vec<u8>, Error>;
    fn close() -> Result<(), Error>;
}

struct Slot {
    op: Box<dyn Any>,
    /// Size of the last output, so the next output buffer is allocated once.
    out_hint: usize,
}

thread_local! {
    static SLOT: RefCell<Option<Slot>> = const { RefCell::new(None) };
}

fn with_op<T: 'static, R>(f: impl FnOnce(&mut T, &mut usize) -> Result<R, Error>) -> Result<R, Error> {
    SLOT.with(|s| {
        let mut s = s.borrow_mut();
        let slot = s.as_mut().ok_or_else(|| Error::failed("operator 0 is not open"))?;
        let op = slot.op.downcast_mut::<T>().ok_or_else(|| Error::failed("operator type mismatch"))?;
        f(op, &mut slot.out_hint)
    })
}

fn install(op: Box<dyn Any>) {
    weir_batch::guest::install_panic_hook(crate::log::error);
    SLOT.with(|s| *s.borrow_mut() = Some(Slot { op, out_hint: 256 }));
}

#[doc(hidden)]
pub fn plain_open<T: Operator>(ctx: OpenContext) -> Result<(), Error> {
    install(Box::new(T::open(&ctx)?));
    Ok(())
}

#[doc(hidden)]
pub fn keyed_open<T: KeyedOperator>(ctx: OpenContext) -> Result<(), Error> {
    install(Box::new(T::open(&ctx)?));
    Ok(())
}

#[doc(hidden)]
pub fn plain_close<T: Operator>() -> Result<(), Error> {
    with_op::<T, _>(|op, _| op.close())
}

#[doc(hidden)]
pub fn keyed_close<T: KeyedOperator>() -> Result<(), Error> {
    with_op::<T, _>(|op, _| op.close())
}

/// Non-keyed input: records back to back.
#[doc(hidden)]
pub fn plain_process<T: Operator>(batch: &[u8]) -> Result<Vec<u8>, Error> {
    with_op::<T, _>(|op, hint| {
        let mut out = Emitter::with_capacity(*hint);
        let mut r = Reader::new(batch);
        while !r.is_empty() {
            op.process(r.record()?, &mut out)?;
        }
        out.finish_records();
        *hint = out.buf.len() + out.buf.len() / 8;
        Ok(out.buf)
    })
}

/// Keyed input: the keys with their states, then records naming their key by index.
#[doc(hidden)]
pub fn keyed_process<T: KeyedOperator>(batch: &[u8]) -> Result<Vec<u8>, Error> {
    with_op::<T, _>(|op, hint| {
        let mut r = Reader::new(batch);
        let key_count = r.u32("key count")? as usize;
        let mut keys = Vec::with_capacity(key_count.min(batch.len() / KEY_ENTRY_HEADER_BYTES));
        let mut states = Vec::with_capacity(keys.capacity());
        for _ in 0..key_count {
            let (key, state) = r.key_entry()?;
            keys.push(key);
            states.push(KeyState::new(state));
        }
        let record_count = r.u32("record count")?;
        let mut out = Emitter::with_capacity(*hint);
        for record in 0..record_count as usize {
            let rec = r.keyed_record()?;
            let i = rec.key_index as usize;
            let (Some(&key), Some(state)) = (keys.get(i), states.get_mut(i)) else {
                return Err(BatchError::bad_key_index(record, rec.key_index, key_count).into());
            };
            op.process(RawRecord { ts: rec.ts, key, value: rec.value }, state, &mut out)?;
        }
        r.finish("keyed input")?;
        out.finish_records();
        for s in &states {
            s.write_update(&mut out.buf);
        }
        *hint = out.buf.len() + out.buf.len() / 8;
        Ok(out.buf)
    })
}

fn to_wit(e: Error) -> wit_op::OperatorError {
    match e {
        Error::BadInput(m) => wit_op::OperatorError::BadInput(m),
        Error::Failed(m) => wit_op::OperatorError::Failed(m),
    }
}

impl<T: Export> wit_op::Guest for T {
    fn open(op: u32, info: wit_op::TaskInfo, args: Vec<(String, String)>) -> Result<(), wit_op::OperatorError> {
        if op != 0 {
            return Err(wit_op::OperatorError::UnknownOperator(op));
        }
        let ctx = OpenContext { subtask: info.subtask, parallelism: info.parallelism, max_parallelism: info.max_parallelism, args };
        T::open(ctx).map_err(to_wit)
    }

    fn process(op: u32, batch: Vec<u8>) -> Result<Vec<u8>, wit_op::OperatorError> {
        if op != 0 {
            return Err(wit_op::OperatorError::UnknownOperator(op));
        }
        T::process(&batch).map_err(to_wit)
    }

    fn close(op: u32) -> Result<(), wit_op::OperatorError> {
        if op != 0 {
            return Err(wit_op::OperatorError::UnknownOperator(op));
        }
        T::close().map_err(to_wit)
    }
}
