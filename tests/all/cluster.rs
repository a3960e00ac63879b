//! The control plane across real processes: a JobManager and TaskManagers over QUIC
//! with mutual TLS, heartbeats and lost-TaskManager detection, and refusal of peers
//! without the cluster's credentials.

use std::process::Stdio;
use std::time::{Duration, Instant};

use weir_testkit::cluster::{Processes, identity, remote, spawn_jobmanager, status};
use weir_testkit::{stderr, wait_until};

use crate::WEIR;

/// The status line of TaskManager `name` (registration order, and so ids, vary).
fn line_of(view: &str, name: &str) -> String {
    view.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_default().to_string()
}

#[test]
fn taskmanagers_register_heartbeat_and_are_detected_lost_and_strangers_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (creds, foreign) = (dir.path().join("cluster"), dir.path().join("other"));
    for d in [&creds, &foreign] {
        let o = WEIR.run(["cluster-init".as_ref(), d.as_os_str()]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let (jm, addr, rest) = spawn_jobmanager(WEIR, dir.path(), &creds, "127.0.0.1:0", "127.0.0.1:0", &[]);
    let mut procs = Processes(vec![jm]);

    // taskmanager-2 sits behind a (pretend) NAT: peers are told the address it advertises.
    for (name, slots, extra) in [("taskmanager-1", "2", &[][..]), ("taskmanager-2", "3", &["--advertise", "192.0.2.7:7000"][..])] {
        let tm = WEIR
            .command()
            .args(["taskmanager", "--jobmanager", &addr, "--slots", slots])
            .args(extra)
            .args(identity(&creds, name))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("taskmanager starts");
        procs.0.push(tm);
    }
    wait_until("both taskmanagers to register", || status(WEIR, &creds, &rest).contains("free slots: 5"));

    // A TaskManager from another cluster's CA fails the TLS handshake; a member whose
    // certificate is not a TaskManager's may not offer slots.
    let mut foreign_tm = vec!["taskmanager".to_string(), "--jobmanager".into(), addr.clone()];
    foreign_tm.extend(identity(&foreign, "taskmanager-1"));
    let o = WEIR.run(&foreign_tm);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("UnknownIssuer"), "{}", stderr(&o));
    let mut client_tm = vec!["taskmanager".to_string(), "--jobmanager".into(), addr.clone()];
    client_tm.extend(identity(&creds, "client"));
    let o = WEIR.run(&client_tm);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("only taskmanager certificates may offer slots"), "{}", stderr(&o));
    // Another cluster's api token cannot even ask.
    let mut foreign_status = vec!["status".to_string()];
    foreign_status.extend(remote(&foreign, &rest));
    let o = WEIR.run(&foreign_status);
    assert!(!o.status.success(), "a stranger cannot even ask");
    assert!(stderr(&o).contains("the bearer token is not this cluster's api token nor a tenant's (401)"), "{}", stderr(&o));
    let view = status(WEIR, &creds, &rest);
    assert_eq!(view.lines().filter(|l| l.starts_with("taskmanager")).count(), 2, "{view}");
    assert!(line_of(&view, "taskmanager-2").contains(" data=192.0.2.7:7000 "), "{view}");
    assert!(line_of(&view, "taskmanager-1").contains(" data=127.0.0.1:"), "{view}");

    // SIGKILL one TaskManager: the JobManager notices within its heartbeat timeout.
    let killed = Instant::now();
    procs.0[1].kill().expect("kill");
    wait_until("the killed taskmanager to be lost", || {
        let v = status(WEIR, &creds, &rest);
        line_of(&v, "taskmanager-1").contains(" lost ") && v.contains("free slots: 3")
    });
    assert!(killed.elapsed() < Duration::from_secs(15), "lost detection took {:?}", killed.elapsed());
    assert!(line_of(&status(WEIR, &creds, &rest), "taskmanager-2").contains("slots=3 used=0 alive"));
}
