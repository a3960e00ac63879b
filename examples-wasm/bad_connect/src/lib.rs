//! Fixture: connects the typed API cannot write, through the SDK's hidden
//! `connect_unchecked`, so the host's plan validation must refuse them at submission.
//! Argument `case`: `key-types` (numbers keyed by `u64` meet words keyed by `String`),
//! `unkeyed` (the words reach the connect by rebalance, not by key).

use weir_sdk::prelude::*;
use weir_sdk::wit::weir::dataflow::plan_types::Partitioning;

struct Meet;

impl KeyedCoProcessFunction<u64, u64, String> for Meet {
    type State = u64;
    type Out = String;

    fn process_element1(&mut self, _ctx: &mut TimerContext<'_, u64, u64>, _value: u64, _out: &mut Emitter<'_, String>) {}

    fn process_element2(&mut self, _ctx: &mut TimerContext<'_, u64, u64>, value: String, out: &mut Emitter<'_, String>) {
        out.emit(value)
    }
}

fn build(job: &mut Job) {
    job.name("bad_connect");
    let case = job.arg("case").unwrap_or("key-types").to_string();
    let numbers = job.generator("numbers", 0, 10).key_by("by-number", |x: &u64| *x);
    let words = job.generator("words", 0, 10).map("word", |x: u64| x.to_string()).key_by("by-word", |w: &String| w.clone());
    let connected = match case.as_str() {
        "unkeyed" => numbers.connect_unchecked(words, Partitioning::Rebalance, None),
        _ => numbers.connect_unchecked(words, Partitioning::KeyBy, Some(core::any::type_name::<String>())),
    };
    connected.process("meet", Meet).discard("out");
}

weir_sdk::export_job!(build);
