//! Fixture: operator "reach" tries, on its one record, what argument `try` names and
//! writes what it got to the job's output (one line), or panics saying what was
//! refused, so the refusal reaches the job's failure cause:
//! - `file`: opens `/etc/passwd` for reading;
//! - `socket`: connects over TCP to `addr` (default `127.0.0.1:80`);
//! - `env`: reads `HOME` and `PATH`;
//! - `clock`: reads the wall clock (`SystemTime::now`);
//! - `instant`: reads the monotonic clock (`Instant::now`) and sleeps 1 ms on it;
//! - `random`: hashes the record with a fresh `RandomState`, whose keys come from
//!   `wasi:random`, and writes the hash (the same on every run when randomness is a
//!   deterministic substitute).

use std::hash::BuildHasher;

use weir_sdk::prelude::*;

fn reach(what: &str, addr: &str, i: u64) -> String {
    match what {
        "file" => match std::fs::read_to_string("/etc/passwd") {
            Ok(text) => format!("read /etc/passwd: {} bytes", text.len()),
            Err(e) => panic!("file /etc/passwd refused: {e}"),
        },
        "socket" => match std::net::TcpStream::connect(addr) {
            Ok(_) => format!("connected to {addr}"),
            Err(e) => panic!("socket to {addr} refused: {e}"),
        },
        "env" => {
            let read = |name: &str| std::env::var(name).unwrap_or_else(|e| panic!("env {name} refused: {e}"));
            format!("HOME={} PATH={}", read("HOME"), read("PATH"))
        }
        "clock" => {
            let now = std::time::SystemTime::now();
            let since = now.duration_since(std::time::UNIX_EPOCH).unwrap_or_else(|e| panic!("clock before the epoch: {e}"));
            format!("wall clock {}", since.as_secs())
        }
        "instant" => {
            let start = std::time::Instant::now();
            std::thread::sleep(std::time::Duration::from_millis(1));
            format!("slept {} us", start.elapsed().as_micros())
        }
        "random" => format!("hash {}", std::collections::hash_map::RandomState::new().hash_one(i)),
        other => panic!("unknown try={other} (file, socket, env, clock, instant, random)"),
    }
}

fn build(job: &mut Job) {
    job.name("bad_sandbox");
    let what = job.arg("try").unwrap_or("file").to_string();
    let addr = job.arg("addr").unwrap_or("127.0.0.1:80").to_string();
    job.generator("one", 0, 1).map("reach", move |i: u64| reach(&what, &addr, i)).sink("out", Sink::default());
}

weir_sdk::export_job!(build);
