//! Fixture: a component built against its own copy of the WIT with the package version
//! left at the older `weir:dataflow@0.1.0`, so the host must refuse it as the wrong world. It
//! uses wit-bindgen directly and implements the exports trivially.

wit_bindgen::generate!({
    path: "wit",
    world: "job-component",
});

use exports::weir::dataflow::job::{Guest as JobGuest, JobPlan};
use exports::weir::dataflow::operator::{Guest as OperatorGuest, OperatorError, TaskInfo};

struct WrongWorld;

impl JobGuest for WrongWorld {
    fn plan(_args: Vec<(String, String)>) -> Result<JobPlan, String> {
        Ok(JobPlan { name: "wrong_world".to_string(), nodes: Vec::new(), edges: Vec::new(), max_parallelism: None })
    }
}

impl OperatorGuest for WrongWorld {
    fn open(op: u32, _info: TaskInfo, _args: Vec<(String, String)>) -> Result<(), OperatorError> {
        Err(OperatorError::UnknownOperator(op))
    }

    fn process(op: u32, _batch: Vec<u8>) -> Result<Vec<u8>, OperatorError> {
        Err(OperatorError::UnknownOperator(op))
    }

    fn close(op: u32) -> Result<(), OperatorError> {
        Err(OperatorError::UnknownOperator(op))
    }
}

export!(WrongWorld);
