//! Two nodes of one cluster connect and talk both ways, on control and data streams.

mod common;

use common::{Msg, bind, cluster, within};
use weir_net::{accept_data_stream, open_data_stream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_ca_nodes_exchange_messages_both_ways() {
    let (ca, ids) = cluster(&["jobmanager", "tm-1"]);
    let jm = bind(&ids[0], &ca);
    let tm = bind(&ids[1], &ca);
    let jm_addr = jm.local_addr().expect("addr");

    let server = tokio::spawn(async move {
        let conn = within("accept", jm.accept()).await.expect("a connection");
        // The JobManager learns who is calling from the certificate, not from the message.
        assert_eq!(conn.peer_name(), "tm-1");
        let (mut tx, mut rx) = conn.accept_control::<Msg, Msg>().await.expect("control stream");
        let first = rx.recv().await.expect("recv ok").expect("a message");
        assert_eq!(first, Msg::Register { name: "tm-1".into(), slots: 4 });
        tx.send(&Msg::Ack { id: 1 }).await.expect("send ack");
        let big = rx.recv().await.expect("recv ok").expect("a message");
        assert!(matches!(&big, Msg::Deploy { payload, .. } if payload.len() == 3 << 20));
        tx.send(&Msg::Ack { id: 2 }).await.expect("send ack");
        assert_eq!(rx.recv().await.expect("clean end"), None);
        tx.finish().await.expect("finish");
        conn
    });

    let conn = within("connect", tm.connect(jm_addr)).await.expect("connects");
    assert_eq!(conn.peer_name(), "jobmanager");
    let (mut tx, mut rx) = conn.open_control::<Msg, Msg>().await.expect("open control");
    tx.send(&Msg::Register { name: "tm-1".into(), slots: 4 }).await.expect("send");
    assert_eq!(within("ack 1", rx.recv()).await.expect("ok"), Some(Msg::Ack { id: 1 }));
    // A multi-megabyte message spans many QUIC packets and reads.
    tx.send(&Msg::Deploy { task: "map".into(), payload: vec![9; 3 << 20] }).await.expect("send big");
    assert_eq!(within("ack 2", rx.recv()).await.expect("ok"), Some(Msg::Ack { id: 2 }));
    tx.finish().await.expect("finish");
    assert_eq!(within("end", rx.recv()).await.expect("clean end"), None);

    // Data plane on the same connection, opened from the other side this time.
    let jm_conn = within("server task", server).await.expect("server ok");
    let opener = tokio::spawn(async move {
        let mut data = open_data_stream(&jm_conn, &(7u32, 3u32)).await.expect("open data");
        for i in 0..100u8 {
            data.send(&vec![i; 32 * 1024]).await.expect("send batch");
        }
        data.finish().await.expect("finish data");
        jm_conn
    });
    let ((producer, consumer), mut rx) = within("accept data", accept_data_stream::<(u32, u32)>(&conn)).await.expect("data");
    assert_eq!((producer, consumer), (7, 3));
    for i in 0..100u8 {
        let batch = within("batch", rx.recv()).await.expect("ok").expect("a batch");
        assert!(batch.len() == 32 * 1024 && batch.iter().all(|&b| b == i), "batch {i}");
    }
    assert_eq!(within("data end", rx.recv()).await.expect("clean end"), None);
    within("opener", opener).await.expect("opener ok");
}
