//! Peers that send garbage or hold the wrong credentials: each is refused or cut off
//! with a logged error, and the cluster goes on running jobs.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::time::Duration;

use weir_net::{CaCert, Connection, Endpoint, NodeIdentity, quinn};
use weir_testkit::{TestCluster, stderr, wait_until};
use weir_types::deployment::ChannelId;
use weir_types::ids::JobId;

use crate::WEIR;

/// Data-plane address of TaskManager `name`, from `weir status`.
fn data_addr(status: &str, name: &str) -> SocketAddr {
    let line = status.lines().find(|l| l.starts_with(&format!("{name} "))).expect("taskmanager listed");
    line.split_whitespace().find_map(|w| w.strip_prefix("data=")).expect("data address").parse().expect("socket address")
}

fn endpoint(cluster: &TestCluster, name: &str) -> Endpoint {
    let id = NodeIdentity::load(&cluster.creds.join(name)).expect("identity");
    let ca = CaCert::load(&cluster.creds.join("ca.pem")).expect("ca");
    Endpoint::bind("127.0.0.1:0".parse().expect("addr"), &id, &ca).expect("bind")
}

/// The application close code the peer ended the connection with.
async fn close_code(conn: &Connection) -> Option<u64> {
    match tokio::time::timeout(Duration::from_secs(30), conn.closed()).await {
        Ok(quinn::ConnectionError::ApplicationClosed(c)) => Some(c.error_code.into_inner()),
        _ => None,
    }
}

#[test]
fn garbage_truncated_frames_and_strangers_are_cut_off_and_the_cluster_keeps_working() {
    let cluster = TestCluster::start(WEIR, &[("taskmanager-1", 1), ("taskmanager-2", 1)]);
    let tm1 = data_addr(&cluster.status(), "taskmanager-1");
    let jm: SocketAddr = cluster.jm.parse().expect("jobmanager address");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        // A cluster member (a third TaskManager's certificate) sends a frame header
        // announcing 4 GiB on a data stream.
        let rogue = endpoint(&cluster, "taskmanager-3");
        let conn = rogue.connect(tm1).await.expect("connect");
        let mut s = conn.quinn().open_uni().await.expect("stream");
        s.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).await.expect("write");
        assert_eq!(close_code(&conn).await, Some(u64::from(weir_net::CLOSE_PROTOCOL_ERROR)), "oversized frame");

        // A frame cut off in its header, then the stream ends.
        let conn = rogue.connect(tm1).await.expect("connect");
        let mut s = conn.quinn().open_uni().await.expect("stream");
        s.write_all(&[9, 0]).await.expect("write");
        s.finish().expect("finish");
        assert_eq!(close_code(&conn).await, Some(u64::from(weir_net::CLOSE_PROTOCOL_ERROR)), "truncated frame");

        // A client certificate may not exchange records at all.
        let client = endpoint(&cluster, "client");
        let conn = client.connect(tm1).await.expect("connect");
        assert_eq!(close_code(&conn).await, Some(u64::from(weir_net::CLOSE_UNAUTHORIZED)), "client on the data plane");

        // Garbage on the JobManager's control stream.
        let conn = client.connect(jm).await.expect("connect");
        let (mut s, _r) = conn.quinn().open_bi().await.expect("stream");
        s.write_all(&[3, 0, 0, 0, 0xde, 0xad, 0xbe]).await.expect("write");
        assert_eq!(close_code(&conn).await, Some(u64::from(weir_net::CLOSE_PROTOCOL_ERROR)), "undecodable control message");
    });
    assert!(cluster.log("taskmanager-1").contains("closing data connection: bad frame"), "{}", cluster.log("taskmanager-1"));
    assert!(cluster.log("taskmanager-1").contains("only taskmanagers exchange records"));
    assert!(cluster.log("jobmanager").contains("closing connection: bad frame"), "{}", cluster.log("jobmanager"));

    // Without the cluster's api token nobody submits.
    let foreign = cluster.dir.path().join("foreign");
    let o = WEIR.run([OsStr::new("cluster-init"), foreign.as_os_str()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let wasm = WEIR.example("wordcount");
    let o = WEIR
        .command()
        .args([OsStr::new("submit"), wasm.as_os_str(), OsStr::new("--jobmanager"), OsStr::new(&cluster.rest), OsStr::new("--token-file")])
        .arg(foreign.join("api-token"))
        .output()
        .expect("weir starts");
    assert!(!o.status.success(), "a stranger's submission must fail");
    assert!(stderr(&o).contains("was refused: the bearer token is not this cluster's api token nor a tenant's (401)"), "{}", stderr(&o));

    // Nothing else happened: both TaskManagers are alive and a job runs across them.
    let status = cluster.status();
    assert_eq!(status.matches(" alive ").count(), 2, "{status}");
    let input = cluster.dir.path().join("input.txt");
    std::fs::write(&input, "a b a\nb a c\n").expect("input");
    let output = cluster.dir.path().join("out");
    let o = cluster.client(&[
        OsStr::new("submit"),
        wasm.as_os_str(),
        OsStr::new("-p"),
        OsStr::new("2"),
        OsStr::new("-i"),
        input.as_os_str(),
        OsStr::new("--output-dir"),
        output.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    wait_until("the job to be listed as finished", || cluster.status().contains(" FINISHED "));

    // A member injecting an invalid record batch into a running job's channel: the
    // connection is cut and the job fails with the reason instead of taking garbage in.
    let slow = WEIR.example("slow_map");
    let o = cluster.client(&[OsStr::new("submit"), slow.as_os_str(), OsStr::new("-p"), OsStr::new("2"), OsStr::new("--detach")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let job = String::from_utf8_lossy(&o.stdout).split_whitespace().nth(1).expect("job id").to_string();
    // The TaskManager running subtask 0 of the slow operator, from the placement printed.
    let placement = stderr(&o);
    let line = placement.lines().find(|l| l.trim_start().starts_with("slow")).expect("placement of the slow operator");
    let target = line.split(": ").nth(1).and_then(|tms| tms.split(", ").next()).expect("a taskmanager");
    let target = data_addr(&cluster.status(), target);
    wait_until("the job to run", || cluster.status().contains(" RUNNING "));
    rt.block_on(async {
        let rogue = endpoint(&cluster, "taskmanager-3");
        let conn = rogue.connect(target).await.expect("connect");
        // Subtask 0 of both vertices share a slot, so its remote producer is subtask 1.
        let header = ChannelId { run: job.parse::<JobId>().expect("a job id").run(0), vertex: 1, subtask: 0, from_vertex: 0, from_subtask: 1 };
        let mut send = weir_net::open_data_stream(&conn, &header).await.expect("stream");
        // A batch frame (tag 0) whose record lengths run past its end.
        send.send(&[[0u8].as_slice(), &[0xff; 64]].concat()).await.expect("send");
        assert_eq!(close_code(&conn).await, Some(u64::from(weir_net::CLOSE_PROTOCOL_ERROR)), "invalid batch");
    });
    wait_until("the job to fail", || {
        let s = cluster.status();
        s.lines().any(|l| l.contains(&job) && l.contains(" FAILED ") && l.contains("invalid record batch"))
    });
    assert!(cluster.status().contains("free slots: 2"));
}
