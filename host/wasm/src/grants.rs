//! The WASI capabilities a guest gets (issue 19). Every guest gets no files, no
//! sockets (wasmtime-wasi denies every address unless told otherwise) and no
//! environment; clocks and randomness depend on the job's [`Capabilities`]. A clock
//! not granted traps at the call, naming the interface; randomness not granted is a
//! deterministic generator seeded from where the instance runs, because Rust's std
//! seeds every `HashMap` from `wasi:random` and trapping there would break every guest.

use rand_core::{Infallible, TryRng};
use wasmtime::component::{HasData, Linker, Resource};
use wasmtime_wasi::clocks::{WasiClocksCtxView, WasiClocksView};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::bindings::clocks::{monotonic_clock, wall_clock};
use weir_types::access::Capabilities;

use crate::instance::HostState;

/// What one instance's WASI grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sandbox {
    /// Its job's capabilities.
    pub capabilities: Capabilities,
    /// Seeds the substitute for randomness when `capabilities.random` is off: the same
    /// seed gives the guest the same bytes, so a rerun is reproducible.
    pub seed: u64,
}

impl Sandbox {
    /// Everything granted: the admin's jobs and `weir run`.
    pub const OPEN: Sandbox = Sandbox { capabilities: Capabilities::ALL, seed: 0 };

    /// `capabilities`, with the substitute seeded from `place` (say, the job id,
    /// vertex and subtask): a stable hash, the same on every host and release.
    pub fn new(capabilities: Capabilities, place: &str) -> Self {
        // FNV-1a: stable across Rust releases, unlike std's hasher.
        let seed = place.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
        Sandbox { capabilities, seed }
    }

    /// The same grants, the substitute seeded apart for `part` of the place (one
    /// component of a chain).
    pub fn part(self, part: u32) -> Self {
        let mut mix = SplitMix64(self.seed ^ u64::from(part).rotate_left(32));
        Sandbox { seed: mix.next(), ..self }
    }

    /// The WASI context: nothing but stdio sinks, plus the substitute generators when
    /// randomness is not granted.
    pub(crate) fn wasi(&self) -> wasmtime_wasi::WasiCtx {
        let mut b = wasmtime_wasi::WasiCtxBuilder::new();
        if !self.capabilities.random {
            let mut seeds = SplitMix64(self.seed);
            let (secure, insecure) = (seeds.next(), seeds.next());
            b.secure_random(SplitMix64(secure)).insecure_random(SplitMix64(insecure));
            b.insecure_random_seed(u128::from(seeds.next()) << 64 | u128::from(seeds.next()));
        }
        b.build()
    }
}

/// splitmix64 (Steele, Lea, Flood): tiny, and good enough for hash seeds and guest
/// randomness that is meant to be reproducible, not secret.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl TryRng for SplitMix64 {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok((self.next() >> 32) as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.next())
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(8) {
            let n = chunk.len();
            chunk.copy_from_slice(&self.next().to_le_bytes()[..n]);
        }
        Ok(())
    }
}

const WALL_CLOCK: &str = "wasi:clocks/wall-clock";
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock";

/// wasmtime-wasi's clocks behind the job's grant.
pub(crate) struct Gated<'a> {
    granted: bool,
    clocks: WasiClocksCtxView<'a>,
}

/// The trap of a call to an interface not granted; `Instance` finds it in the error
/// chain to report it as such.
#[derive(Debug)]
pub(crate) struct NotGranted {
    interface: &'static str,
    capability: &'static str,
}

impl std::fmt::Display for NotGranted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (interface, capability) = (self.interface, self.capability);
        write!(f, "{interface} is not granted to this job's tenant (an admin grants it: weir tenant grant TENANT {capability})")
    }
}

impl std::error::Error for NotGranted {}

impl Gated<'_> {
    fn check(&self, interface: &'static str) -> wasmtime::Result<()> {
        match self.granted {
            true => Ok(()),
            false => Err(wasmtime::Error::new(NotGranted { interface, capability: "clock" })),
        }
    }
}

struct GatedClocks;

impl HasData for GatedClocks {
    type Data<'a> = Gated<'a>;
}

impl wall_clock::Host for Gated<'_> {
    fn now(&mut self) -> wasmtime::Result<wall_clock::Datetime> {
        self.check(WALL_CLOCK)?;
        wall_clock::Host::now(&mut self.clocks)
    }
    fn resolution(&mut self) -> wasmtime::Result<wall_clock::Datetime> {
        self.check(WALL_CLOCK)?;
        wall_clock::Host::resolution(&mut self.clocks)
    }
}

impl monotonic_clock::Host for Gated<'_> {
    fn now(&mut self) -> wasmtime::Result<monotonic_clock::Instant> {
        self.check(MONOTONIC_CLOCK)?;
        monotonic_clock::Host::now(&mut self.clocks)
    }
    fn resolution(&mut self) -> wasmtime::Result<monotonic_clock::Duration> {
        self.check(MONOTONIC_CLOCK)?;
        monotonic_clock::Host::resolution(&mut self.clocks)
    }
    fn subscribe_instant(&mut self, when: monotonic_clock::Instant) -> wasmtime::Result<Resource<DynPollable>> {
        self.check(MONOTONIC_CLOCK)?;
        monotonic_clock::Host::subscribe_instant(&mut self.clocks, when)
    }
    fn subscribe_duration(&mut self, when: monotonic_clock::Duration) -> wasmtime::Result<Resource<DynPollable>> {
        self.check(MONOTONIC_CLOCK)?;
        monotonic_clock::Host::subscribe_duration(&mut self.clocks, when)
    }
}

/// Replaces wasmtime-wasi's clocks in `linker` (which must hold them already) with
/// the gated ones: the same interfaces at the same versions, so every guest links as
/// before and only the calls differ.
pub(crate) fn gate_clocks(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    wall_clock::add_to_linker::<HostState, GatedClocks>(linker, gated)?;
    monotonic_clock::add_to_linker::<HostState, GatedClocks>(linker, gated)?;
    linker.allow_shadowing(false);
    Ok(())
}

fn gated(s: &mut HostState) -> Gated<'_> {
    let granted = s.sandbox.capabilities.clock;
    Gated { granted, clocks: s.clocks() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_substitute_is_reproducible_and_differs_by_place() {
        let bytes = |place: &str| {
            let mut r = SplitMix64(Sandbox::new(Capabilities::NONE, place).seed);
            let mut b = [0u8; 20];
            let _ = r.try_fill_bytes(&mut b);
            b
        };
        assert_eq!(bytes("job-1/0/0"), bytes("job-1/0/0"));
        assert_ne!(bytes("job-1/0/0"), bytes("job-1/0/1"));
        assert_ne!(bytes("job-1/0/0")[..8], [0; 8]);
    }
}
