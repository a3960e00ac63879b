//! The exported entry points: one operator instance (id 0) per component instance.

use core::any::Any;
use core::cell::RefCell;

use crate::codec::{Emitter, KeyState, Reader};
use crate::wit::exports::weir::dataflow::operator as wit_op;
use crate::{Error, KeyedOperator, OpenContext, Operator};

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
    install_panic_hook();
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
        let key_count = r.u32("the key count")? as usize;
        let mut keys = Vec::with_capacity(key_count.min(batch.len() / 8));
        let mut states = Vec::with_capacity(keys.capacity());
        for _ in 0..key_count {
            let klen = r.u32("a key length")? as usize;
            keys.push(r.bytes(klen, "a key")?);
            let slen = r.u32("a state length")?;
            let state = if slen == u32::MAX { None } else { Some(r.bytes(slen as usize, "a state")?) };
            states.push(KeyState::new(state));
        }
        let record_count = r.u32("the record count")?;
        let mut out = Emitter::with_capacity(*hint);
        for _ in 0..record_count {
            let ki = r.u32("a key index")? as usize;
            let ts = r.i64("a timestamp")?;
            let vlen = r.u32("a value length")? as usize;
            let value = r.bytes(vlen, "a value")?;
            let key = *keys.get(ki).ok_or_else(|| Error::bad_input(format!("key index {ki} of {key_count} keys")))?;
            op.process(crate::RawRecord { ts, key, value }, &mut states[ki], &mut out)?;
        }
        if !r.is_empty() {
            return Err(Error::bad_input("bytes after the last record"));
        }
        out.finish_records();
        for s in &states {
            s.write_update(&mut out.buf);
        }
        *hint = out.buf.len() + out.buf.len() / 8;
        Ok(out.buf)
    })
}

/// Reports panics to the host's log before the instance traps.
fn install_panic_hook() {
    #[cfg(target_arch = "wasm32")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            std::panic::set_hook(Box::new(|info| {
                let msg = info.payload_as_str().unwrap_or("(non-string panic payload)");
                let text = match info.location() {
                    Some(l) => format!("panicked at {}:{}:{}: {msg}", l.file(), l.line(), l.column()),
                    None => format!("panicked: {msg}"),
                };
                crate::log::error(&text);
            }));
        });
    }
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
