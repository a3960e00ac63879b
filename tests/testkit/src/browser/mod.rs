//! A headless Chromium with one page, driven over the DevTools protocol (HTTP for the
//! page list, then a WebSocket), for the dashboard's end-to-end test.
//!
//! Chromium is required (`.ci/install-browser` installs it). The DevTools client
//! (HTTP, WebSocket frames, base64) is written out here on purpose: it is small, and it
//! keeps the dependencies to serde_json.

mod websocket;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::http;
use websocket::WebSocket;

/// How long the page may take to show something: generous, CI machines are loaded.
const DEADLINE: Duration = Duration::from_secs(120);
/// The window's width.
pub const WIDTH: u32 = 1400;
/// The window's height; a screenshot is as tall as the page (up to 6000).
pub const HEIGHT: u32 = 900;

/// The browser: `chromium`, `chromium-browser`, `google-chrome` or `$WEIR_CHROMIUM`.
pub fn find_chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("WEIR_CHROMIUM") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"] {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "Chromium is not installed (looked for chromium, chromium-browser, google-chrome on PATH, and $WEIR_CHROMIUM): \
         the dashboard test needs it; run .ci/install-browser (apt-get install -y chromium)"
    );
}

/// The browser process: SIGTERMed (Chromium then takes its helper processes down with
/// it), then killed if it lingers, when dropped, also when the launch itself fails.
struct BrowserProcess(Child);

impl Drop for BrowserProcess {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: signals our own child, which has not been reaped yet.
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A headless Chromium with one page, driven over the DevTools protocol.
pub struct Browser {
    page: WebSocket,
    next_id: u64,
    /// What Chromium wrote on stderr (for failure messages).
    stderr: mpsc::Receiver<String>,
    /// Where [`Self::screenshot`] saves.
    screenshots: PathBuf,
    _process: BrowserProcess,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts `exe` (see [`find_chromium`]); screenshots go to `screenshots`.
    pub fn launch(exe: &Path, screenshots: PathBuf) -> Self {
        Self::launch_with(exe, screenshots, &[])
    }

    /// [`Self::launch`] with extra Chromium switches (e.g. the one certificate key it
    /// should trust: `--ignore-certificate-errors-spki-list=PIN`).
    pub fn launch_with(exe: &Path, screenshots: PathBuf, extra: &[String]) -> Self {
        let profile = tempfile::tempdir().expect("profile dir");
        let child = Command::new(exe)
            .args([
                "--headless=new",
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--mute-audio",
            ])
            .args(extra)
            .arg(format!("--window-size={WIDTH},{HEIGHT}"))
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}; run .ci/install-browser", exe.display()));
        let mut process = BrowserProcess(child);
        // Read stderr on a thread for as long as the browser runs, so it never blocks on
        // a full pipe; hand every line over for the listening line and failure messages.
        let (tx, rx) = mpsc::channel();
        let err = process.0.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        let browser_ws = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => match line.split_once("DevTools listening on ") {
                    Some((_, url)) => break url.trim().to_string(),
                    None => seen.push(line),
                },
                Err(_) => {
                    let status = process.0.try_wait().ok().flatten();
                    panic!("{} printed no `DevTools listening on ws://...` line (exit: {status:?}); its stderr:\n{}", exe.display(), seen.join("\n"));
                }
            }
        };
        // ws://127.0.0.1:PORT/devtools/browser/ID -> the page target's socket.
        let authority = browser_ws.trim_start_matches("ws://").split('/').next().expect("authority").to_string();
        let mut page_ws = None;
        while page_ws.is_none() {
            let (status, body) = http::request("GET", &format!("http://{authority}/json/list"), &[], b"");
            let targets: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            page_ws = targets
                .as_array()
                .and_then(|t| t.iter().find(|t| t["type"] == "page"))
                .and_then(|t| t["webSocketDebuggerUrl"].as_str())
                .map(str::to_string);
            assert!(
                Instant::now() < deadline,
                "Chromium lists no page target (GET /json/list answered {status}: {})",
                String::from_utf8_lossy(&body)
            );
            if page_ws.is_none() {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let page = WebSocket::connect(&page_ws.expect("page socket"));
        let mut b = Self { page, next_id: 0, stderr: rx, screenshots, _process: process, _profile: profile };
        b.call("Page.enable", json!({}));
        b.call("Runtime.enable", json!({}));
        b.set_viewport(HEIGHT);
        b
    }

    /// One DevTools command; its `result`. Events in between are dropped.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.page.send(0x1, json!({"id": id, "method": method, "params": params}).to_string().as_bytes());
        loop {
            let msg: Value = serde_json::from_str(&self.page.recv()).expect("DevTools JSON");
            if msg["id"].as_u64() == Some(id) {
                if let Some(e) = msg.get("error") {
                    panic!("DevTools {method} failed: {e}");
                }
                return msg["result"].clone();
            }
        }
    }

    fn set_viewport(&mut self, height: u32) {
        self.call("Emulation.setDeviceMetricsOverride", json!({"width": WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": false}));
    }

    /// Opens `url` in the page.
    pub fn navigate(&mut self, url: &str) {
        if let Err(e) = self.try_navigate(url) {
            panic!("the browser could not open {url}: {e}");
        }
    }

    /// Opens `url` in the page; why not, as Chromium says it (`net::ERR_CERT_...`).
    pub fn try_navigate(&mut self, url: &str) -> Result<(), String> {
        let r = self.call("Page.navigate", json!({"url": url}));
        match r.get("errorText") {
            Some(e) => Err(e.as_str().map_or_else(|| e.to_string(), str::to_string)),
            None => Ok(()),
        }
    }

    /// Evaluates `expr` in the page; its value (JSON).
    pub fn eval(&mut self, expr: &str) -> Value {
        let r = self.call("Runtime.evaluate", json!({"expression": expr, "returnByValue": true, "awaitPromise": true}));
        if let Some(e) = r.get("exceptionDetails") {
            return json!({"exception": e["exception"]["description"].as_str().unwrap_or(&e.to_string())});
        }
        r["result"]["value"].clone()
    }

    /// Saves a PNG of the whole page as `name` in the screenshot directory; its path.
    pub fn screenshot(&mut self, name: &str) -> PathBuf {
        let height = self.eval("Math.max(document.documentElement.scrollHeight, document.body.scrollHeight)").as_u64().unwrap_or(u64::from(HEIGHT));
        let height = u32::try_from(height).unwrap_or(HEIGHT).clamp(HEIGHT, 6000);
        self.set_viewport(height);
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}));
        self.set_viewport(HEIGHT);
        let png = base64_decode(r["data"].as_str().expect("screenshot data"));
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        std::fs::create_dir_all(&self.screenshots).expect("screenshot dir");
        let path = self.screenshots.join(name);
        std::fs::write(&path, png).expect("write screenshot");
        eprintln!("screenshot: {}", path.display());
        path
    }

    /// Polls `check` on what the page shows until it returns `Ok`; past the deadline
    /// fails with what the page showed last, and a screenshot of it.
    pub fn wait_for<T>(&mut self, what: &str, mut check: impl FnMut(&mut Self) -> Result<T, String>) -> T {
        let deadline = Instant::now() + DEADLINE;
        loop {
            match check(self) {
                Ok(v) => return v,
                Err(showed) => {
                    if Instant::now() >= deadline {
                        let shot = self.screenshot(&format!("dashboard-failed-{}.png", what.replace(|c: char| !c.is_ascii_alphanumeric(), "-")));
                        let log: Vec<String> = self.stderr.try_iter().collect();
                        panic!(
                            "timed out after {DEADLINE:?} waiting for {what}; the page showed: {showed}\nscreenshot: {}\nchromium stderr (tail):\n{}",
                            shot.display(),
                            log.iter().rev().take(20).rev().cloned().collect::<Vec<_>>().join("\n")
                        );
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }

    /// A page value as JSON text: `JSON.stringify` of `expr` (an object), parsed.
    pub fn snapshot(&mut self, expr: &str) -> Value {
        let v = self.eval(&format!(
            "(() => {{ try {{ return JSON.stringify({expr}); }} catch (e) {{ return JSON.stringify({{exception: String(e)}}); }} }})()"
        ));
        match v.as_str() {
            Some(s) => serde_json::from_str(s).unwrap_or(Value::Null),
            None => v,
        }
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=' && !c.is_ascii_whitespace()).map(val).collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &v)| acc | (u32::from(v) << (18 - 6 * i)));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}
