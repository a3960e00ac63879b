//! Connect: clicks enriched with the clicking user's profile as it was at the click's
//! event time (a temporal join), two keyed streams meeting in one
//! `KeyedCoProcessFunction`.
//!
//! - `profiles`: the generator `0..profiles` (argument, default 2 000) at parallelism
//!   `profile-parallelism` (default 1), profile `j` being version `j / users` of user
//!   `j % users` (`users`, default 100), at event time `j / profile-rate` ms
//!   (`profile-rate`, default 1).
//! - `clicks`: the generator `0..clicks` (default 100 000) at the job's parallelism,
//!   click `i` by user `splitmix64(i) % users` at event time `i / click-rate` ms
//!   (`click-rate`, default 50).
//!
//! Both are keyed by user and connected. A click waits in its user's state for the
//! watermark, the minimum over both inputs, to reach its time; then every profile
//! version at or before that time has arrived, and the click goes out as
//! `user<TAB>click version` with the newest of them (`-` if none): the output does not
//! depend on how the inputs interleave. Profiles newer than the watermark wait in the
//! state too; older ones are dropped once a newer one is due. `work` rounds of busy
//! work per record (both inputs) slow it down for crash tests.
//!
//! `mode=latest` (the benchmark's connect): each click goes out at once as
//! `user<TAB>version` with the latest profile version that arrived before it (`0`:
//! none), which depends on how the inputs interleave; `sink=discard` drops the output.
//!
//! `weir run enrich_clicks.wasm -p 3 -o enriched.tsv`

use weir_sdk::prelude::*;

/// The standard splitmix64 finalizer, so the host side can compute expected outputs.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A user's state: profile versions `(event time, version)` not yet superseded for a
/// pending click, and clicks `(event time, click)` waiting for the watermark.
#[derive(weir_sdk::serde::Serialize, weir_sdk::serde::Deserialize)]
#[serde(crate = "weir_sdk::serde")]
struct User {
    profiles: Vec<(i64, u64)>,
    pending: Vec<(i64, u64)>,
}

struct Enrich {
    users: u64,
}

impl KeyedCoProcessFunction<u64, u64, u64> for Enrich {
    type State = User;
    type Out = String;

    fn process_element1(&mut self, ctx: &mut TimerContext<'_, u64, User>, profile: u64, _out: &mut Emitter<'_, String>) {
        let version = (ctx.timestamp(), profile / self.users);
        match ctx.state_mut() {
            Some(user) => user.profiles.push(version),
            None => ctx.set_state(User { profiles: vec![version], pending: vec![] }),
        }
    }

    fn process_element2(&mut self, ctx: &mut TimerContext<'_, u64, User>, click: u64, _out: &mut Emitter<'_, String>) {
        let ts = ctx.timestamp();
        match ctx.state_mut() {
            Some(user) => user.pending.push((ts, click)),
            None => ctx.set_state(User { profiles: vec![], pending: vec![(ts, click)] }),
        }
        ctx.register_event_time_timer(ts);
    }

    fn on_timer(&mut self, ctx: &mut TimerContext<'_, u64, User>, timer: Timer, out: &mut Emitter<'_, String>) {
        let Some(user) = ctx.state_mut() else { return };
        let (due, pending): (Vec<_>, Vec<_>) = user.pending.iter().partition(|(ts, _)| *ts <= timer.ts);
        let newest = user.profiles.iter().filter(|(ts, _)| *ts <= timer.ts).max().copied();
        for (_, click) in due {
            match newest {
                Some((_, version)) => out.emit(format!("{click} {version}")),
                None => out.emit(format!("{click} -")),
            }
        }
        // Later clicks are at or after this time: the newest profile due now is the
        // oldest any of them can need.
        user.profiles.retain(|p| p.0 > timer.ts || Some(*p) == newest);
        user.pending = pending;
    }
}

/// `mode=latest`: a user's latest profile version (plus one; 0: none) as its state.
struct Latest {
    users: u64,
}

impl KeyedCoProcessFunction<u64, u64, u64> for Latest {
    type State = u64;
    type Out = u64;

    fn process_element1(&mut self, ctx: &mut TimerContext<'_, u64, u64>, profile: u64, _out: &mut Emitter<'_, u64>) {
        ctx.set_state(profile / self.users + 1);
    }

    fn process_element2(&mut self, ctx: &mut TimerContext<'_, u64, u64>, _click: u64, out: &mut Emitter<'_, u64>) {
        out.emit(ctx.state().copied().unwrap_or(0));
    }
}

fn build(job: &mut Job) {
    let profiles = job.arg_u64("profiles", 2_000);
    let clicks = job.arg_u64("clicks", 100_000);
    let users = job.arg_u64("users", 100).max(1);
    let profile_rate = job.arg_u64("profile-rate", 1);
    let click_rate = job.arg_u64("click-rate", 50);
    let profile_parallelism = job.arg_u64("profile-parallelism", 1) as u32;
    let work = job.arg_u64("work", 0);
    let busy = move |x: u64| std::hint::black_box((0..work).fold(x, |y, _| splitmix64(y)));
    job.name("enrich_clicks");
    let profiles = job
        .generator_with_time("profiles", 0, profiles, profile_rate)
        .parallelism(profile_parallelism)
        .with_watermarks(WatermarkStrategy::monotonous())
        .key_by("profile-user", move |j: &u64| {
            busy(*j);
            j % users
        });
    let clicks = job.generator_with_time("clicks", 0, clicks, click_rate).with_watermarks(WatermarkStrategy::monotonous()).key_by(
        "click-user",
        move |i: &u64| {
            busy(*i);
            splitmix64(*i) % users
        },
    );
    let sink = match job.arg("sink") {
        Some("discard") => Sink::discard(),
        _ => Sink::default(),
    };
    match job.arg("mode") {
        Some("latest") => profiles.connect(clicks).process("enrich", Latest { users }).sink("out", sink),
        _ => profiles.connect(clicks).process("enrich", Enrich { users }).sink("out", sink),
    };
}

weir_sdk::export_job!(build);
