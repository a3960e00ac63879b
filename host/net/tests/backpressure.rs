//! QUIC per-stream flow control is the data plane's backpressure: a consumer that does
//! not read stops its producer within one stream window, and other channels on the same
//! connection keep flowing.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{bind_with, cluster, until, within};
use weir_net::{NetConfig, accept_data_stream, open_data_stream};

const WINDOW: u32 = 256 * 1024;
const BATCH: usize = 32 * 1024;
/// 8 MiB: 32 windows, far more than flow control lets through without reads.
const BATCHES: u64 = 256;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_consumer_stops_its_producer_within_one_window() {
    let cfg = NetConfig { stream_window: WINDOW, ..NetConfig::default() };
    let (ca, ids) = cluster(&["producer", "consumer"]);
    let producer_ep = bind_with(&ids[0], &ca, &cfg);
    let consumer_ep = bind_with(&ids[1], &ca, &cfg);
    let conn = within("connect", producer_ep.connect(consumer_ep.local_addr().expect("addr"))).await.expect("connects");
    let peer = within("accept", consumer_ep.accept()).await.expect("conn");

    // Producer: sends as fast as it is allowed, publishing how many bytes completed.
    let sent = Arc::new(AtomicU64::new(0));
    let producer = {
        let (conn, sent) = (conn.clone(), sent.clone());
        tokio::spawn(async move {
            let mut tx = open_data_stream(&conn, &1u32).await.expect("open");
            for i in 0..BATCHES {
                tx.send(&vec![i as u8; BATCH]).await.expect("send");
                sent.fetch_add(BATCH as u64 + 4, Ordering::SeqCst);
            }
            tx.finish().await.expect("finish");
        })
    };

    // Consumer reads the header, then stops reading.
    let (chan, mut rx) = within("data stream", accept_data_stream::<u32>(&peer)).await.expect("accept");
    assert_eq!(chan, 1);
    // Observable condition: the producer's QUIC stack told us it hit our window.
    until("STREAM_DATA_BLOCKED from the producer", || peer.quinn().stats().frame_rx.stream_data_blocked > 0).await;
    let at_block = sent.load(Ordering::SeqCst);
    println!("producer blocked after {at_block} bytes (window {WINDOW})");
    assert!(at_block <= u64::from(WINDOW) + 64, "producer ran {at_block} bytes ahead of a {WINDOW}-byte window");
    assert!(at_block >= u64::from(WINDOW) - 2 * BATCH as u64, "blocked early at {at_block}");
    assert!(!producer.is_finished());

    // A second channel on the same connection is not held up by the stalled one.
    let second = {
        let conn = conn.clone();
        tokio::spawn(async move {
            let mut tx2 = open_data_stream(&conn, &2u32).await.expect("open 2");
            for _ in 0..16 {
                tx2.send(&[7; BATCH]).await.expect("send 2");
            }
            tx2.finish().await.expect("finish 2");
        })
    };
    let (chan2, mut rx2) = within("data stream 2", accept_data_stream::<u32>(&peer)).await.expect("accept 2");
    assert_eq!(chan2, 2);
    for _ in 0..16 {
        assert_eq!(within("batch 2", rx2.recv()).await.expect("ok").map(|b| b.len()), Some(BATCH));
    }
    assert_eq!(within("end 2", rx2.recv()).await.expect("clean end"), None);
    within("second producer", second).await.expect("second ok");
    // Channel 1 stayed blocked meanwhile.
    assert!(sent.load(Ordering::SeqCst) <= u64::from(WINDOW) + 64);

    // Reading again releases the producer; everything arrives in order.
    for i in 0..BATCHES {
        let batch = within("batch", rx.recv()).await.expect("ok").expect("a batch");
        assert!(batch.len() == BATCH && batch.iter().all(|&b| b == i as u8), "batch {i}");
    }
    assert_eq!(within("end", rx.recv()).await.expect("clean end"), None);
    within("producer", producer).await.expect("producer ok");
}
