//! The web dashboard in a real browser: a real cluster runs a job submitted through the
//! REST API, and headless Chromium, driven over the DevTools protocol, must show it:
//! its row STARTED, its graph with the right vertex boxes, and records/s that are
//! positive and move. Screenshots land in `$CARGO_TARGET_TMPDIR/screenshots/`.
//!
//! Chromium is required (`.ci/install-browser` installs it); without it this test fails.
//! The DevTools client (HTTP, WebSocket frames, base64) is written out here on purpose:
//! it is small, and it keeps the test's dependencies to serde_json.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cluster::TestCluster;
use crate::support::example;

/// How long the page may take to show something: generous, CI machines are loaded.
const DEADLINE: Duration = Duration::from_secs(120);
const WIDTH: u32 = 1400;
const HEIGHT: u32 = 900;

fn screenshot_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_TARGET_TMPDIR"), "/screenshots/"))
}

// ------------------------------------------------------------------ HTTP/1.1, tiny

/// `(status, body)` of one request over a fresh connection. The body is read by its
/// Content-Length or chunks: Chromium's DevTools server keeps connections open.
fn http(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Vec<u8>) {
    let rest = url.strip_prefix("http://").unwrap_or_else(|| panic!("not an http:// URL: {url}"));
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    let mut stream = TcpStream::connect(authority).unwrap_or_else(|e| panic!("connect to {authority} for {method} {url}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(60))).expect("read timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).expect("write request");
    stream.write_all(body).expect("write body");
    let fail = |e: std::io::Error| -> ! { panic!("read the response to {method} {url}: {e}") };
    let mut r = BufReader::new(stream);
    let mut status_line = String::new();
    r.read_line(&mut status_line).unwrap_or_else(|e| fail(e));
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{method} {url}: bad status line {status_line:?}"));
    let (mut length, mut chunked) = (None, false);
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap_or_else(|e| fail(e));
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':').unwrap_or((line, ""));
        match k.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = v.trim().parse::<usize>().ok(),
            "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
            _ => {}
        }
    }
    let mut payload = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).unwrap_or_else(|e| fail(e));
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16).unwrap_or(0);
            let mut chunk = vec![0u8; n + 2];
            r.read_exact(&mut chunk).unwrap_or_else(|e| fail(e));
            if n == 0 {
                break;
            }
            payload.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = length {
        payload.resize(n, 0);
        r.read_exact(&mut payload).unwrap_or_else(|e| fail(e));
    } else {
        r.read_to_end(&mut payload).unwrap_or_else(|e| fail(e));
    }
    (status, payload)
}

/// A JSON API call; panics naming the call unless the status is `expect`.
fn api(cluster: &TestCluster, method: &str, path: &str, content_type: &str, body: &[u8], expect: u16) -> Value {
    let auth = format!("Bearer {}", cluster.token);
    let url = format!("{}{path}", cluster.rest);
    let (status, body) = http(method, &url, &[("Authorization", &auth), ("Content-Type", content_type)], body);
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, expect, "{method} {path} answered {status}: {text}");
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"))
}

// ------------------------------------------------------------------ WebSocket client, tiny

struct WebSocket {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl WebSocket {
    fn connect(url: &str) -> Self {
        let rest = url.strip_prefix("ws://").unwrap_or_else(|| panic!("not a ws:// URL: {url}"));
        let (authority, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
        let stream = TcpStream::connect(authority).unwrap_or_else(|e| panic!("connect to the DevTools socket {url}: {e}"));
        stream.set_read_timeout(Some(Duration::from_secs(90))).expect("read timeout");
        let mut writer = stream.try_clone().expect("clone stream");
        // No Origin header: Chromium refuses DevTools connections from web origins.
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: d2Vpci1kYXNoYm9hcmQtdA==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        writer.write_all(req.as_bytes()).expect("websocket handshake");
        let mut reader = BufReader::new(stream);
        let mut status = String::new();
        reader.read_line(&mut status).expect("handshake status");
        assert!(status.contains(" 101 "), "the DevTools socket {url} refused the upgrade: {status}");
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("handshake header");
            if line.trim().is_empty() {
                break;
            }
        }
        Self { reader, writer }
    }

    fn send(&mut self, opcode: u8, payload: &[u8]) {
        let mut frame = vec![0x80 | opcode];
        let len = payload.len();
        if len < 126 {
            frame.push(0x80 | len as u8);
        } else if len <= 0xFFFF {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let mask = [0x5a, 0x17, 0xc3, 0x8e];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.writer.write_all(&frame).expect("websocket write");
    }

    /// The next complete text message (pings answered, fragments joined).
    fn recv(&mut self) -> String {
        let mut message = Vec::new();
        loop {
            let mut h = [0u8; 2];
            self.reader.read_exact(&mut h).expect("websocket read (did the browser die or hang?)");
            let (fin, opcode) = (h[0] & 0x80 != 0, h[0] & 0x0F);
            let mut len = u64::from(h[1] & 0x7F);
            if len == 126 {
                let mut b = [0u8; 2];
                self.reader.read_exact(&mut b).expect("websocket read");
                len = u64::from(u16::from_be_bytes(b));
            } else if len == 127 {
                let mut b = [0u8; 8];
                self.reader.read_exact(&mut b).expect("websocket read");
                len = u64::from_be_bytes(b);
            }
            let mask = if h[1] & 0x80 != 0 {
                let mut m = [0u8; 4];
                self.reader.read_exact(&mut m).expect("websocket read");
                Some(m)
            } else {
                None
            };
            let mut payload = vec![0u8; usize::try_from(len).expect("frame size")];
            self.reader.read_exact(&mut payload).expect("websocket read");
            if let Some(m) = mask {
                payload.iter_mut().enumerate().for_each(|(i, b)| *b ^= m[i % 4]);
            }
            match opcode {
                0x9 => self.send(0xA, &payload),
                0xA => {}
                0x8 => panic!("the browser closed the DevTools socket"),
                _ => {
                    message.extend_from_slice(&payload);
                    if fin {
                        return String::from_utf8(message).expect("DevTools messages are UTF-8");
                    }
                }
            }
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

// ------------------------------------------------------------------ Chromium

/// The browser: `chromium`, `chromium-browser`, `google-chrome` or `$WEIR_CHROMIUM`.
fn find_chromium() -> PathBuf {
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
struct Browser {
    page: WebSocket,
    next_id: u64,
    /// What Chromium wrote on stderr (for failure messages).
    stderr: mpsc::Receiver<String>,
    _process: BrowserProcess,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn launch(exe: &Path) -> Self {
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
            let (status, body) = http("GET", &format!("http://{authority}/json/list"), &[], b"");
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
        let mut b = Self { page, next_id: 0, stderr: rx, _process: process, _profile: profile };
        b.call("Page.enable", json!({}));
        b.call("Runtime.enable", json!({}));
        b.set_viewport(HEIGHT);
        b
    }

    /// One DevTools command; its `result`. Events in between are dropped.
    fn call(&mut self, method: &str, params: Value) -> Value {
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

    fn navigate(&mut self, url: &str) {
        let r = self.call("Page.navigate", json!({"url": url}));
        if let Some(e) = r.get("errorText") {
            panic!("the browser could not open {url}: {e}");
        }
    }

    /// Evaluates `expr` in the page; its value (JSON).
    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call("Runtime.evaluate", json!({"expression": expr, "returnByValue": true, "awaitPromise": true}));
        if let Some(e) = r.get("exceptionDetails") {
            return json!({"exception": e["exception"]["description"].as_str().unwrap_or(&e.to_string())});
        }
        r["result"]["value"].clone()
    }

    /// Saves a PNG of the whole page as `name` under the screenshot directory.
    fn screenshot(&mut self, name: &str) -> PathBuf {
        let height = self.eval("Math.max(document.documentElement.scrollHeight, document.body.scrollHeight)").as_u64().unwrap_or(u64::from(HEIGHT));
        let height = u32::try_from(height).unwrap_or(HEIGHT).clamp(HEIGHT, 6000);
        self.set_viewport(height);
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}));
        self.set_viewport(HEIGHT);
        let png = base64_decode(r["data"].as_str().expect("screenshot data"));
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let path = dir.join(name);
        std::fs::write(&path, png).expect("write screenshot");
        eprintln!("screenshot: {}", path.display());
        path
    }

    /// Polls `check` on what the page shows until it returns `Ok`; past the deadline
    /// fails with what the page showed last, and a screenshot of it.
    fn wait_for<T>(&mut self, what: &str, mut check: impl FnMut(&mut Self) -> Result<T, String>) -> T {
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
}

/// A page value as JSON text: `JSON.stringify` of `expr` (an object), parsed.
fn snapshot(b: &mut Browser, expr: &str) -> Value {
    let v =
        b.eval(&format!("(() => {{ try {{ return JSON.stringify({expr}); }} catch (e) {{ return JSON.stringify({{exception: String(e)}}); }} }})()"));
    match v.as_str() {
        Some(s) => serde_json::from_str(s).unwrap_or(Value::Null),
        None => v,
    }
}

/// Common to every view: the connection indicator and the token dialog.
const CHROME: &str = "conn: document.querySelector('#conn')?.dataset.conn, connText: document.querySelector('#conn-text')?.textContent, \
    view: document.querySelector('#view')?.dataset.view, \
    tokenDialog: !document.querySelector('#token-dialog')?.classList.contains('hidden'), \
    tokenError: document.querySelector('#token-error')?.textContent";

/// A records/s text as the page shows it ("12,345"), as a number.
fn rate_of(text: &str) -> Option<f64> {
    text.replace(',', "").trim().parse().ok()
}

fn percent_encode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

#[test]
fn the_dashboard_shows_a_running_job_with_its_graph_and_moving_throughput() {
    // First, so a machine without a browser fails at once, saying so.
    let chromium = find_chromium();
    let cluster = TestCluster::start(&[("taskmanager-1", 2), ("taskmanager-2", 2)]);

    // Upload and submit through the REST API, as the dashboard's own form would.
    let wasm = std::fs::read(example("slow_map")).expect("slow_map.wasm");
    let artifact = api(&cluster, "POST", "/api/v1/artifacts", "application/wasm", &wasm, 201);
    let artifact_id = artifact["id"].as_str().unwrap_or_else(|| panic!("artifact without an id: {artifact}")).to_string();
    let spec = json!({"artifact": artifact_id, "parallelism": 2, "args": {"work": "5000"}});
    let job = api(&cluster, "POST", "/api/v1/jobs", "application/json", spec.to_string().as_bytes(), 201);
    let job_id = job["metadata"]["id"].as_str().unwrap_or_else(|| panic!("job without metadata.id: {job}")).to_string();

    let mut browser = Browser::launch(&chromium);
    let base = cluster.rest.trim_end_matches('/').to_string();

    // Overview: the token from the fragment is taken, the cluster and the job are shown.
    browser.navigate(&format!("{base}/#token={}", percent_encode(&cluster.token)));
    let row = format!("[data-job=\"{job_id}\"]");
    browser.wait_for("the overview to show 2 TaskManagers and the running job", |b| {
        let s = snapshot(
            b,
            &format!(
                "{{{CHROME}, hash: location.hash, taskmanagers: document.querySelector('[data-stat=taskmanagers] .value')?.textContent, \
                 slots: document.querySelector('[data-stat=slots] .value')?.textContent, \
                 running: document.querySelector('[data-stat=running] .value')?.textContent, \
                 jobRowState: document.querySelector('#ov-running {row} .state')?.textContent}}"
            ),
        );
        let ok = s["taskmanagers"] == "2"
            && s["running"].as_str().and_then(|r| r.parse::<u32>().ok()).is_some_and(|r| r >= 1)
            && s["jobRowState"] == "STARTED";
        if ok && s["hash"].as_str().is_some_and(|h| h.contains("token=")) {
            return Err(format!("the token stayed in the address bar: {s}"));
        }
        if ok { Ok(()) } else { Err(s.to_string()) }
    });
    browser.screenshot("dashboard-overview.png");

    // Jobs list: the job's row says STARTED (the engine: RUNNING).
    browser.navigate(&format!("{base}/#/jobs"));
    browser.wait_for("the job's row to say STARTED and RUNNING", |b| {
        let s = snapshot(
            b,
            &format!(
                "{{{CHROME}, rows: [...document.querySelectorAll('#jobs-list tr[data-job]')].map(r => ({{id: r.dataset.job, state: r.querySelector('.state')?.textContent, \
                 engine: r.querySelector('.engine')?.textContent}})), mine: {{state: document.querySelector('#jobs-list {row} .state')?.textContent, \
                 engine: document.querySelector('#jobs-list {row} .engine')?.textContent}}}}"
            ),
        );
        if s["mine"]["state"] == "STARTED" && s["mine"]["engine"] == "RUNNING" { Ok(()) } else { Err(s.to_string()) }
    });
    browser.screenshot("dashboard-jobs.png");

    // Job view: slow_map is a generator, rebalanced to the slow map chained with its
    // discard sink: two vertex boxes and one REBALANCE edge.
    browser.navigate(&format!("{base}/#/jobs/{job_id}"));
    let read_graph = |b: &mut Browser| {
        snapshot(
            b,
            &format!(
                "{{{CHROME}, state: document.querySelector('#job-state .state')?.textContent, \
                 vertices: [...document.querySelectorAll('#graph svg .vertex')].map(g => ({{id: g.dataset.vertex, name: g.querySelector('.vname')?.textContent, \
                 rate: g.querySelector('.rate')?.textContent, level: g.dataset.level}})), \
                 edges: [...document.querySelectorAll('#graph svg .edge')].map(e => e.dataset.partitioning), \
                 graph: document.querySelector('#graph')?.textContent.slice(0, 200)}}"
            ),
        )
    };
    let first = browser.wait_for("the job graph: 2 vertex boxes with positive records/s", |b| {
        let s = read_graph(b);
        let vs = s["vertices"].as_array().cloned().unwrap_or_default();
        let positive = vs.iter().all(|v| v["rate"].as_str().and_then(rate_of).is_some_and(|r| r > 0.0));
        if s["state"] == "STARTED" && vs.len() == 2 && positive { Ok(s) } else { Err(s.to_string()) }
    });
    assert_eq!(first["edges"], json!(["REBALANCE"]), "the job graph's edges: {first}");
    let names: Vec<&str> = first["vertices"].as_array().expect("vertices").iter().filter_map(|v| v["name"].as_str()).collect();
    assert!(names.iter().any(|n| n.starts_with("numbers")) && names.iter().any(|n| n.contains("slow")), "vertex names: {names:?}; the page: {first}");

    // Moving throughput: every vertex's records/s text changes between reads a second
    // or more apart, and stays positive.
    let t0 = Instant::now();
    let before: Vec<(String, String)> = first["vertices"]
        .as_array()
        .expect("vertices")
        .iter()
        .map(|v| (v["id"].as_str().unwrap_or("").to_string(), v["rate"].as_str().unwrap_or("").to_string()))
        .collect();
    let mut moved = std::collections::BTreeSet::new();
    browser.wait_for("every vertex's records/s to change while staying positive", |b| {
        let s = read_graph(b);
        let now = s["vertices"].as_array().cloned().unwrap_or_default();
        for v in &now {
            let (id, rate) = (v["id"].as_str().unwrap_or(""), v["rate"].as_str().unwrap_or(""));
            if !rate_of(rate).is_some_and(|r| r > 0.0) {
                return Err(format!("vertex {id} shows records/s {rate:?} (not a positive number): {s}"));
            }
            if t0.elapsed() >= Duration::from_secs(1) && before.iter().any(|(i, r)| i == id && r != rate) {
                moved.insert(id.to_string());
            }
        }
        if moved.len() == before.len() {
            Ok(())
        } else {
            Err(format!("first read {before:?}, {:?} later {s}; moved so far: {moved:?}", t0.elapsed()))
        }
    });
    browser.screenshot("dashboard-job.png");

    // A wrong token: the API's 401 brings up the token form with the server's message.
    browser.navigate(&format!("{base}/#/overview&token=not-the-token"));
    browser.wait_for("the token form with the 401 message", |b| {
        let s = snapshot(b, &format!("{{{CHROME}}}"));
        if s["tokenDialog"] == true && s["tokenError"].as_str().is_some_and(|e| !e.is_empty()) { Ok(()) } else { Err(s.to_string()) }
    });
    browser.screenshot("dashboard-token.png");
    drop(browser);
    assert!(Path::new(&screenshot_dir()).join("dashboard-job.png").exists());
}
