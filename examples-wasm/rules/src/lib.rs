//! Broadcast state: sensor readings checked against threshold rules that change while
//! the job runs (a `KeyedBroadcastProcessFunction`).
//!
//! - `rules`: the generator `0..rules` (argument, default 40) at parallelism
//!   `rule-parallelism` (default 1), rule `j` setting the threshold of class
//!   `j % classes` (`classes`, default 4) to `splitmix64(j) % 1000` from event time
//!   `j * rule-every` ms (`rule-every`, default 50) on. Broadcast to every subtask and
//!   kept in the broadcast state as versions keyed by (class, time), so every copy ends
//!   the same whatever order rules from several generator subtasks arrive in.
//! - `events`: the generator `0..events` (default 100 000) at the job's parallelism,
//!   reading `i` of sensor `splitmix64(i) % sensors` (`sensors`, default 100, class
//!   `sensor % classes`) with value `splitmix64(i ^ SALT) % 1000`, at event time
//!   `i / event-rate` ms (`event-rate`, default 50). Keyed by sensor.
//!
//! A reading waits in its sensor's state for the watermark (the minimum over both
//! inputs) to reach its time: then every rule version at or before that time has
//! arrived. It goes out as `sensor<TAB>i threshold` if its value is above the newest
//! threshold of its class at its time (nothing if no rule is in force yet): the output
//! does not depend on how the inputs interleave. `work` rounds of busy work per reading
//! slow it down for savepoint tests. `ack=1`: each rule is also acknowledged as it
//! arrives, from `process_broadcast_element`, as `sensor<TAB>rule j threshold` under
//! sensor `j % sensors` (once, whatever the parallelism).
//!
//! `weir run rules.wasm -p 3 -o alerts.tsv`

use weir_sdk::prelude::*;

/// Mixed into a reading's index for its value, so value and sensor are independent.
const SALT: u64 = 0x5EED;

/// The standard splitmix64 finalizer, so the host side can compute expected outputs.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

struct Alerts {
    classes: u64,
    rule_every: i64,
    /// Acknowledge each rule under sensor `j % sensors`, if set.
    ack_sensors: Option<u64>,
}

impl KeyedBroadcastProcessFunction<u64, u64, u64> for Alerts {
    /// Readings `(event time, i)` waiting for the watermark.
    type State = Vec<(i64, u64)>;
    type Out = String;
    /// (class, from event time).
    type RuleKey = (u64, i64);
    /// The threshold.
    type Rule = u64;

    fn process_element(
        &mut self,
        ctx: &mut TimerContext<'_, u64, Vec<(i64, u64)>>,
        _rules: &ReadOnlyBroadcastState<(u64, i64), u64>,
        i: u64,
        _out: &mut Emitter<'_, String>,
    ) {
        let ts = ctx.timestamp();
        match ctx.state_mut() {
            Some(pending) => pending.push((ts, i)),
            None => ctx.set_state(vec![(ts, i)]),
        }
        ctx.register_event_time_timer(ts);
    }

    fn process_broadcast_element(&mut self, rules: &mut BroadcastState<(u64, i64), u64>, j: u64, out: &mut BroadcastEmitter<'_, '_, u64, String>) {
        let from = j as i64 * self.rule_every;
        let threshold = splitmix64(j) % 1000;
        if let Err(e) = rules.put(&(j % self.classes, from), &threshold) {
            panic!("writing rule {j}: {e}");
        }
        if let Some(sensors) = self.ack_sensors {
            out.emit(&(j % sensors), format!("rule {j} {threshold}"));
        }
    }

    fn on_timer(
        &mut self,
        ctx: &mut TimerContext<'_, u64, Vec<(i64, u64)>>,
        rules: &ReadOnlyBroadcastState<(u64, i64), u64>,
        timer: Timer,
        out: &mut Emitter<'_, String>,
    ) {
        let class = *ctx.key() % self.classes;
        let threshold = match rules.entries() {
            Ok(all) => all.into_iter().filter(|((c, from), _)| *c == class && *from <= timer.ts).max_by_key(|((_, from), _)| *from).map(|(_, t)| t),
            Err(e) => panic!("reading the rules: {e}"),
        };
        let Some(pending) = ctx.state_mut() else { return };
        let (due, rest): (Vec<_>, Vec<_>) = pending.iter().partition(|(ts, _)| *ts <= timer.ts);
        *pending = rest;
        let Some(threshold) = threshold else { return };
        for (_, i) in due {
            if splitmix64(i ^ SALT) % 1000 > threshold {
                out.emit(format!("{i} {threshold}"));
            }
        }
    }
}

fn build(job: &mut Job) {
    let rules = job.arg_u64("rules", 40);
    let events = job.arg_u64("events", 100_000);
    let classes = job.arg_u64("classes", 4).max(1);
    let sensors = job.arg_u64("sensors", 100).max(1);
    let rule_every = job.arg_u64("rule-every", 50).max(1);
    let event_rate = job.arg_u64("event-rate", 50);
    let rule_parallelism = job.arg_u64("rule-parallelism", 1) as u32;
    let work = job.arg_u64("work", 0);
    let ack_sensors = (job.arg("ack") == Some("1")).then_some(sensors);
    job.name("rules");
    let rule_every = rule_every as i64;
    let rules = job
        .generator("rules", 0, rules)
        .parallelism(rule_parallelism)
        .assign_timestamps("rule-time", move |j: &u64| *j as i64 * rule_every, WatermarkStrategy::monotonous())
        .parallelism(rule_parallelism);
    let events =
        job.generator_with_time("events", 0, events, event_rate).with_watermarks(WatermarkStrategy::monotonous()).key_by("sensor", move |i: &u64| {
            std::hint::black_box((0..work).fold(*i, |y, _| splitmix64(y)));
            splitmix64(*i) % sensors
        });
    events.connect_broadcast(rules).process("alerts", Alerts { classes, rule_every, ack_sensors }).sink("out", Sink::default());
}

weir_sdk::export_job!(build);
