//! TLS on the REST API (issue 19): a JobManager whose REST API is on this machine's
//! non-loopback address serves HTTPS with a certificate the cluster CA issues; the CLI
//! trusts that CA (`--ca`, `WEIR_CA`, or ca.pem beside `--token-file`) and nothing
//! else; plain HTTP there is refused before any handler; plain HTTP off loopback needs
//! `--rest-plain-http`; Chromium renders the dashboard over HTTPS trusting only the
//! served key; a TaskManager's `/metrics` off loopback is HTTPS with its node
//! certificate.

use std::ffi::OsStr;
use std::process::Output;

use serde_json::Value;
use weir_testkit::browser::{Browser, find_chromium};
use weir_testkit::cluster::{Processes, spawn_jobmanager};
use weir_testkit::{TestCluster, http, non_loopback_ip, stderr};

use crate::WEIR;

/// A cluster with one TaskManager whose REST API is on this machine's non-loopback
/// address.
fn tls_cluster() -> TestCluster {
    let ip = non_loopback_ip();
    let cluster = TestCluster::start_with_rest(WEIR, &[("taskmanager-1", 2)], &[], &format!("{ip}:0"));
    assert!(cluster.rest.starts_with(&format!("https://{ip}:")), "the REST API off loopback is not https: {}", cluster.rest);
    cluster
}

/// `weir ARGS --jobmanager REST`, with the token passed by value (so no ca.pem is found
/// beside a token file) and `envs`.
fn cli(cluster: &TestCluster, args: &[&str], envs: &[(&str, &OsStr)]) -> Output {
    let mut c = WEIR.command();
    c.args(args).args(["--jobmanager", &cluster.rest, "--token", &cluster.token]);
    c.env_remove("WEIR_CA");
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().expect("weir starts")
}

fn ok(o: Output, what: &str) -> String {
    assert!(o.status.success(), "{what}: {}", stderr(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The job ids `weir list --output json` shows, over https with the CA.
fn job_ids(cluster: &TestCluster) -> Vec<String> {
    let ca = cluster.creds.join("ca.pem");
    let list: Value =
        serde_json::from_str(&ok(cli(cluster, &["list", "--output", "json"], &[("WEIR_CA", ca.as_os_str())]), "weir list")).expect("json");
    list["jobs"].as_array().expect("jobs").iter().map(|j| j["metadata"]["id"].as_str().expect("id").to_string()).collect()
}

#[test]
fn the_cli_speaks_https_off_loopback_with_the_cluster_ca_and_plain_http_never_reaches_a_handler() {
    let cluster = tls_cluster();
    let ca = cluster.creds.join("ca.pem");
    let ca_arg = ca.display().to_string();

    // (a) Submit with --ca, list with WEIR_CA; TestCluster's own `weir status` already
    // went over https trusting ca.pem beside its --token-file.
    let slow = WEIR.example("slow_map");
    let out = ok(
        cli(&cluster, &["submit", slow.to_str().expect("path"), "--detach", "--arg", "n=100000000", "--arg", "work=50", "--ca", &ca_arg], &[]),
        "weir submit over https",
    );
    let job = out.split_whitespace().nth(1).expect("job id").to_string();
    assert_eq!(job_ids(&cluster), vec![job.clone()]);
    cluster.wait_until("the job to run", || cluster.status().contains("RUNNING"));

    // (b) Without the CA (the token given by value, no WEIR_CA), and with another
    // cluster's CA: a certificate error naming the URL, the cause and the remedy.
    let other = tempfile::tempdir().expect("tempdir");
    let o = WEIR.run(["cluster-init".as_ref(), other.path().join("c").as_os_str()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let other_ca = other.path().join("c/ca.pem");
    for (what, o) in
        [("no CA", cli(&cluster, &["list"], &[])), ("another cluster's CA", cli(&cluster, &["list"], &[("WEIR_CA", other_ca.as_os_str())]))]
    {
        assert!(!o.status.success(), "{what}: weir list over https succeeded: {}", String::from_utf8_lossy(&o.stdout));
        let err = stderr(&o);
        assert!(err.contains(&format!("the jobmanager at {} presented a certificate this client does not trust", cluster.rest)), "{what}: {err}");
        assert!(err.contains("UnknownIssuer") && err.contains("--ca"), "{what}: {err}");
    }

    // (c) Plain HTTP to the TLS port, with the admin's token and well-formed bodies:
    // refused before any handler, so no job and no tenant comes of it.
    let plain = cluster.rest.replacen("https://", "http://", 1);
    let auth = format!("Bearer {}", cluster.token);
    let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    for (path, body) in [("/api/v1/tenants", r#"{"name":"mallory"}"#.to_string()), ("/api/v1/jobs/{job}/cancel", String::new()), ("/", String::new())]
    {
        let url = format!("{plain}{}", path.replace("{job}", &job));
        let (status, answer) = http::request("POST", &url, &headers, body.as_bytes());
        let answer = String::from_utf8_lossy(&answer);
        assert_eq!(status, 400, "POST {url} in plain HTTP: {answer}");
        assert!(answer.contains("this port speaks HTTPS only"), "POST {url}: {answer}");
    }
    let tenants = ok(cli(&cluster, &["tenant", "list", "--ca", &ca_arg], &[]), "weir tenant list");
    assert!(!tenants.contains("mallory"), "a plain-HTTP request created a tenant: {tenants}");
    assert_eq!(job_ids(&cluster), vec![job.clone()]);
    let status = cluster.status();
    assert!(status.contains("RUNNING") && status.contains("state=STARTED"), "a plain-HTTP cancel reached the job: {status}");
    // The port still serves https after the refusals.
    ok(cli(&cluster, &["cancel", &job, "--ca", &ca_arg], &[]), "weir cancel over https");
}

#[test]
fn plain_http_off_loopback_needs_the_flag_and_a_missing_certificate_never_falls_back_to_it() {
    let ip = non_loopback_ip();
    let dir = tempfile::tempdir().expect("tempdir");
    let creds = dir.path().join("c");
    let o = WEIR.run(["cluster-init".as_ref(), creds.as_os_str()]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Without the CA's key the JobManager cannot issue the REST certificate.
    std::fs::remove_file(creds.join("ca.key")).expect("remove ca.key");

    let refused = WEIR
        .command()
        .args(["jobmanager", "--listen", "127.0.0.1:0", "--rest-listen", &format!("{ip}:0"), "--identity"])
        .arg(creds.join("jobmanager"))
        .output()
        .expect("weir starts");
    let err = stderr(&refused);
    assert!(!refused.status.success(), "the jobmanager started without a certificate off loopback: {}", String::from_utf8_lossy(&refused.stdout));
    assert!(!String::from_utf8_lossy(&refused.stdout).contains("rest api on"), "it served something: {}", String::from_utf8_lossy(&refused.stdout));
    for needle in [format!("the REST API on {ip}:0 is not on loopback"), "ca.key".into(), "--rest-cert".into(), "--rest-plain-http".into()] {
        assert!(err.contains(&needle), "the refusal does not say {needle:?}: {err}");
    }

    // With the flag it starts, in plain HTTP, and serves the token's holder.
    let (jm, _, rest) = spawn_jobmanager(WEIR, dir.path(), &creds, "127.0.0.1:0", &format!("{ip}:0"), &["--rest-plain-http".to_string()]);
    let _jm = Processes(vec![jm]);
    assert!(rest.starts_with(&format!("http://{ip}:")), "{rest}");
    let token = std::fs::read_to_string(creds.join("api-token")).expect("token");
    let (status, body) = http::request("GET", &format!("{rest}/api/v1/jobs"), &[("Authorization", &format!("Bearer {}", token.trim()))], b"");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let o = WEIR.command().args(["list", "--jobmanager", &rest, "--token", token.trim()]).output().expect("weir starts");
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn chromium_renders_the_dashboard_over_https_trusting_only_the_served_key() {
    // First, so a machine without a browser fails at once, saying so.
    let chromium = find_chromium();
    let cluster = tls_cluster();
    let slow = WEIR.example("slow_map");
    let o = cluster.client(&[OsStr::new("submit"), slow.as_os_str(), OsStr::new("--detach"), OsStr::new("--arg"), OsStr::new("n=100000000")]);
    let job = ok(o, "weir submit").split_whitespace().nth(1).expect("job id").to_string();

    // The key the JobManager serves, as it logs it; Chromium trusts that key alone (a
    // certificate with any other key is still an error), not every certificate.
    let mut pin = String::new();
    cluster.wait_until("the jobmanager to log its certificate's key", || {
        let log = cluster.log("jobmanager");
        pin = log.split("public key sha256//").nth(1).and_then(|r| r.split_whitespace().next()).unwrap_or_default().to_string();
        !pin.is_empty()
    });
    // Trusting another key, Chromium refuses the page: the switch is no blanket ignore.
    let other_key = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
    let mut wrong =
        Browser::launch_with(&chromium, WEIR.tmp_dir().join("screenshots"), &[format!("--ignore-certificate-errors-spki-list={other_key}")]);
    let refused = wrong.try_navigate(&format!("{}/", cluster.rest));
    assert!(refused.as_ref().is_err_and(|e| e.contains("ERR_CERT")), "Chromium opened the dashboard trusting another key: {refused:?}");
    drop(wrong);

    let mut browser = Browser::launch_with(&chromium, WEIR.tmp_dir().join("screenshots"), &[format!("--ignore-certificate-errors-spki-list={pin}")]);
    let token: String =
        cluster.token.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect();
    browser.navigate(&format!("{}/#token={token}", cluster.rest));
    let row = format!("[data-job=\"{job}\"]");
    browser.wait_for("the overview over https to show the running job", |b| {
        let s = b.snapshot(&format!(
            "{{protocol: location.protocol, conn: document.querySelector('#conn')?.dataset.conn, \
              taskmanagers: document.querySelector('[data-stat=taskmanagers] .value')?.textContent, \
              jobRowState: document.querySelector('#ov-running {row} .state')?.textContent}}"
        ));
        if s["protocol"] == "https:" && s["taskmanagers"] == "1" && s["jobRowState"] == "STARTED" { Ok(()) } else { Err(s.to_string()) }
    });
    browser.screenshot("dashboard-https.png");
}

/// Runs `openssl ARGS` in `dir`.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let o = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("openssl is installed");
    assert!(o.status.success(), "openssl {args:?}: {}", stderr(&o));
}

#[test]
fn a_given_certificate_is_served_instead_and_its_ca_is_the_one_to_trust() {
    let ip = non_loopback_ip();
    let dir = tempfile::tempdir().expect("tempdir");
    let creds = dir.path().join("c");
    let o = WEIR.run(["cluster-init".as_ref(), creds.as_os_str()]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The operator's own CA and a certificate for the address, as a company CA would
    // issue them.
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let ca_args = ["req", "-x509", "-keyout", "own-ca.key", "-out", "own-ca.pem", "-subj", "/CN=own ca", "-days", "2"];
    openssl(dir.path(), &[&ca_args[..], &ec, &["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"]].concat());
    openssl(dir.path(), &[&["req", "-keyout", "rest.key", "-out", "rest.csr", "-subj", "/CN=rest"][..], &ec].concat());
    std::fs::write(dir.path().join("ext.cnf"), format!("subjectAltName=IP:{ip}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"))
        .expect("ext.cnf");
    let sign = [
        "x509",
        "-req",
        "-in",
        "rest.csr",
        "-CA",
        "own-ca.pem",
        "-CAkey",
        "own-ca.key",
        "-CAcreateserial",
        "-out",
        "rest.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ];
    openssl(dir.path(), &sign);

    let given = ["--rest-cert", "rest.pem", "--rest-key", "rest.key"]
        .map(|a| if a.starts_with("--") { a.to_string() } else { dir.path().join(a).display().to_string() });
    let (jm, _, rest) = spawn_jobmanager(WEIR, dir.path(), &creds, "127.0.0.1:0", &format!("{ip}:0"), &given);
    let _jm = Processes(vec![jm]);
    assert!(rest.starts_with(&format!("https://{ip}:")), "{rest}");
    let list = |ca: &std::path::Path| {
        WEIR.command()
            .args(["list", "--jobmanager", &rest, "--token-file"])
            .arg(creds.join("api-token"))
            .arg("--ca")
            .arg(ca)
            .output()
            .expect("weir starts")
    };
    let o = list(&dir.path().join("own-ca.pem"));
    assert!(o.status.success(), "with the given certificate's CA: {}", stderr(&o));
    let o = list(&creds.join("ca.pem"));
    assert!(!o.status.success() && stderr(&o).contains("UnknownIssuer"), "the cluster CA trusted a certificate it did not issue: {}", stderr(&o));
}

/// A TaskManager process with `--metrics-listen LISTEN` and `extra`, and the URL its
/// metrics line names.
fn metrics_taskmanager(cluster: &TestCluster, name: &str, listen: &str, extra: &[&str]) -> (Processes, String) {
    let mut tm = WEIR
        .command()
        .args(["taskmanager", "--jobmanager", &cluster.jm, "--slots", "1", "--metrics-listen", listen])
        .args(extra)
        .arg("--identity")
        .arg(cluster.creds.join(name))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("taskmanager starts");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(tm.stdout.take().expect("stdout")));
    let url = lines.find_map(|l| l.ok()?.strip_prefix("metrics on ").map(str::to_string)).expect("metrics line");
    (Processes(vec![tm]), url)
}

/// `GET /metrics` over TLS to `addr` by `openssl s_client`, verifying the certificate
/// against `ca` and the name `weir.cluster`: the answer, or the failure's output.
fn openssl_get(addr: &str, ca: &std::path::Path) -> Result<String, String> {
    use std::io::Write;
    let mut c = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            addr,
            "-servername",
            "weir.cluster",
            "-verify_hostname",
            "weir.cluster",
            "-verify_return_error",
            "-quiet",
            "-CAfile",
        ])
        .arg(ca)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("openssl is installed");
    let request = b"GET /metrics HTTP/1.1\r\nHost: weir.cluster\r\nConnection: close\r\n\r\n";
    // A refused handshake may close stdin first.
    let _ = c.stdin.take().expect("stdin").write_all(request);
    let o = c.wait_with_output().expect("openssl runs");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    match o.status.success() && out.starts_with("HTTP/1.1 200") {
        true => Ok(out),
        false => Err(format!("{out}{}", stderr(&o))),
    }
}

#[test]
fn a_taskmanagers_metrics_off_loopback_are_https_with_its_node_certificate() {
    let ip = non_loopback_ip();
    let cluster = TestCluster::start(WEIR, &[]);
    let (_tm, url) = metrics_taskmanager(&cluster, "taskmanager-1", &format!("{ip}:0"), &[]);
    let addr =
        url.strip_prefix("https://").and_then(|u| u.strip_suffix("/metrics")).unwrap_or_else(|| panic!("metrics off loopback are not https: {url}"));

    let text = openssl_get(addr, &cluster.creds.join("ca.pem")).expect("the metrics over https, trusting the cluster CA");
    assert!(text.contains("weir_taskmanager_slots 1"), "{text}");

    // Another cluster's CA does not vouch for it.
    let other = tempfile::tempdir().expect("tempdir");
    let o = WEIR.run(["cluster-init".as_ref(), other.path().join("c").as_os_str()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let refused = openssl_get(addr, &other.path().join("c/ca.pem")).expect_err("another cluster's CA verified the taskmanager");
    assert!(refused.contains("verify error") || refused.contains("certificate verify failed"), "{refused}");

    // Plain HTTP there is answered with a pointer to https, never the metrics.
    let (status, body) = http::request("GET", &format!("http://{addr}/metrics"), &[], b"");
    let body = String::from_utf8_lossy(&body);
    assert!(status == 400 && body.contains("this port speaks HTTPS only"), "{status} {body}");

    // With --metrics-plain-http it serves plain HTTP off loopback.
    let (_plain, url) = metrics_taskmanager(&cluster, "taskmanager-2", &format!("{ip}:0"), &["--metrics-plain-http"]);
    assert!(url.starts_with(&format!("http://{ip}:")), "{url}");
    let (status, body) = http::request("GET", &url, &[], b"");
    assert!(status == 200 && String::from_utf8_lossy(&body).contains("weir_taskmanager_slots 1"), "{status}");
}
