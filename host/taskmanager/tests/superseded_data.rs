//! The data plane's part of fencing: channels are keyed by run (`<job>.<attempt>`), so
//! a superseded attempt still running on a TaskManager that woke up from a pause
//! (a zombie) reaches no subtask of the attempt that replaced it: its stream is
//! stopped, its records are never delivered, and the current attempt's flow as usual.

use std::time::{Duration, Instant};

use weir_net::{ClusterCa, Endpoint};
use weir_taskmanager::Cancel;
use weir_taskmanager::dataplane::DataPlane;
use weir_taskmanager::exchange::{self, Message};
use weir_types::deployment::ChannelId;

fn plane(rt: &tokio::runtime::Runtime, ca: &ClusterCa, name: &str) -> DataPlane {
    let id = ca.issue(name).expect("identity");
    let endpoint = {
        let _guard = rt.enter();
        Endpoint::bind("127.0.0.1:0".parse().expect("addr"), &id, ca.cert()).expect("endpoint")
    };
    let plane = DataPlane::new(rt.handle().clone(), endpoint);
    rt.spawn(plane.clone().serve());
    plane
}

fn channel(run: &str) -> ChannelId {
    ChannelId { run: run.parse().expect("a run id"), vertex: 1, subtask: 0, from_vertex: 0, from_subtask: 0 }
}

fn batch() -> Vec<u8> {
    let mut b = Vec::new();
    weir_types::batch::push_record(&mut b, 0, b"k", b"v");
    b
}

#[test]
fn a_superseded_attempts_records_reach_no_subtask_of_the_current_one() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let ca = ClusterCa::generate().expect("ca");
    let (consumer, producer) = (plane(&rt, &ca, "taskmanager-1"), plane(&rt, &ca, "taskmanager-2"));
    let addr = consumer.local_addr().expect("addr");
    // Attempt 1 runs on the consumer's TaskManager; attempt 0 was superseded.
    let (tx, rx) = exchange::channel();
    consumer.register_input(channel("j.1"), tx, Cancel::default());

    let zombie = std::thread::spawn({
        let producer = producer.clone();
        move || {
            let mut out = producer.remote(addr, channel("j.0"));
            let deadline = Instant::now() + Duration::from_secs(20);
            // The stop comes back asynchronously: the first sends may be buffered.
            loop {
                if let Err(e) = out.send(&batch(), &Cancel::default()) {
                    return e.to_string();
                }
                assert!(Instant::now() < deadline, "the zombie's stream was never stopped");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    });
    let refused = zombie.join().expect("zombie thread");
    assert!(refused.contains("stopped"), "refused as an unknown channel: {refused}");
    assert!(rx.try_recv().is_err(), "nothing of the superseded attempt was delivered");

    let current = std::thread::spawn(move || {
        let mut out = producer.remote(addr, channel("j.1"));
        out.send(&batch(), &Cancel::default()).expect("the current attempt sends");
        out.finish(&Cancel::default()).expect("finish");
    });
    current.join().expect("producer thread");
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Message::Batch(b, n)) => assert_eq!((b, n), (batch(), 1)),
        Ok(other) => panic!("expected the batch, got {other:?}"),
        Err(e) => panic!("the current attempt's batch never came: {e}"),
    }
}
