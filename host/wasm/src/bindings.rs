//! The one place the WIT is bound on the host side: a WIT change touches this file and
//! the conversions next to it, nothing else.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "job-component",
});

pub use exports::weir::dataflow::job as job_exports;
pub use exports::weir::dataflow::operator as operator_exports;
pub use exports::weir::dataflow::operator::{OperatorError, TaskInfo as WitTaskInfo};
pub use exports::weir::dataflow::timers as timers_exports;
pub use weir::dataflow::keyed_state::StateError;
pub use weir::dataflow::log::Level;
pub use weir::dataflow::plan_types as wit_plan;

use weir_types::plan;

impl From<wit_plan::JobPlan> for plan::JobPlan {
    fn from(p: wit_plan::JobPlan) -> Self {
        plan::JobPlan {
            name: p.name,
            nodes: p.nodes.into_iter().map(Into::into).collect(),
            edges: p
                .edges
                .into_iter()
                .map(|e| plan::Edge {
                    source: e.source,
                    target: e.target,
                    partitioning: e.partitioning.into(),
                    side_output: e.side_output,
                    input: e.input,
                    key_type: e.key_type,
                })
                .collect(),
            max_parallelism: p.max_parallelism,
        }
    }
}

impl From<wit_plan::Partitioning> for plan::Partitioning {
    fn from(p: wit_plan::Partitioning) -> Self {
        match p {
            wit_plan::Partitioning::Forward => plan::Partitioning::Forward,
            wit_plan::Partitioning::KeyBy => plan::Partitioning::KeyBy,
            wit_plan::Partitioning::Rebalance => plan::Partitioning::Rebalance,
            wit_plan::Partitioning::Broadcast => plan::Partitioning::Broadcast,
        }
    }
}

impl From<wit_plan::ConnectorSpec> for plan::Connector {
    /// A repeated option keeps its last value, as a repeated TOML or CLI setting would.
    fn from(c: wit_plan::ConnectorSpec) -> Self {
        plan::Connector { kind: c.kind, options: c.options.into_iter().collect() }
    }
}

impl From<wit_plan::Node> for plan::Node {
    fn from(n: wit_plan::Node) -> Self {
        let kind = match n.kind {
            wit_plan::NodeKind::Source(wit_plan::SourceKind::FileLines(p)) => plan::NodeKind::Source(plan::SourceKind::FileLines(p)),
            wit_plan::NodeKind::Source(wit_plan::SourceKind::Generator(g)) => {
                plan::NodeKind::Source(plan::SourceKind::Generator { start: g.start, count: g.count, records_per_ms: g.records_per_ms })
            }
            wit_plan::NodeKind::Source(wit_plan::SourceKind::Connector(c)) => plan::NodeKind::Source(plan::SourceKind::Connector(c.into())),
            wit_plan::NodeKind::Operator(o) => {
                plan::NodeKind::Operator { keyed: o.keyed, side_outputs: o.side_outputs, state_ttl_ms: o.state_ttl_ms }
            }
            wit_plan::NodeKind::Sink(wit_plan::SinkKind::Stdout) => plan::NodeKind::Sink(plan::SinkKind::Stdout),
            wit_plan::NodeKind::Sink(wit_plan::SinkKind::File(p)) => plan::NodeKind::Sink(plan::SinkKind::File(p)),
            wit_plan::NodeKind::Sink(wit_plan::SinkKind::Discard) => plan::NodeKind::Sink(plan::SinkKind::Discard),
            wit_plan::NodeKind::Sink(wit_plan::SinkKind::Connector(c)) => plan::NodeKind::Sink(plan::SinkKind::Connector(c.into())),
        };
        let watermarks =
            n.watermarks.map(|w| plan::WatermarkStrategy { out_of_orderness_ms: w.out_of_orderness_ms, idle_timeout_ms: w.idle_timeout_ms });
        plan::Node { uid: n.uid, name: n.name, kind, parallelism: n.parallelism, watermarks }
    }
}
