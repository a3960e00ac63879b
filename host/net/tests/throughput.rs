//! Throughput micro-measure (printed, not asserted):
//! `cargo test --release --workspace --test throughput -- --ignored --nocapture`

mod common;

use std::time::Instant;

use common::{bind, cluster, within};
use weir_net::{accept_data_stream, open_data_stream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, run explicitly"]
async fn throughput_32k_frames_one_stream() {
    const BATCH: usize = 32 * 1024;
    const TOTAL: usize = 1 << 30;
    let (ca, ids) = cluster(&["a", "b"]);
    let a = bind(&ids[0], &ca);
    let b = bind(&ids[1], &ca);
    let conn = within("connect", a.connect(b.local_addr().expect("addr"))).await.expect("connects");
    let peer = within("accept", b.accept()).await.expect("conn");

    let start = Instant::now();
    let producer = tokio::spawn(async move {
        let mut tx = open_data_stream(&conn, &0u8).await.expect("open");
        let batch = vec![0x5a; BATCH];
        for _ in 0..TOTAL / BATCH {
            tx.send(&batch).await.expect("send");
        }
        tx.finish().await.expect("finish");
        conn
    });
    let (_, mut rx) = accept_data_stream::<u8>(&peer).await.expect("accept");
    let mut bytes = 0usize;
    while let Some(batch) = rx.recv().await.expect("recv") {
        bytes += batch.len();
    }
    let secs = start.elapsed().as_secs_f64();
    producer.await.expect("producer");
    assert_eq!(bytes, TOTAL);
    println!(
        "32 KiB frames, one stream, loopback: {:.0} MB/s ({:.0} frames/s, {} MiB in {secs:.2} s)",
        bytes as f64 / secs / 1e6,
        (TOTAL / BATCH) as f64 / secs,
        TOTAL >> 20
    );
}
