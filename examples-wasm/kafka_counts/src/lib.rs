//! Kafka in: the running count of each value (a UTF-8 key such as `user-17`) of a Kafka
//! topic, emitted with every record as `value<TAB>count`. Every argument but the
//! sink's (below) is an option of the source (`bootstrap-servers`, `topic` (required),
//! `start`, `group-id`, ...), passed on as given: the connector checks them at
//! submission.
//!
//! Argument `sink`: absent, the default text sink; `kafka`, topic `sink-topic` of the
//! same broker (key: the value counted, value: the count), with `delivery` and
//! `transaction-timeout-ms` passed on when given; `postgres`, table `pg-table` (columns
//! `k` text, `v` bigint; default `counts`) of the server on 127.0.0.1:`pg-port` as user
//! postgres with the password in file `pg-password-file`, `pg-mode` `append` (default)
//! or `upsert`.

use weir_sdk::prelude::*;

fn build(job: &mut Job) {
    const SINK_ARGS: [&str; 5] = ["sink", "sink-topic", "delivery", "transaction-timeout-ms", "transactional-id-prefix"];
    let kafka = job
        .args()
        .iter()
        .filter(|(name, _)| !SINK_ARGS.contains(&name.as_str()) && !name.starts_with("pg-"))
        .fold(Connector::new("kafka"), |kafka, (option, v)| kafka.option(option, v));
    let arg = |name: &str, default: &str| job.arg(name).unwrap_or(default).to_string();
    let sink = match job.arg("sink") {
        Some("kafka") => {
            let mut out = Connector::new("kafka").option("bootstrap-servers", arg("bootstrap-servers", "")).option("topic", arg("sink-topic", "counts"));
            for option in ["delivery", "transaction-timeout-ms", "transactional-id-prefix"] {
                if let Some(v) = job.arg(option) {
                    out = out.option(option, v);
                }
            }
            Sink::connector(out)
        }
        Some("postgres") => Sink::connector(
            Connector::new("postgres")
                .option("host", "127.0.0.1")
                .option("port", arg("pg-port", "5432"))
                .option("table", arg("pg-table", "counts"))
                .option("key-column", "k")
                .option("value-column", "v")
                .option("mode", arg("pg-mode", "append"))
                .option("password-file", arg("pg-password-file", "/etc/weir/pg-password")),
        ),
        _ => Sink::default(),
    };
    job.name("kafka_counts");
    job.connector_source::<String>("events", kafka).key_by_value("by-value").count("count").sink("out", sink);
}

weir_sdk::export_job!(build);
