//! `timers.on-timer`: fired timers, dispatched to the keyed operator that set them.

use crate::runtime::JobMain;
use crate::wit::exports::weir::dataflow::operator::OperatorError;
use crate::wit::exports::weir::dataflow::timers as wit_timers;

impl<T: JobMain> wit_timers::Guest for T {
    fn on_timer(op: u32, _batch: Vec<u8>) -> Result<Vec<u8>, OperatorError> {
        Err(OperatorError::Failed(format!("operator {op} sets no timers")))
    }
}
