//! The seed job: Kafka topic `clicks` -> keep the logged-in clicks -> map to
//! `(user, 1)` -> key by user -> sum -> PostgreSQL table `user_clicks(user_id, clicks)`
//! (upsert, exactly once).
//!
//! A click is a text record `user_id,logged_in,page`: a decimal user id, `true` or
//! `false`, and anything after (`weir clicks generate` writes `/page/<n>`). Records that
//! do not parse are dropped with the logged-out ones.
//!
//! Arguments: `bootstrap-servers` (required), `topic` (default `clicks`), `start`,
//! `group-id` (the Kafka source's options); `pg-host` (default `127.0.0.1`), `pg-port`,
//! `pg-user`, `pg-database`, `pg-table` (default `user_clicks`), and one of
//! `pg-password-file` / `pg-password-env` (the PostgreSQL sink's options).

use weir_sdk::prelude::*;

/// `(user, logged in)` of a click, `None` if it is malformed.
fn parse(line: &str) -> Option<(u64, bool)> {
    let mut fields = line.split(',');
    let user = fields.next()?.trim().parse().ok()?;
    let logged_in = match fields.next()?.trim() {
        "true" => true,
        "false" => false,
        _ => return None,
    };
    Some((user, logged_in))
}

fn build(job: &mut Job) {
    let mut kafka = Connector::new("kafka").option("topic", job.arg("topic").unwrap_or("clicks"));
    for option in ["bootstrap-servers", "start", "group-id"] {
        if let Some(v) = job.arg(option) {
            kafka = kafka.option(option, v);
        }
    }
    let mut pg = Connector::new("postgres")
        .option("host", job.arg("pg-host").unwrap_or("127.0.0.1"))
        .option("table", job.arg("pg-table").unwrap_or("user_clicks"))
        .option("key-column", "user_id")
        .option("value-column", "clicks")
        .option("mode", "upsert");
    for option in ["port", "user", "database", "password-file", "password-env"] {
        if let Some(v) = job.arg(&format!("pg-{option}")) {
            pg = pg.option(option, v);
        }
    }
    job.name("clicks");
    job.connector_source::<String>("kafka", kafka)
        .filter("logged-in", |line| parse(line).is_some_and(|(_, logged_in)| logged_in))
        // The filter passed only clicks that parse: user 0 never comes from here.
        .map("user-one", |line| (parse(&line).map_or(0, |(user, _)| user), 1u64))
        .key_by("by-user", |&(user, _): &(u64, u64)| user)
        .reduce("sum", |(user, a), (_, b)| (user, a + b))
        .map("count", |(_, clicks)| clicks)
        .sink("user-clicks", Sink::connector(pg));
}

weir_sdk::export_job!(build);

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn clicks_parse() {
        assert_eq!(parse("17,true,/page/3"), Some((17, true)));
        assert_eq!(parse("17,false"), Some((17, false)));
        assert_eq!(parse("x,true"), None);
        assert_eq!(parse("17,yes"), None);
        assert_eq!(parse(""), None);
    }
}
