//! `weir tenant`: the admin's management of tenants, their API tokens, quotas and
//! WASI grants (with the cluster's api token). A tenant's user passes its token with `--token`,
//! `WEIR_TOKEN` or `--token-file` to every client command, and sees only its own jobs.

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use weir_documents::{Grants, Hosts, NewToken, Quota, Roots, Tenant, TenantList, TenantSpec, Token, TokenList, TokenSpec};

use crate::client::{Client, Remote};

#[derive(Args)]
pub struct TenantArgs {
    #[command(subcommand)]
    command: TenantCommand,
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant (with optional quotas).
    Create {
        /// Lower-case letters, digits and `-`, starting with a letter.
        name: String,
        #[command(flatten)]
        quota: QuotaArgs,
        /// WASI capabilities its jobs get, comma-separated: `clock`, `random`
        /// (none by default: a clock call fails the job, randomness is deterministic).
        #[arg(long, value_name = "CAPS")]
        grant: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Replace the WASI capabilities a tenant's jobs get from now on: `clock`,
    /// `random`, comma-separated, or `none`.
    Grant {
        name: String,
        /// `clock,random`, `clock`, `random` or `none`.
        caps: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Replace the hosts a tenant's connectors may reach: `host` (any port) or
    /// `host:port`, comma-separated, or `none`.
    Hosts {
        name: String,
        /// `db.internal:5432,kafka.internal` or `none`.
        hosts: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Replace the directories a tenant's job files (sources, sinks, savepoints) lie
    /// under: absolute, each under a jobmanager `--data-root`, comma-separated, or
    /// `none`.
    Roots {
        name: String,
        /// `/data/acme,/data/shared/acme` or `none`.
        roots: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// List tenants with their quotas and usage.
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// Show a tenant's quota and usage, or replace its quota (unset limits are
    /// unlimited).
    Quota {
        name: String,
        /// Replace the quota with the limits given (none given: show it).
        #[arg(long)]
        set: bool,
        #[command(flatten)]
        quota: QuotaArgs,
        #[command(flatten)]
        remote: Remote,
    },
    /// Issue, list and revoke a tenant's API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Issue a token for TENANT; it is printed once and only its hash is kept.
    Create {
        tenant: String,
        /// It stops working after this long: `90s`, `15m`, `12h`, `30d`.
        #[arg(long, value_parser = parse_duration)]
        expires_in: Option<u64>,
        #[command(flatten)]
        remote: Remote,
    },
    /// List a tenant's tokens (never the tokens themselves).
    List {
        tenant: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Revoke a token by its id: refused from the next request on.
    Revoke {
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Args)]
struct QuotaArgs {
    /// Slots its running jobs may take together.
    #[arg(long)]
    max_slots: Option<u32>,
    /// Jobs it may have running at once.
    #[arg(long)]
    max_running_jobs: Option<u32>,
    /// Bytes its stored artifacts may take, in MiB.
    #[arg(long)]
    max_artifact_mib: Option<u64>,
    /// Wasm fuel per second its running subtasks may burn together; past it they
    /// wait (throttled), they are not failed.
    #[arg(long)]
    fuel_per_second: Option<u64>,
}

impl QuotaArgs {
    fn quota(&self) -> Quota {
        Quota {
            slots: self.max_slots,
            running_jobs: self.max_running_jobs,
            artifact_bytes: self.max_artifact_mib.map(|m| m << 20),
            fuel_per_second: self.fuel_per_second,
        }
    }
}

/// Seconds in `90s`, `15m`, `12h` or `30d`.
fn parse_duration(s: &str) -> Result<u64, String> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().map_err(|_| format!("expected a number and s, m, h or d (30d), got {s:?}"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("expected a number and s, m, h or d (30d), got {s:?}")),
    };
    if n == 0 {
        return Err("the expiry must be in the future".into());
    }
    n.checked_mul(scale).ok_or_else(|| format!("{s:?} is too long"))
}

pub fn run(a: TenantArgs) -> Result<()> {
    match a.command {
        TenantCommand::Create { name, quota, grant, remote } => {
            let c = remote.connect()?;
            let spec = TenantSpec { name: name.clone(), quota: quota.quota(), grants: caps(grant.as_deref().unwrap_or("")), hosts: vec![] };
            let t: Tenant = c.post("/tenants", &spec, &format!("cannot create tenant {name}"))?;
            if !c.json(&t)? {
                println!("tenant {} created; issue it a token: weir tenant token create {}", t.name, t.name);
            }
        }
        TenantCommand::Hosts { name, hosts, remote } => {
            let c = remote.connect()?;
            let t: Tenant = c.put(&format!("/tenants/{name}/hosts"), &Hosts { hosts: caps(&hosts) }, &format!("cannot set tenant {name}'s hosts"))?;
            if !c.json(&t)? {
                println!("tenant {}: connectors may reach {}", t.name, if t.hosts.is_empty() { "no host".to_string() } else { t.hosts.join(", ") });
            }
        }
        TenantCommand::Roots { name, roots, remote } => {
            let c = remote.connect()?;
            let t: Tenant = c.put(&format!("/tenants/{name}/roots"), &Roots { roots: caps(&roots) }, &format!("cannot set tenant {name}'s roots"))?;
            if !c.json(&t)? {
                println!("tenant {}: job files under {}", t.name, if t.roots.is_empty() { "no directory".to_string() } else { t.roots.join(", ") });
            }
        }
        TenantCommand::Grant { name, caps: list, remote } => {
            let c = remote.connect()?;
            let t: Tenant =
                c.put(&format!("/tenants/{name}/grants"), &Grants { grants: caps(&list) }, &format!("cannot set tenant {name}'s grants"))?;
            if !c.json(&t)? {
                print_header();
                print_tenant(&t);
            }
        }
        TenantCommand::List { remote } => {
            let c = remote.connect()?;
            let list: TenantList = c.get("/tenants", "cannot list tenants")?;
            if !c.json(&list)? {
                print_header();
                for t in &list.tenants {
                    print_tenant(t);
                }
            }
        }
        TenantCommand::Quota { name, set, quota, remote } => {
            let c = remote.connect()?;
            let what = format!("tenant {name}'s quota");
            let t: Tenant = match set {
                true => c.put(&format!("/tenants/{name}/quota"), &quota.quota(), &format!("cannot set {what}"))?,
                false if quota.quota() != Quota::default() => bail!("pass --set to replace the quota with these limits"),
                false => c.get(&format!("/tenants/{name}"), &format!("cannot read {what}"))?,
            };
            if !c.json(&t)? {
                print_header();
                print_tenant(&t);
            }
        }
        TenantCommand::Token { command } => token(command)?,
    }
    Ok(())
}

/// The columns of [`print_tenant`].
fn print_header() {
    println!("{:<24} {:>14} {:>14} {:>24} {:>16}  {:<12} {:>16}", "NAME", "RUNNING JOBS", "SLOTS", "ARTIFACT BYTES", "FUEL/S", "GRANTS", "FUEL");
}

/// One line: each usage against its limit (`-`: unlimited).
fn print_tenant(t: &Tenant) {
    fn of(used: u64, max: Option<u64>) -> String {
        format!("{used}/{}", max.map_or("-".to_string(), |m| m.to_string()))
    }
    let (u, q) = (&t.usage, &t.quota);
    println!(
        "{:<24} {:>14} {:>14} {:>24} {:>16}  {:<12} {:>16}",
        t.name,
        of(u.running_jobs.into(), q.running_jobs.map(u64::from)),
        of(u.slots.into(), q.slots.map(u64::from)),
        of(u.artifact_bytes, q.artifact_bytes),
        q.fuel_per_second.map_or("-".to_string(), |f| f.to_string()),
        if t.grants.is_empty() { "none".to_string() } else { t.grants.join(",") },
        u.fuel
    );
}

/// `clock,random` (or hosts, roots) as a list; `none` or nothing: none. The JobManager
/// checks them.
fn caps(list: &str) -> Vec<String> {
    list.split(',').map(str::trim).filter(|n| !n.is_empty() && *n != "none").map(String::from).collect()
}

fn token(command: TokenCommand) -> Result<()> {
    let print = |c: &Client, tokens: &[Token]| -> Result<()> {
        if !c.json(&TokenList { tokens: tokens.to_vec() })? {
            println!("{:<18} {:<24} {:<26} {:<26} REVOKED", "ID", "TENANT", "CREATED", "EXPIRES");
            for t in tokens {
                println!("{:<18} {:<24} {:<26} {:<26} {}", t.id, t.tenant, t.created_at, t.expires_at.as_deref().unwrap_or("never"), t.revoked);
            }
        }
        Ok(())
    };
    match command {
        TokenCommand::Create { tenant, expires_in, remote } => {
            let c = remote.connect()?;
            let spec = TokenSpec { expires_in_seconds: expires_in };
            let t: NewToken = c.post(&format!("/tenants/{tenant}/tokens"), &spec, &format!("cannot issue a token for tenant {tenant}"))?;
            if !c.json(&t)? {
                // The token alone on stdout, so `$(weir tenant token create t)` captures it.
                println!("{}", t.token);
                eprintln!(
                    "token {} for tenant {} (expires {}); it is shown only now",
                    t.details.id,
                    t.details.tenant,
                    t.details.expires_at.as_deref().unwrap_or("never")
                );
            }
        }
        TokenCommand::List { tenant, remote } => {
            let c = remote.connect()?;
            let list: TokenList = c.get(&format!("/tenants/{tenant}/tokens"), &format!("cannot list tenant {tenant}'s tokens"))?;
            print(&c, &list.tokens)?;
        }
        TokenCommand::Revoke { id, remote } => {
            let c = remote.connect()?;
            let t: Token = c.post(&format!("/tokens/{id}/revoke"), &serde_json::json!({}), &format!("cannot revoke token {id}"))?;
            print(&c, &[t])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn expiries_read_as_seconds() {
        assert_eq!(parse_duration("30d"), Ok(30 * 86_400));
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("15m"), Ok(900));
        assert!(parse_duration("0s").is_err() && parse_duration("3w").is_err() && parse_duration("d").is_err());
    }
}
