//! Job manifests: a job assembled from several components, one per operator, possibly
//! in different languages. The manifest (TOML) plays the part of a job component's
//! `plan`: it lists the nodes in order, and for each operator names the component file
//! that implements it (world `operator-component`) and the operator id inside it.
//!
//! ```toml
//! name = "orders-by-region"
//!
//! [[node]]
//! uid = "orders"
//! source = "file-lines"          # or "text-lines" (raw UTF-8 values), or
//!                                # "generator" with start = 0, count = 1000
//!
//! [[node]]
//! uid = "parse"
//! component = "parse.wasm"       # relative to the manifest
//!
//! [[node]]
//! uid = "count"
//! component = "count.wasm"
//! keyed = true
//! partitioning = "key-by"        # of its input edges; default "forward"
//! args = { window = "10" }       # given to this operator's `open`, over the job's args
//!
//! [[node]]
//! uid = "out"
//! sink = "file"                  # or "stdout", "discard"
//! ```
//!
//! Any other `source` or `sink` names a connector (`weir_types::plan::Connector`),
//! configured by `options`:
//!
//! ```toml
//! [[node]]
//! uid = "clicks"
//! source = "kafka"
//! options = { bootstrap-servers = "localhost:9092", topic = "clicks" }
//! ```
//!
//! A node's inputs default to the node before it; `inputs = ["a", "b"]` names others
//! (their union). A keyed operator with `inputs2 = [..]` as well is a two-input operator
//! (a connect, Flink's `KeyedCoProcessFunction`): `inputs` feed its input 0, `inputs2`
//! its input 1, both `key-by`, and state and timers are shared per key. A node's
//! `key-type` names the type of the keys it emits (free text, e.g. "order-id"); the
//! key-by edges out of it carry it, and a node whose key-by inputs name different types
//! is refused, as in the Rust SDK.
//! Parsing and lowering are pure: the caller loads the components and checks their
//! worlds.

use std::collections::BTreeMap;

use serde::Deserialize;
use thiserror::Error;

use crate::deployment::OperatorCode;
use crate::plan::{Connector, Edge, JobPlan, Node, NodeKind, Partitioning, SinkKind, SourceKind, WatermarkStrategy};

/// Why a manifest was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ManifestError {
    /// Not valid TOML, or fields of the wrong type or unknown.
    #[error("the job manifest is not valid: {0}")]
    Syntax(String),
    /// A node does not make sense.
    #[error("the job manifest's node {uid:?}: {problem}")]
    Node {
        /// The node.
        uid: String,
        /// What is wrong.
        problem: String,
    },
}

/// A parsed job manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Manifest {
    /// Job name.
    pub name: String,
    /// Key groups (default 128).
    pub max_parallelism: Option<u32>,
    /// The nodes, in order.
    #[serde(rename = "node", default)]
    pub nodes: Vec<ManifestNode>,
}

/// One node of a manifest: exactly one of `source`, `component` and `sink` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ManifestNode {
    /// Stable id, unique in the job.
    pub uid: String,
    /// Display name (default: the uid).
    pub name: Option<String>,
    /// A host source: `file-lines` (values are postcard strings, as the Rust SDK
    /// reads them), `text-lines` (values are the lines' UTF-8 bytes) or `generator`.
    pub source: Option<String>,
    /// An operator: the component file that implements it.
    pub component: Option<String>,
    /// A host sink: `stdout`, `file` or `discard`.
    pub sink: Option<String>,
    /// The operator's id inside its component (default 0).
    pub operator: Option<u32>,
    /// File of a `file-lines` source or `file` sink (default: given at submission).
    pub path: Option<String>,
    /// First number of a `generator` source.
    pub start: Option<u64>,
    /// How many numbers a `generator` source emits.
    pub count: Option<u64>,
    /// Event time of a `generator` source: number `n` has timestamp `n / this` (ms).
    pub records_per_ms: Option<u64>,
    /// Event time: generate watermarks from this node's output, trailing the newest
    /// timestamp by this many ms (bounded out-of-orderness).
    pub out_of_orderness_ms: Option<u64>,
    /// With `out-of-orderness-ms`: silent this long (ms), a subtask goes idle.
    pub idle_timeout_ms: Option<u64>,
    /// Arguments for this operator's `open`, over the job's arguments.
    #[serde(default)]
    pub args: BTreeMap<String, String>,
    /// Parallelism (default: the job's).
    pub parallelism: Option<u32>,
    /// The operator gets keyed value state; its inputs must be `key-by`.
    #[serde(default)]
    pub keyed: bool,
    /// Upstream node uids (default: the node before); input 0 of a two-input operator.
    pub inputs: Option<Vec<String>>,
    /// Upstream node uids of input 1: makes a keyed operator a two-input operator.
    pub inputs2: Option<Vec<String>>,
    /// The type of the keys this node emits, as its author names it; key-by edges out of
    /// it carry it, so streams keyed by different types cannot meet.
    pub key_type: Option<String>,
    /// Refused with a reason (only the Rust SDK writes the TTL'd state layout, and its
    /// operators take their TTL from their own plan).
    pub state_ttl_ms: Option<u64>,
    /// How records reach this node from each input: `forward` (default), `key-by`,
    /// `rebalance` or `broadcast`.
    pub partitioning: Option<String>,
    /// A connector's options (a `source` or `sink` that is not built in).
    #[serde(default)]
    pub options: BTreeMap<String, OptionValue>,
}

/// A connector option's value: TOML text, integer or boolean, kept as text.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OptionValue {
    /// `topic = "clicks"`.
    Text(String),
    /// `partitions = 4`.
    Integer(i64),
    /// `create = true`.
    Bool(bool),
}

impl std::fmt::Display for OptionValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OptionValue::Text(t) => f.write_str(t),
            OptionValue::Integer(i) => write!(f, "{i}"),
            OptionValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

const BUILT_IN_SOURCES: [&str; 3] = ["file-lines", "text-lines", "generator"];
const BUILT_IN_SINKS: [&str; 3] = ["stdout", "file", "discard"];

/// A `source` or `sink` that is not built in: a connector of that kind.
fn connector(n: &ManifestNode, kind: &str) -> Result<Connector, String> {
    if n.path.is_some() || n.start.is_some() || n.count.is_some() || n.records_per_ms.is_some() {
        return Err(format!(
            "`path`, `start`, `count` and `records-per-ms` belong to built-in sources and sinks; connector {kind:?} takes `options`"
        ));
    }
    Ok(Connector { kind: kind.to_string(), options: n.options.iter().map(|(k, v)| (k.clone(), v.to_string())).collect() })
}

/// A manifest as a plan, plus the code of its operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lowered {
    /// The job graph.
    pub plan: JobPlan,
    /// The component files the operators name, each once, in order of first use.
    pub components: Vec<String>,
    /// Per node: for operators, the component (index into `components`) and guest id.
    pub operators: Vec<Option<OperatorCode>>,
}

impl Manifest {
    /// Parses a manifest's TOML text.
    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        toml::from_str(text).map_err(|e| ManifestError::Syntax(e.to_string().lines().collect::<Vec<_>>().join(" ")))
    }

    /// Builds the plan. Graph rules (unique uids, acyclic, keyed inputs) are left to
    /// [`JobPlan::validate`], as for plans from components.
    pub fn lower(&self) -> Result<Lowered, ManifestError> {
        let mut plan = JobPlan { name: self.name.clone(), nodes: vec![], edges: vec![], max_parallelism: self.max_parallelism };
        let mut components: Vec<String> = vec![];
        let mut operators = vec![];
        for (i, n) in self.nodes.iter().enumerate() {
            let bad = |problem: String| ManifestError::Node { uid: n.uid.clone(), problem };
            let (kind, code) = match (&n.source, &n.component, &n.sink) {
                (Some(source), None, None) => (NodeKind::Source(source_kind(n, source).map_err(bad)?), None),
                (None, Some(component), None) => {
                    let index = match components.iter().position(|c| c == component) {
                        Some(i) => i,
                        None => {
                            components.push(component.clone());
                            components.len() - 1
                        }
                    };
                    let args = n.args.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                    let code = OperatorCode { component: index as u32, op: n.operator.unwrap_or(0), args };
                    (NodeKind::Operator { keyed: n.keyed, side_outputs: vec![], state_ttl_ms: None }, Some(code))
                }
                (None, None, Some(sink)) => (NodeKind::Sink(sink_kind(n, sink).map_err(bad)?), None),
                _ => return Err(bad("set exactly one of `source`, `component` and `sink`".into())),
            };
            if code.is_none() && (n.operator.is_some() || n.keyed || !n.args.is_empty() || n.inputs2.is_some()) {
                return Err(bad("`operator`, `keyed`, `args` and `inputs2` belong to operators (nodes with a `component`)".into()));
            }
            let partitioning = match n.partitioning.as_deref() {
                None | Some("forward") => Partitioning::Forward,
                Some("key-by") => Partitioning::KeyBy,
                Some("rebalance") => Partitioning::Rebalance,
                Some("broadcast") => Partitioning::Broadcast,
                Some(other) => return Err(bad(format!("unknown partitioning {other:?} (forward, key-by, rebalance, broadcast)"))),
            };
            if n.state_ttl_ms.is_some() {
                return Err(bad("`state-ttl-ms` is not supported in manifests: a TTL needs the guest to write the TTL'd state layout, \
                     which only the Rust SDK's jobs do (set it there with `state_ttl`)"
                    .into()));
            }
            if n.key_type.as_deref().is_some_and(str::is_empty) {
                return Err(bad("`key-type` must not be empty".into()));
            }
            let resolve = |names: &[String]| -> Result<Vec<u32>, ManifestError> {
                names
                    .iter()
                    .map(|name| {
                        self.nodes[..i]
                            .iter()
                            .position(|m| &m.uid == name)
                            .map(|p| p as u32)
                            .ok_or_else(|| bad(format!("input {name:?} is not a node before it")))
                    })
                    .collect()
            };
            let inputs: Vec<u32> = match (&n.inputs, &plan.nodes.last()) {
                _ if matches!(kind, NodeKind::Source(_)) => {
                    if n.inputs.as_ref().is_some_and(|i| !i.is_empty()) || n.inputs2.is_some() {
                        return Err(bad("a source has no inputs".into()));
                    }
                    vec![]
                }
                (Some(names), _) => resolve(names)?,
                (None, Some(_)) => vec![i as u32 - 1],
                (None, None) => return Err(bad("it has no node before it to read from".into())),
            };
            let inputs2: Vec<u32> = match &n.inputs2 {
                None => vec![],
                Some(_) if !n.keyed => {
                    return Err(bad("`inputs2` (a second input) belongs to keyed operators (`keyed = true`, `partitioning = \"key-by\"`)".into()));
                }
                Some(names) if names.is_empty() => return Err(bad("`inputs2` names no node".into())),
                Some(names) => resolve(names)?,
            };
            if let Some(twice) = inputs2.iter().find(|s| inputs.contains(s)) {
                return Err(bad(format!("{:?} feeds both inputs; give one of them a pass-through node", self.nodes[*twice as usize].uid)));
            }
            let edge = |source: u32, input: u32| {
                // Only a key-by edge carries a key type: the keys of the others are not
                // what the target is partitioned by.
                let key_type = if partitioning == Partitioning::KeyBy { self.nodes[source as usize].key_type.clone() } else { None };
                Edge { input, key_type, ..Edge::main(source, i as u32, partitioning) }
            };
            plan.edges.extend(inputs.into_iter().map(|source| edge(source, 0)));
            plan.edges.extend(inputs2.into_iter().map(|source| edge(source, 1)));
            let watermarks = match (n.out_of_orderness_ms, n.idle_timeout_ms) {
                (Some(out_of_orderness_ms), idle_timeout_ms) => Some(WatermarkStrategy { out_of_orderness_ms, idle_timeout_ms }),
                (None, Some(_)) => return Err(bad("`idle-timeout-ms` needs `out-of-orderness-ms`".into())),
                (None, None) => None,
            };
            let name = n.name.clone().unwrap_or_else(|| n.uid.clone());
            plan.nodes.push(Node { uid: n.uid.clone(), name, kind, parallelism: n.parallelism, watermarks });
            operators.push(code);
        }
        Ok(Lowered { plan, components, operators })
    }
}

fn source_kind(n: &ManifestNode, source: &str) -> Result<SourceKind, String> {
    if !BUILT_IN_SOURCES.contains(&source) {
        return Ok(SourceKind::Connector(connector(n, source)?));
    }
    if !n.options.is_empty() {
        return Err(format!("`options` belong to connectors; {source:?} is built in"));
    }
    match source {
        "file-lines" if n.start.is_none() && n.count.is_none() && n.records_per_ms.is_none() => Ok(SourceKind::FileLines(n.path.clone())),
        "text-lines" if n.start.is_none() && n.count.is_none() && n.records_per_ms.is_none() => Ok(SourceKind::TextLines(n.path.clone())),
        "generator" if n.path.is_none() => {
            let count = n.count.ok_or("a generator needs `count`")?;
            Ok(SourceKind::Generator { start: n.start.unwrap_or(0), count, records_per_ms: n.records_per_ms })
        }
        "file-lines" | "text-lines" => Err("`start`, `count` and `records-per-ms` belong to generators".into()),
        _ => Err("`path` belongs to file sources and sinks".into()),
    }
}

fn sink_kind(n: &ManifestNode, sink: &str) -> Result<SinkKind, String> {
    if !BUILT_IN_SINKS.contains(&sink) {
        return Ok(SinkKind::Connector(connector(n, sink)?));
    }
    if !n.options.is_empty() {
        return Err(format!("`options` belong to connectors; {sink:?} is built in"));
    }
    if n.start.is_some() || n.count.is_some() {
        return Err("`start` and `count` belong to generators".into());
    }
    match (sink, &n.path) {
        ("file", path) => Ok(SinkKind::File(path.clone())),
        ("stdout", None) => Ok(SinkKind::Stdout),
        ("discard", None) => Ok(SinkKind::Discard),
        (_, Some(_)) => Err("`path` belongs to file sources and sinks".into()),
        (_, None) => Err(format!("unknown sink {sink:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIPELINE: &str = r#"
name = "orders"
max-parallelism = 64

[[node]]
uid = "orders"
source = "file-lines"

[[node]]
uid = "parse"
component = "parse.wasm"
parallelism = 2

[[node]]
uid = "count"
name = "count per region"
component = "count.wasm"
operator = 3
keyed = true
partitioning = "key-by"
args = { min = "5" }

[[node]]
uid = "again"
component = "parse.wasm"
operator = 1
inputs = ["parse"]
partitioning = "rebalance"

[[node]]
uid = "out"
sink = "file"
path = "out.txt"
inputs = ["count", "again"]
partitioning = "rebalance"
"#;

    #[test]
    fn lowers_a_pipeline_into_a_plan_and_operator_code() {
        let l = Manifest::parse(PIPELINE).and_then(|m| m.lower()).expect("valid manifest");
        assert_eq!(l.components, vec!["parse.wasm", "count.wasm"]);
        assert_eq!(l.plan.name, "orders");
        assert_eq!(l.plan.max_parallelism, Some(64));
        assert_eq!(l.plan.nodes[1].parallelism, Some(2));
        assert_eq!(l.plan.nodes[2].name, "count per region");
        assert_eq!(l.plan.nodes[2].kind, NodeKind::Operator { keyed: true, side_outputs: vec![], state_ttl_ms: None });
        assert_eq!(l.plan.nodes[4].kind, NodeKind::Sink(SinkKind::File(Some("out.txt".into()))));
        let edges: Vec<(u32, u32, Partitioning)> = l.plan.edges.iter().map(|e| (e.source, e.target, e.partitioning)).collect();
        assert_eq!(
            edges,
            vec![
                (0, 1, Partitioning::Forward),
                (1, 2, Partitioning::KeyBy),
                (1, 3, Partitioning::Rebalance),
                (2, 4, Partitioning::Rebalance),
                (3, 4, Partitioning::Rebalance)
            ]
        );
        assert_eq!(l.operators[0], None);
        assert_eq!(l.operators[1], Some(OperatorCode { component: 0, op: 0, args: vec![] }));
        assert_eq!(l.operators[2], Some(OperatorCode { component: 1, op: 3, args: vec![("min".into(), "5".into())] }));
        assert_eq!(l.operators[3], Some(OperatorCode { component: 0, op: 1, args: vec![] }));
        l.plan.validate(2).expect("the lowered plan is valid");
    }

    #[test]
    fn a_source_or_sink_that_is_not_built_in_is_a_connector_with_its_options() {
        let text = "name = \"x\"\n[[node]]\nuid = \"in\"\nsource = \"kafka\"\noptions = { topic = \"clicks\", partitions = 4, earliest = true }\n[[node]]\nuid = \"out\"\nsink = \"postgres\"\noptions = { table = \"t\" }";
        let l = Manifest::parse(text).and_then(|m| m.lower()).expect("lowered");
        let opts = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let kafka = Connector { kind: "kafka".into(), options: opts(&[("earliest", "true"), ("partitions", "4"), ("topic", "clicks")]) };
        assert_eq!(l.plan.nodes[0].kind, NodeKind::Source(SourceKind::Connector(kafka)));
        let pg = Connector { kind: "postgres".into(), options: opts(&[("table", "t")]) };
        assert_eq!(l.plan.nodes[1].kind, NodeKind::Sink(SinkKind::Connector(pg)));
        l.plan.validate(1).expect("the lowered plan is valid");
    }

    #[test]
    fn refuses_what_does_not_make_sense() {
        let refused = |text: &str, wanted: &str| {
            let e = Manifest::parse(text).and_then(|m| m.lower()).expect_err("refused");
            assert!(e.to_string().contains(wanted), "{e} does not mention {wanted:?}");
        };
        refused("name = 1", "invalid type");
        refused("name = \"x\"\nbogus = 1", "unknown field");
        refused("name = \"x\"\n[[node]]\nuid = \"a\"\nsource = \"file-lines\"\nsink = \"stdout\"", "exactly one of");
        refused("name = \"x\"\n[[node]]\nuid = \"a\"\nsource = \"kafka\"\npath = \"x\"", "connector \"kafka\" takes `options`");
        refused("name = \"x\"\n[[node]]\nuid = \"a\"\nsource = \"generator\"\ncount = 1\noptions = { a = 1 }", "`options` belong to connectors");
        refused("name = \"x\"\n[[node]]\nuid = \"a\"\nsource = \"generator\"", "needs `count`");
        refused("name = \"x\"\n[[node]]\nuid = \"a\"\ncomponent = \"a.wasm\"", "no node before it");
        refused(
            "name = \"x\"\n[[node]]\nuid = \"a\"\nsource = \"generator\"\ncount = 1\n[[node]]\nuid = \"b\"\ncomponent = \"b.wasm\"\ninputs = [\"c\"]",
            "input \"c\" is not a node before it",
        );
        refused(
            "name = \"x\"\n[[node]]\nuid = \"a\"\nsource = \"generator\"\ncount = 1\n[[node]]\nuid = \"b\"\nsink = \"stdout\"\nkeyed = true",
            "belong to operators",
        );
        refused(
            "name = \"x\"\n[[node]]\nuid = \"a\"\nsource = \"generator\"\ncount = 1\n[[node]]\nuid = \"b\"\nsink = \"stdout\"\npartitioning = \"hash\"",
            "unknown partitioning",
        );
    }

    const JOIN: &str = r#"
name = "orders-payments"

[[node]]
uid = "orders"
source = "text-lines"

[[node]]
uid = "parse-orders"
component = "parse.wasm"
key-type = "order-id"

[[node]]
uid = "payments"
source = "text-lines"

[[node]]
uid = "parse-payments"
component = "parse.wasm"
operator = 1
key-type = "order-id"

[[node]]
uid = "refunds"
component = "parse.wasm"
operator = 2
inputs = ["payments"]
key-type = "order-id"

[[node]]
uid = "join"
component = "join.wasm"
keyed = true
partitioning = "key-by"
inputs = ["parse-orders"]
inputs2 = ["parse-payments", "refunds"]

[[node]]
uid = "out"
sink = "stdout"
"#;

    #[test]
    fn a_keyed_operator_with_inputs2_is_a_connect_of_both_inputs() {
        let l = Manifest::parse(JOIN).and_then(|m| m.lower()).expect("valid manifest");
        let edges: Vec<(u32, u32, Partitioning, u32, Option<&str>)> =
            l.plan.edges.iter().map(|e| (e.source, e.target, e.partitioning, e.input, e.key_type.as_deref())).collect();
        let id = Some("order-id");
        assert_eq!(
            edges,
            vec![
                (0, 1, Partitioning::Forward, 0, None),
                (2, 3, Partitioning::Forward, 0, None),
                (2, 4, Partitioning::Forward, 0, None),
                (1, 5, Partitioning::KeyBy, 0, id),
                (3, 5, Partitioning::KeyBy, 1, id),
                (4, 5, Partitioning::KeyBy, 1, id),
                (5, 6, Partitioning::Forward, 0, None),
            ]
        );
        assert!(l.plan.is_two_input(5));
        l.plan.validate(3).expect("the lowered plan is valid");
    }

    #[test]
    fn a_connect_of_different_key_types_or_unkeyed_inputs_is_refused_naming_it() {
        let plan_error = |text: String| -> String {
            let l = Manifest::parse(&text).and_then(|m| m.lower()).expect("lowers");
            l.plan.validate(1).expect_err("refused").to_string()
        };
        let other_type = JOIN.replacen(
            "operator = 2\ninputs = [\"payments\"]\nkey-type = \"order-id\"",
            "operator = 2\ninputs = [\"payments\"]\nkey-type = \"customer\"",
            1,
        );
        let e = plan_error(other_type);
        assert!(e.contains("\"join\"") && e.contains("keyed by different types") && e.contains("customer"), "{e}");
        let e = plan_error(JOIN.replace("partitioning = \"key-by\"\n", ""));
        assert!(e.contains("\"join\"") && e.contains("a connect must only have key-by inputs"), "{e}");
        // Without key types the types are not checked, as for a Rust plan without them.
        Manifest::parse(&JOIN.replace("key-type = \"order-id\"\n", "")).and_then(|m| m.lower()).expect("lowers").plan.validate(1).expect("valid");
    }

    #[test]
    fn refuses_a_second_input_that_does_not_make_sense() {
        let refused = |text: String, wanted: &str| {
            let e = Manifest::parse(&text).and_then(|m| m.lower()).expect_err("refused").to_string();
            assert!(e.contains("\"join\"") && e.contains(wanted), "{e} does not name the node and {wanted:?}");
        };
        refused(JOIN.replace("keyed = true\n", ""), "`inputs2` (a second input) belongs to keyed operators");
        refused(JOIN.replace("[\"parse-payments\", \"refunds\"]", "[]"), "`inputs2` names no node");
        refused(JOIN.replace("[\"parse-payments\", \"refunds\"]", "[\"parse-orders\"]"), "\"parse-orders\" feeds both inputs");
        refused(JOIN.replace("[\"parse-payments\", \"refunds\"]", "[\"nope\"]"), "input \"nope\" is not a node before it");
        refused(JOIN.replace("keyed = true\n", "keyed = true\nstate-ttl-ms = 1000\n"), "`state-ttl-ms` is not supported in manifests");
        let e = Manifest::parse(&JOIN.replace("sink = \"stdout\"", "sink = \"stdout\"\ninputs2 = [\"orders\"]"))
            .and_then(|m| m.lower())
            .expect_err("refused");
        assert!(e.to_string().contains("node \"out\": `operator`, `keyed`, `args` and `inputs2` belong to operators"), "{e}");
    }
}
