//! Kafka in: the running count of each value (a UTF-8 key such as `user-17`) of a Kafka
//! topic, emitted with every record as `value<TAB>count`. Every argument is an option
//! of the source (`bootstrap-servers`, `topic` (required), `start`, `group-id`, ...),
//! passed on as given: the connector checks them at submission.

use weir_sdk::prelude::*;

fn build(job: &mut Job) {
    let kafka = job.args().iter().fold(Connector::new("kafka"), |kafka, (option, v)| kafka.option(option, v));
    job.name("kafka_counts");
    job.connector_source::<String>("events", kafka).key_by_value("by-value").count("count").sink("out", Sink::default());
}

weir_sdk::export_job!(build);
