//! The client side of the JobManager's REST API, shared by the cluster client
//! commands (`submit`, `list`, `status`, `cancel`, `savepoint`, `logs`, under `cmd`):
//! HTTP with its bearer token, progress bars on a terminal and `--output json` for
//! scripts.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde::de::DeserializeOwned;
use weir_documents::{Artifact, ErrorBody};
use weir_types::ids::JobId;

/// How a client command prints its answer.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// For people.
    Text,
    /// The API's JSON document, for scripts.
    Json,
}

/// Where the JobManager's REST API is and how to authenticate.
#[derive(Args)]
pub struct Remote {
    /// The JobManager's REST address (`https://HOST:PORT`, `http://HOST:PORT` or
    /// `HOST:PORT`, which is http).
    #[arg(long, env = "WEIR_JOBMANAGER", default_value = "http://127.0.0.1:8081")]
    pub jobmanager: String,
    /// The CA certificate (PEM) an https JobManager's certificate must chain to: the
    /// cluster's ca.pem; then it is the only one trusted [default: ca.pem next to
    /// --token-file if there is one, else the public web roots].
    #[arg(long, env = "WEIR_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// The API token: the cluster's (from `weir cluster-init`'s api-token file, the
    /// admin) or a tenant's (`weir tenant token create`).
    #[arg(long, env = "WEIR_TOKEN", hide_env_values = true, conflicts_with = "token_file")]
    pub token: Option<String>,
    /// A file holding the API token.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
}

/// The arguments of the commands that name one job (`cancel`, `logs`).
#[derive(Args)]
pub struct JobIdArgs {
    /// The job's id.
    pub job_id: JobId,
    #[command(flatten)]
    pub remote: Remote,
}

/// A REST session with the JobManager.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    auth: String,
    pub output: Output,
}

impl Remote {
    pub fn connect(&self) -> Result<Client> {
        let token = match (&self.token, &self.token_file) {
            (Some(t), _) => t.clone(),
            (None, Some(f)) => std::fs::read_to_string(f).with_context(|| format!("cannot read the api token from {}", f.display()))?,
            (None, None) => bail!("no api token: pass --token-file (api-token from `weir cluster-init`), --token or WEIR_TOKEN"),
        };
        let base = if self.jobmanager.contains("://") { self.jobmanager.clone() } else { format!("http://{}", self.jobmanager) };
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(ca) = self.trusted_ca() {
            let pem = std::fs::read(&ca).with_context(|| format!("cannot read the CA certificate {}", ca.display()))?;
            let mut roots = Vec::new();
            for item in ureq::tls::parse_pem(&pem) {
                if let ureq::tls::PemItem::Certificate(c) = item.with_context(|| format!("the CA certificate {} is not valid PEM", ca.display()))? {
                    roots.push(c);
                }
            }
            anyhow::ensure!(!roots.is_empty(), "{} holds no certificate", ca.display());
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&roots));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .tls_config(tls.build())
            .build()
            .into();
        Ok(Client { agent, base: base.trim_end_matches('/').to_string(), auth: format!("Bearer {}", token.trim()), output: self.output })
    }

    /// `--ca`, else the cluster's ca.pem beside the token file (`weir cluster-init`
    /// writes both into one directory).
    fn trusted_ca(&self) -> Option<PathBuf> {
        self.ca.clone().or_else(|| {
            let beside = self.token_file.as_ref()?.parent()?.join("ca.pem");
            beside.is_file().then_some(beside)
        })
    }
}

impl Client {
    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    fn answer<T: DeserializeOwned>(&self, what: &str, sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<T> {
        let mut response = match sent {
            Ok(r) => r,
            // rustls's refusal reaches us as an I/O error saying which check failed
            // (unknown issuer, name mismatch, expired): keep its words, add the remedy.
            Err(e) if e.to_string().contains("invalid peer certificate") => bail!(
                "the jobmanager at {} presented a certificate this client does not trust ({}): pass the cluster's CA certificate with --ca FILE or WEIR_CA",
                self.base,
                e.to_string().trim_start_matches("io: ")
            ),
            Err(e) => return Err(e).with_context(|| format!("cannot reach the jobmanager at {}", self.base)),
        };
        let status = response.status();
        let body = response.body_mut().with_config().limit(64 << 20).read_to_string().with_context(|| format!("{what}: unreadable answer"))?;
        if status.is_success() {
            return serde_json::from_str(&body).with_context(|| format!("{what}: unexpected answer from the jobmanager"));
        }
        match serde_json::from_str::<ErrorBody>(&body) {
            Ok(e) => bail!("{what}: {} ({})", e.error.message, status.as_u16()),
            Err(_) => bail!("{what}: HTTP {status}"),
        }
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str, what: &str) -> Result<T> {
        self.answer(what, self.agent.get(self.url(path)).header("Authorization", &self.auth).call())
    }

    pub fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize, what: &str) -> Result<T> {
        self.answer(what, self.agent.post(self.url(path)).header("Authorization", &self.auth).send_json(body))
    }

    /// PUT `path` with a JSON body; the answer's JSON.
    pub fn put<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize, what: &str) -> Result<T> {
        self.answer(what, self.agent.put(self.url(path)).header("Authorization", &self.auth).send_json(body))
    }

    /// DELETE `path`; the answer's JSON.
    pub fn delete<T: DeserializeOwned>(&self, path: &str, what: &str) -> Result<T> {
        self.answer(what, self.agent.delete(self.url(path)).header("Authorization", &self.auth).call())
    }

    /// Uploads a component, with a progress bar on a terminal.
    pub fn upload(&self, wasm: &[u8], name: &str) -> Result<Artifact> {
        let bar = progress(Some(wasm.len() as u64), &format!("uploading {name}"));
        let mut reader = bar.wrap_read(wasm);
        let sent = self
            .agent
            .post(self.url("/artifacts"))
            .header("Authorization", &self.auth)
            .header("Content-Type", "application/wasm")
            .send(ureq::SendBody::from_reader(&mut reader as &mut dyn Read));
        bar.finish_and_clear();
        self.answer(&format!("artifact {name} was refused"), sent)
    }

    /// Prints `value` as JSON if asked; true if it did.
    pub fn json(&self, value: &impl Serialize) -> Result<bool> {
        if self.output == Output::Json {
            println!("{}", serde_json::to_string_pretty(value)?);
            return Ok(true);
        }
        Ok(false)
    }
}

/// A progress bar on stderr (hidden when stderr is not a terminal); a spinner
/// without `len`.
pub fn progress(len: Option<u64>, message: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match len {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec})").unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => {
            let b = ProgressBar::new_spinner();
            b.enable_steady_tick(Duration::from_millis(120));
            b
        }
    };
    bar.set_message(message.to_string());
    bar
}
