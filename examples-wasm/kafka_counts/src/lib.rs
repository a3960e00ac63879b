//! Kafka in: the running count of each value (a UTF-8 key such as `user-17`) of a Kafka
//! topic, emitted with every record as `value<TAB>count`. Arguments name the source's
//! options: `bootstrap-servers`, `topic` (required), `start`, `group-id`.

use weir_sdk::prelude::*;

fn build(job: &mut Job) {
    let mut kafka = Connector::new("kafka");
    for option in ["bootstrap-servers", "topic", "start", "group-id"] {
        if let Some(v) = job.arg(option) {
            kafka = kafka.option(option, v);
        }
    }
    job.name("kafka_counts");
    job.connector_source::<String>("events", kafka).key_by_value("by-value").count("count").sink("out", Sink::default());
}

weir_sdk::export_job!(build);
