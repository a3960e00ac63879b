//! A peer sending broken frames gets a typed error on our side and a protocol-error
//! close; the endpoint keeps serving other connections.

mod common;

use common::{Msg, bind, cluster, within};
use weir_net::{CLOSE_PROTOCOL_ERROR, FrameError, NetError, quinn};

/// Sends `bytes` raw on a fresh bidirectional stream, finishes it, and returns what the
/// server's typed receiver made of it, plus the close the client observed.
async fn send_raw_and_observe(bytes: Vec<u8>, finish: bool) -> (FrameError, quinn::ConnectionError) {
    let (ca, ids) = cluster(&["jobmanager", "tm-1", "tm-2"]);
    let server = bind(&ids[0], &ca);
    let addr = server.local_addr().expect("addr");
    let bad = bind(&ids[1], &ca);

    let bad_conn = within("connect", bad.connect(addr)).await.expect("connects");
    // Bypass the framing layer to put arbitrary bytes on the wire.
    let (mut send, _recv) = bad_conn.quinn().open_bi().await.expect("open");
    send.write_all(&bytes).await.expect("write");
    if finish {
        send.finish().expect("finish");
    }

    let conn = within("accept", server.accept()).await.expect("connection");
    let (_tx, mut rx) = conn.accept_control::<Msg, Msg>().await.expect("stream");
    let err = within("recv", rx.recv()).await.expect_err("must be a frame error");
    assert!(err.is_protocol_violation(), "{err:?}");
    // What the JobManager would do: log the reason, close with a protocol error code.
    conn.close(CLOSE_PROTOCOL_ERROR, &format!("bad frame: {err}"));
    let seen = within("client sees close", bad_conn.closed()).await;

    // Nothing else broke: another member connects and talks.
    let good = bind(&ids[2], &ca);
    let good_conn = within("connect 2", good.connect(addr)).await.expect("connects");
    let (mut tx, _rx) = good_conn.open_control::<Msg, Msg>().await.expect("open");
    tx.send(&Msg::Ack { id: 9 }).await.expect("send");
    let conn2 = within("accept 2", server.accept()).await.expect("second connection");
    assert_eq!(conn2.peer_name(), "tm-2");
    let (_tx2, mut rx2) = conn2.accept_control::<Msg, Msg>().await.expect("stream 2");
    assert_eq!(within("msg", rx2.recv()).await.expect("ok"), Some(Msg::Ack { id: 9 }));
    (err, seen)
}

fn assert_protocol_close(seen: &quinn::ConnectionError) {
    match seen {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, quinn::VarInt::from_u32(CLOSE_PROTOCOL_ERROR));
            let reason = String::from_utf8_lossy(&close.reason);
            assert!(reason.starts_with("bad frame: "), "{reason}");
            println!("client saw close code {} reason {reason:?}", close.error_code);
        }
        other => panic!("expected an application close, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_payload_is_a_decode_error() {
    // A valid header around bytes that are no `Msg` (enum tag 200 does not exist).
    let mut bytes = 5u32.to_le_bytes().to_vec();
    bytes.extend([200, 1, 2, 3, 4]);
    let (err, seen) = send_raw_and_observe(bytes, false).await;
    assert!(matches!(err, FrameError::Decode(_)), "{err:?}");
    assert_protocol_close(&seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_frame_is_truncated() {
    let mut bytes = 100u32.to_le_bytes().to_vec();
    bytes.extend([0; 10]);
    let (err, seen) = send_raw_and_observe(bytes, true).await;
    assert!(matches!(err, FrameError::Truncated { part: "payload", expected: 100, got: 10 }), "{err:?}");
    assert_protocol_close(&seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_length_is_refused_without_waiting_for_payload() {
    // Only the header is sent and the stream stays open: the error must come from the
    // announced length alone.
    let (err, seen) = send_raw_and_observe(u32::MAX.to_le_bytes().to_vec(), false).await;
    assert!(matches!(err, FrameError::Oversized { len, .. } if len == u64::from(u32::MAX)), "{err:?}");
    assert_protocol_close(&seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_stream_without_header_is_missing_header() {
    let (ca, ids) = cluster(&["a", "b"]);
    let a = bind(&ids[0], &ca);
    let b = bind(&ids[1], &ca);
    let conn = within("connect", b.connect(a.local_addr().expect("addr"))).await.expect("connects");
    let mut s = conn.quinn().open_uni().await.expect("open");
    s.finish().expect("finish");
    let server_conn = within("accept", a.accept()).await.expect("conn");
    let err = within("accept data", weir_net::accept_data_stream::<u32>(&server_conn)).await.expect_err("no header");
    assert!(matches!(err, NetError::MissingHeader), "{err:?}");
}
