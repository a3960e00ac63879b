//! One network namespace per TaskManager, so a TaskManager can be cut off from the
//! JobManager and its peers while it keeps running (and keeps the shared filesystem:
//! the partitioned zombie). Namespace `weir-chaos-tmN` is joined to the root namespace
//! by a veth pair: root side `wchaosN` = 10.77.N.1/24, namespace side `wchaosNp` =
//! 10.77.N.2/24 with its default route via 10.77.N.1; with IPv4 forwarding on, the
//! namespaces reach each other through the root namespace, where the JobManager runs.
//! A partition is `ip link set wchaosN down`.

use std::process::Command;

use anyhow::{Context, Result, bail};

const FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
const PREFIX: &str = "weir-chaos-tm";

/// The namespace of TaskManager `n` (1-based).
pub fn name(n: usize) -> String {
    format!("{PREFIX}{n}")
}

/// The root namespace's address on TaskManager `n`'s link: where it dials the JobManager.
pub fn gateway(n: usize) -> String {
    format!("10.77.{n}.1")
}

/// TaskManager `n`'s own address.
pub fn address(n: usize) -> String {
    format!("10.77.{n}.2")
}

fn root_link(n: usize) -> String {
    format!("wchaos{n}")
}

fn ip(args: &[&str]) -> Result<()> {
    let o = Command::new("ip").args(args).output().context("running ip (iproute2)")?;
    if !o.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&o.stderr).trim());
    }
    Ok(())
}

/// Whether namespaces can be made here (root, iproute2, a kernel that allows it).
pub fn available() -> bool {
    let probe = format!("{PREFIX}-probe");
    let ok = ip(&["netns", "add", &probe]).is_ok();
    let _ = ip(&["netns", "del", &probe]);
    ok
}

fn output(args: &[&str]) -> String {
    Command::new("ip").args(args).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
}

/// Removes namespaces and root-side links a killed earlier run left behind (deleting
/// a namespace deletes its veth end, and with it the pair). Processes still inside
/// are that run's, not ours to kill: they are named.
fn remove_leftovers() {
    for ns in output(&["netns", "list"]).lines().filter_map(|l| l.split_whitespace().next()).filter(|n| n.starts_with(PREFIX)) {
        let pids = output(&["netns", "pids", ns]).split_whitespace().collect::<Vec<_>>().join(" ");
        if !pids.is_empty() {
            println!("left running by an earlier run in namespace {ns} (not killed): pids {pids}");
        }
        let _ = ip(&["netns", "del", ns]);
    }
    for link in output(&["-o", "link", "show"]).lines().filter_map(|l| l.split(": ").nth(1)).map(|l| l.split('@').next().unwrap_or(l)) {
        if link.strip_prefix("wchaos").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) {
            let _ = ip(&["link", "del", link]);
        }
    }
}

/// Names and addresses are fixed, so one run per machine uses namespaces: the owner's
/// pid is kept here, and a live owner stops a second run.
fn owner_file() -> std::path::PathBuf {
    std::env::temp_dir().join("weir-chaos-netns.pid")
}

/// The namespaces of one run; removed (and IPv4 forwarding restored) when dropped.
pub struct Namespaces {
    count: usize,
    forward_before: String,
}

impl Namespaces {
    /// Creates namespaces 1..=count with their links, after removing leftovers.
    pub fn create(count: usize) -> Result<Self> {
        let owner = std::fs::read_to_string(owner_file()).ok().and_then(|p| p.trim().parse::<u32>().ok());
        if let Some(pid) = owner.filter(|p| *p != std::process::id())
            && std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "weir-chaos")
        {
            bail!("weir-chaos (pid {pid}) is using the namespaces {PREFIX}N; --no-netns runs beside it");
        }
        std::fs::write(owner_file(), std::process::id().to_string()).context("writing the namespaces' owner file")?;
        remove_leftovers();
        let forward_before = std::fs::read_to_string(FORWARD).with_context(|| format!("reading {FORWARD}"))?.trim().to_string();
        std::fs::write(FORWARD, "1").with_context(|| format!("enabling IPv4 forwarding ({FORWARD})"))?;
        // From here on Drop cleans up whatever part was made.
        let made = Namespaces { count, forward_before };
        for n in 1..=count {
            let (ns, root, peer) = (name(n), root_link(n), format!("wchaos{n}p"));
            ip(&["netns", "add", &ns])?;
            ip(&["link", "add", &root, "type", "veth", "peer", "name", &peer, "netns", &ns])?;
            ip(&["addr", "add", &format!("{}/24", gateway(n)), "dev", &root])?;
            ip(&["link", "set", &root, "up"])?;
            ip(&["-n", &ns, "addr", "add", &format!("{}/24", address(n)), "dev", &peer])?;
            ip(&["-n", &ns, "link", "set", &peer, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&["-n", &ns, "route", "add", "default", "via", &gateway(n)])?;
        }
        Ok(made)
    }

    /// Cuts TaskManager `n` off (`false`) or reconnects it (`true`).
    pub fn set_link(&self, n: usize, up: bool) -> Result<()> {
        ip(&["link", "set", &root_link(n), if up { "up" } else { "down" }])
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in 1..=self.count {
            let _ = ip(&["netns", "del", &name(n)]);
        }
        let _ = std::fs::write(FORWARD, &self.forward_before);
        let _ = std::fs::remove_file(owner_file());
    }
}
