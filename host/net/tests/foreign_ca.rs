//! Certificates from another CA are refused, whichever side holds them.

mod common;

use common::{Msg, bind, cluster, within};
use weir_net::{Endpoint, NetError, quinn};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_refuses_a_foreign_server() {
    let (ca, ids) = cluster(&["tm-1"]);
    let (other_ca, other_ids) = cluster(&["impostor"]);
    let ours = bind(&ids[0], &ca);
    let foreign = bind(&other_ids[0], &other_ca);

    let err = within("connect", ours.connect(foreign.local_addr().expect("addr"))).await.expect_err("must refuse");
    let text = err.to_string();
    println!("our client -> foreign server: {text}");
    assert!(matches!(&err, NetError::Connection(quinn::ConnectionError::TransportError(_))), "expected a TLS transport error, got {err:?}");
    assert!(text.contains("invalid peer certificate: UnknownIssuer"), "error should name the problem: {text}");
    // The foreign server saw the handshake fail too and surfaced no connection.
    let mut rejected = foreign.rejected_handshakes();
    within("foreign server counts the refusal", rejected.wait_for(|n| *n >= 1)).await.expect("watch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_server_refuses_a_foreign_client() {
    let (ca, ids) = cluster(&["jobmanager", "tm-1"]);
    let (other_ca, other_ids) = cluster(&["impostor"]);
    let server = bind(&ids[0], &ca);
    let addr = server.local_addr().expect("addr");
    // The impostor even trusts our CA (its certificate is public): the refusal below is
    // our server's verdict on its certificate, not the impostor distrusting us.
    let foreign = Endpoint::bind("127.0.0.1:0".parse().expect("addr"), &other_ids[0], ca.cert()).expect("bind");
    drop(other_ca);

    // TLS 1.3: the client may complete its side before the server checks the client
    // certificate, so the refusal can arrive on connect or on first use.
    let attempt = async {
        let conn = foreign.connect(addr).await?;
        let (mut tx, mut rx) = conn.open_control::<Msg, Msg>().await?;
        tx.send(&Msg::Ack { id: 0 }).await?;
        rx.recv().await?;
        Ok::<_, NetError>(())
    };
    let err = within("foreign attempt", attempt).await.expect_err("must be refused");
    println!("foreign client -> our server: {err}");
    let text = err.to_string();
    // The server's TLS alert reaches the client as a close by the peer with the reason.
    assert!(matches!(err.connection_error(), Some(quinn::ConnectionError::ConnectionClosed(_))), "expected a close by the server, got {err:?}");
    assert!(text.contains("invalid peer certificate: UnknownIssuer"), "error should name the problem: {text}");

    let mut rejected = server.rejected_handshakes();
    within("server counts the refusal", rejected.wait_for(|n| *n >= 1)).await.expect("watch");

    // The endpoint is unharmed: a member connects, and it is the first connection
    // accept() ever returns (the foreign one never surfaced).
    let member = bind(&ids[1], &ca);
    let client = tokio::spawn(async move {
        let conn = member.connect(addr).await.expect("member connects");
        let (mut tx, _rx) = conn.open_control::<Msg, Msg>().await.expect("open");
        tx.send(&Msg::Ack { id: 1 }).await.expect("send");
        tx.finish().await.expect("finish");
        (member, conn)
    });
    let conn = within("accept member", server.accept()).await.expect("connection");
    assert_eq!(conn.peer_name(), "tm-1");
    let (_tx, mut rx) = conn.accept_control::<Msg, Msg>().await.expect("control");
    assert_eq!(within("msg", rx.recv()).await.expect("ok"), Some(Msg::Ack { id: 1 }));
    within("client", client).await.expect("client ok");
}
