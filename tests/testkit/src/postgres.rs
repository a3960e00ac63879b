//! A real PostgreSQL server for tests: `initdb` in a temporary directory, `pg_ctl
//! start` on a free loopback port (its unix socket in the directory too), stopped and
//! removed when dropped. Run as the `postgres` user when the test runs as root
//! (PostgreSQL refuses root). Password authentication (scram-sha-256) for user
//! `postgres` with [`Postgres::PASSWORD`].

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A running PostgreSQL server.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    owner: Option<(u32, u32)>,
    running: bool,
}

/// The PostgreSQL binaries: `$WEIR_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WEIR_PG_BIN") {
        return dir.into();
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (apt-get install postgresql; .ci/run does)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("pg_ctl").exists())
        .collect();
    versions.sort_by_key(|p| p.parent().and_then(|v| v.file_name()).and_then(|v| v.to_str()).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0));
    versions.pop().expect("a PostgreSQL installation under /usr/lib/postgresql")
}

/// uid and gid of the `postgres` user, when running as root.
fn owner() -> Option<(u32, u32)> {
    // `id -u` rather than geteuid: the workspace denies unsafe code.
    let me = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&me.stdout).trim() != "0" {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let out = Command::new("id").args([flag, "postgres"]).output().expect("id runs");
        assert!(out.status.success(), "running as root needs a `postgres` user (PostgreSQL refuses root)");
        String::from_utf8_lossy(&out.stdout).trim().parse().expect("a numeric id")
    };
    Some((id("-u"), id("-g")))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

impl Postgres {
    /// The password of user `postgres`.
    pub const PASSWORD: &'static str = "weir-test-pw";

    /// Creates a cluster and starts it.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new().prefix("weir-pg-").tempdir_in(std::env::temp_dir()).expect("a temporary directory");
        let owner = owner();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown the directory to postgres");
        }
        let mut pg = Postgres { bin: bin_dir(), port: free_port(), owner, running: false, dir };
        let pwfile = pg.dir.path().join("pw");
        std::fs::write(&pwfile, Self::PASSWORD).expect("write the password file");
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid)).expect("chown the password file");
        }
        let data = pg.data();
        let out = pg.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "-A".as_ref(),
                "scram-sha-256".as_ref(),
                "--pwfile".as_ref(),
                pwfile.as_os_str(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--no-sync".as_ref(),
            ],
        );
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        pg.start_server();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run(&self, tool: &str, args: &[&std::ffi::OsStr]) -> Output {
        let mut cmd = Command::new(self.bin.join(tool));
        cmd.args(args).current_dir(self.dir.path()).env("LC_ALL", "C.UTF-8");
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid);
        }
        cmd.output().unwrap_or_else(|e| panic!("{tool} runs: {e}"))
    }

    fn start_server(&mut self) {
        let (data, log) = (self.data(), self.dir.path().join("server.log"));
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60", self.port, self.dir.path().display());
        let out = self.run(
            "pg_ctl",
            &["-D".as_ref(), data.as_os_str(), "-l".as_ref(), log.as_os_str(), "-w".as_ref(), "-o".as_ref(), options.as_ref(), "start".as_ref()],
        );
        assert!(out.status.success(), "pg_ctl start failed: {}\n{}", String::from_utf8_lossy(&out.stderr), self.log());
        self.running = true;
    }

    /// Stops the server at once (`-m immediate`: like a crash, connections cut).
    pub fn stop(&mut self) {
        let data = self.data();
        let out = self.run("pg_ctl", &["-D".as_ref(), data.as_os_str(), "-m".as_ref(), "immediate".as_ref(), "-w".as_ref(), "stop".as_ref()]);
        assert!(out.status.success(), "pg_ctl stop failed: {}", String::from_utf8_lossy(&out.stderr));
        self.running = false;
    }

    /// Starts it again on the same port after [`Postgres::stop`].
    pub fn restart(&mut self) {
        if self.running {
            self.stop();
        }
        self.start_server();
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The temporary directory (the data directory and the log are in it).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// A `psql` connection string (libpq keywords) for user postgres.
    pub fn url(&self) -> String {
        format!("host=127.0.0.1 port={} user=postgres password={} dbname=postgres", self.port, Self::PASSWORD)
    }

    /// Runs SQL through `psql` (unaligned, tuples only, `|`-separated); its output.
    pub fn psql(&self, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.url())
            .args(["-c", sql])
            .output()
            .expect("psql runs");
        assert!(out.status.success(), "psql {sql:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.running {
            let data = self.data();
            let _ = self.run("pg_ctl", &["-D".as_ref(), data.as_os_str(), "-m".as_ref(), "immediate".as_ref(), "-w".as_ref(), "stop".as_ref()]);
        }
    }
}
