//! The job graph as a component declares it (mirrors `plan-types` in the WIT), and the
//! checks that make it safe to execute. The JobManager turns a checked [`JobPlan`] into
//! an execution graph; nothing downstream re-validates it.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::keygroup::DEFAULT_MAX_PARALLELISM;

/// Largest parallelism (and max parallelism) a plan may ask for.
pub const MAX_PARALLELISM_LIMIT: u32 = 32_768;

/// Most nodes and edges a plan may have. A plan comes from untrusted code and is
/// checked outside the sandbox, so its size is bounded before any graph walk.
pub const MAX_NODES: usize = 4_096;
/// See [`MAX_NODES`].
pub const MAX_EDGES: usize = 16_384;

/// How records travel along an edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Partitioning {
    /// Subtask i to subtask i.
    Forward,
    /// By key group of the record key.
    KeyBy,
    /// Round-robin.
    Rebalance,
    /// To every downstream subtask.
    Broadcast,
}

/// An external system a source reads or a sink writes, configured by named options
/// (Flink SQL's `WITH (...)`). `weir-connectors` knows each kind and its options; the
/// JobManager checks them at submission. Secrets are never options: an option names the
/// file or environment variable (on the TaskManager) that holds one, so plans, REST
/// documents and logs can show every option as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connector {
    /// `kafka`, `postgres`, ...
    pub kind: String,
    /// Option name -> value.
    pub options: std::collections::BTreeMap<String, String>,
}

impl std::fmt::Display for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.kind)?;
        for (i, (k, v)) in self.options.iter().enumerate() {
            write!(f, "{}{k}={v}", if i == 0 { " " } else { ", " })?;
        }
        Ok(())
    }
}

/// Host-run sources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SourceKind {
    /// Lines of a text file, each value a postcard string (what the Rust SDK reads);
    /// `None` until bound at submission.
    FileLines(Option<String>),
    /// Lines of a text file, each value the line's UTF-8 bytes as they are (what
    /// operators in other languages read most easily); `None` until bound.
    TextLines(Option<String>),
    /// Sequence numbers `start..start+count`.
    Generator {
        /// First number.
        start: u64,
        /// How many.
        count: u64,
        /// Event time: number `n` has timestamp `n / records_per_ms`; `None`: 0.
        records_per_ms: Option<u64>,
    },
    /// An external system's records (Kafka).
    Connector(Connector),
}

/// Host-run sinks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SinkKind {
    /// Text lines on stdout.
    Stdout,
    /// Text lines in a file; `None` until bound at submission (stdout if never bound).
    File(Option<String>),
    /// Count and drop.
    Discard,
    /// Text lines written to an external system (PostgreSQL, Kafka).
    Connector(Connector),
}

/// What a node does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeKind {
    /// A host-run source.
    Source(SourceKind),
    /// A guest operator; `keyed` operators get their value state with each batch.
    Operator {
        /// Reads keyed state.
        keyed: bool,
        /// Names of its side outputs; its output batches name one by index here.
        side_outputs: Vec<String>,
        /// A keyed operator's state time-to-live (ms of processing time): its value state,
        /// map entry values and list elements start with their expiry (`i64` LE ms), and
        /// the host drops expired ones in the background (`weir_state::Ttl`).
        state_ttl_ms: Option<u64>,
    },
    /// A host-run sink.
    Sink(SinkKind),
}

/// One vertex of the job graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Stable id, unique in the job.
    pub uid: String,
    /// Display name.
    pub name: String,
    /// What it does.
    pub kind: NodeKind,
    /// Explicit parallelism, or the job default.
    pub parallelism: Option<u32>,
    /// Generate watermarks from this node's output (instead of passing on its
    /// inputs' watermarks).
    pub watermarks: Option<WatermarkStrategy>,
}

/// Flink's bounded out-of-orderness watermark strategy, with idleness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatermarkStrategy {
    /// How far (ms) a record may lag the newest timestamp and still be on time.
    pub out_of_orderness_ms: u64,
    /// Silent this long (ms of processing time), a source split stops holding the
    /// watermark back (and a subtask whose splits all did goes idle downstream).
    pub idle_timeout_ms: Option<u64>,
}

/// A directed edge by node index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edge {
    /// Upstream node index.
    pub source: u32,
    /// Downstream node index.
    pub target: u32,
    /// Distribution over downstream subtasks.
    pub partitioning: Partitioning,
    /// `None`: the source's main output; else the side output of this name.
    pub side_output: Option<String>,
    /// The target's input it feeds: 0, or 1 for the second input of a two-input
    /// (connect) operator.
    pub input: u32,
    /// A key-by edge's key type as the SDK names it; a node's key-by inputs must agree.
    pub key_type: Option<String>,
}

impl Edge {
    /// An edge carrying `source`'s main output into `target`'s (first) input.
    pub fn main(source: u32, target: u32, partitioning: Partitioning) -> Self {
        Edge { source, target, partitioning, side_output: None, input: 0, key_type: None }
    }

    /// True if a keyed operator may read this edge: key-by, or broadcast into a
    /// connect's second input (the broadcast state's input).
    fn keyed_input(&self) -> bool {
        self.partitioning == Partitioning::KeyBy || (self.input == 1 && self.partitioning == Partitioning::Broadcast)
    }
}

/// A job's dataflow graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobPlan {
    /// Job name.
    pub name: String,
    /// Vertices; index = operator id.
    pub nodes: Vec<Node>,
    /// Edges.
    pub edges: Vec<Edge>,
    /// Key groups; `None` = [`DEFAULT_MAX_PARALLELISM`].
    pub max_parallelism: Option<u32>,
}

/// Why a plan cannot run.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PlanError {
    /// The plan has no nodes.
    #[error("the job plan has no nodes")]
    Empty,
    /// Two nodes share a uid.
    #[error("two nodes have the uid {0:?}; uids must be unique")]
    DuplicateUid(String),
    /// An edge names a node that does not exist.
    #[error("edge {edge} refers to node {node}, but the plan has {nodes} nodes")]
    DanglingEdge {
        /// Edge index.
        edge: usize,
        /// Node index it names.
        node: u32,
        /// Number of nodes.
        nodes: usize,
    },
    /// A node's inputs or outputs do not fit its kind.
    #[error("node {uid:?}: {problem}")]
    BadNode {
        /// The node.
        uid: String,
        /// What is wrong.
        problem: String,
    },
    /// The graph has a cycle.
    #[error("the job graph has a cycle through node {0:?}")]
    Cycle(String),
    /// A parallelism is zero or too large.
    #[error("{what} is {value}; it must be between 1 and {MAX_PARALLELISM_LIMIT}")]
    BadParallelism {
        /// Which setting.
        what: String,
        /// The value.
        value: u32,
    },
    /// The plan is larger than the host accepts.
    #[error("the plan has {nodes} nodes and {edges} edges; the limits are {MAX_NODES} and {MAX_EDGES}")]
    TooLarge {
        /// Nodes in the plan.
        nodes: usize,
        /// Edges in the plan.
        edges: usize,
    },
    /// A submission-time binding does not fit the plan.
    #[error("{0}")]
    Binding(String),
}

impl JobPlan {
    /// Number of key groups.
    pub fn max_parallelism(&self) -> u32 {
        self.max_parallelism.unwrap_or(DEFAULT_MAX_PARALLELISM)
    }

    /// Parallelism of node `i` given the job default.
    pub fn parallelism_of(&self, i: usize, default: u32) -> u32 {
        self.nodes.get(i).and_then(|n| n.parallelism).unwrap_or(default)
    }

    /// The index of side output `name` among node `i`'s, if it declares one.
    pub fn side_output_index(&self, i: usize, name: &str) -> Option<u32> {
        match &self.nodes.get(i)?.kind {
            NodeKind::Operator { side_outputs, .. } => side_outputs.iter().position(|s| s == name).map(|p| p as u32),
            _ => None,
        }
    }

    /// True if node `i` is a two-input (connect) operator: an edge feeds its input 1.
    pub fn is_two_input(&self, i: usize) -> bool {
        self.inputs(i).any(|e| e.input == 1)
    }

    /// True if node `i` is a keyed broadcast operator: its second input is broadcast,
    /// its records reach every subtask and go to the operator's broadcast state, not to
    /// any key's.
    pub fn has_broadcast_input(&self, i: usize) -> bool {
        self.inputs(i).any(|e| e.input == 1 && e.partitioning == Partitioning::Broadcast)
    }

    /// Indices of the edges into node `i`.
    pub fn inputs(&self, i: usize) -> impl Iterator<Item = &Edge> {
        self.edges.iter().filter(move |e| e.target as usize == i)
    }

    /// Indices of the edges out of node `i`.
    pub fn outputs(&self, i: usize) -> impl Iterator<Item = &Edge> {
        self.edges.iter().filter(move |e| e.source as usize == i)
    }

    /// Checks the plan's size, the first thing to do with a plan from a guest.
    pub fn check_size(&self) -> Result<(), PlanError> {
        if self.nodes.len() > MAX_NODES || self.edges.len() > MAX_EDGES {
            return Err(PlanError::TooLarge { nodes: self.nodes.len(), edges: self.edges.len() });
        }
        Ok(())
    }

    /// Checks that the graph is executable at `default_parallelism`.
    pub fn validate(&self, default_parallelism: u32) -> Result<(), PlanError> {
        if self.nodes.is_empty() {
            return Err(PlanError::Empty);
        }
        self.check_size()?;
        check_parallelism("the max parallelism", self.max_parallelism())?;
        check_parallelism("the default parallelism", default_parallelism)?;
        let mut uids = std::collections::HashSet::new();
        for n in &self.nodes {
            if !uids.insert(n.uid.as_str()) {
                return Err(PlanError::DuplicateUid(n.uid.clone()));
            }
            if let Some(p) = n.parallelism {
                check_parallelism(&format!("the parallelism of {:?}", n.uid), p)?;
            }
        }
        for (i, e) in self.edges.iter().enumerate() {
            for node in [e.source, e.target] {
                if node as usize >= self.nodes.len() {
                    return Err(PlanError::DanglingEdge { edge: i, node, nodes: self.nodes.len() });
                }
            }
            let (source, target) = (&self.nodes[e.source as usize], &self.nodes[e.target as usize]);
            if let Some(name) = &e.side_output
                && self.side_output_index(e.source as usize, name).is_none()
            {
                return Err(PlanError::BadNode {
                    uid: target.uid.clone(),
                    problem: format!("its input is side output {name:?} of {:?}, which declares no such side output", source.uid),
                });
            }
            // Channels are named by their producer and consumer subtasks, so one pair of
            // nodes has one edge (the SDK passes a node that is in a union twice through
            // a node of its own the second time).
            if self.edges[..i].iter().any(|d| d.source == e.source && d.target == e.target) {
                return Err(PlanError::BadNode { uid: target.uid.clone(), problem: format!("it has two input edges from {:?}", source.uid) });
            }
        }
        for (i, n) in self.nodes.iter().enumerate() {
            let bad = |problem: &str| PlanError::BadNode { uid: n.uid.clone(), problem: problem.to_string() };
            let ins: Vec<&Edge> = self.inputs(i).collect();
            let outs = self.outputs(i).count();
            if let NodeKind::Operator { side_outputs, .. } = &n.kind {
                for (j, name) in side_outputs.iter().enumerate() {
                    if name.is_empty() || side_outputs[..j].contains(name) {
                        return Err(bad(&format!("side output names must be unique and not empty, but {name:?} is not")));
                    }
                }
            }
            match &n.kind {
                NodeKind::Operator { keyed: false, state_ttl_ms: Some(_), .. } => return Err(bad("only a keyed operator has state with a TTL")),
                NodeKind::Operator { state_ttl_ms: Some(0), .. } => return Err(bad("a state TTL must be at least 1 ms")),
                NodeKind::Source(_) if !ins.is_empty() => return Err(bad("a source cannot have inputs")),
                NodeKind::Sink(_) if outs != 0 => return Err(bad("a sink cannot have outputs")),
                NodeKind::Sink(_) if n.watermarks.is_some() => return Err(bad("a sink emits nothing to generate watermarks from")),
                NodeKind::Operator { .. } | NodeKind::Sink(_) if ins.is_empty() => {
                    return Err(bad("it has no input"));
                }
                NodeKind::Operator { keyed: true, .. } if ins.iter().any(|e| !e.keyed_input()) => {
                    let e = ins.iter().find(|e| !e.keyed_input()).map_or(0, |e| e.source);
                    let what = if self.is_two_input(i) { "a connect" } else { "a keyed operator" };
                    return Err(bad(&format!(
                        "{what} must only have key-by inputs, but its input from {:?} is not keyed (key both streams the same way)",
                        self.nodes[e as usize].uid
                    )));
                }
                _ => {}
            }
            if let Some(e) = ins.iter().find(|e| e.input > 1) {
                return Err(bad(&format!(
                    "its input edge from {:?} feeds input {}; operators have inputs 0 and 1",
                    self.nodes[e.source as usize].uid, e.input
                )));
            }
            if self.is_two_input(i) {
                if !matches!(n.kind, NodeKind::Operator { keyed: true, .. }) {
                    return Err(bad("only a keyed operator has two inputs (a connect of two keyed streams)"));
                }
                if !ins.iter().any(|e| e.input == 0) {
                    return Err(bad("it is a two-input operator with nothing on its first input"));
                }
                let broadcast = ins.iter().filter(|e| e.input == 1 && e.partitioning == Partitioning::Broadcast).count();
                if broadcast != 0 && broadcast != ins.iter().filter(|e| e.input == 1).count() {
                    return Err(bad("its second input mixes broadcast and key-by edges (broadcast state reads a broadcast input only)"));
                }
            }
            // Keys are opaque bytes to the host: streams keyed by different types would
            // meet in one key's state with bytes that mean different things.
            let mut key_types = ins.iter().filter_map(|e| e.key_type.as_deref().map(|t| (t, e.source)));
            if let Some((first, from)) = key_types.next()
                && let Some((other, other_from)) = key_types.find(|(t, _)| t != &first)
            {
                return Err(bad(&format!(
                    "its inputs are keyed by different types: {:?} by {first}, {:?} by {other}",
                    self.nodes[from as usize].uid, self.nodes[other_from as usize].uid
                )));
            }
            for e in ins {
                if e.partitioning == Partitioning::Forward {
                    let (up, down) = (self.parallelism_of(e.source as usize, default_parallelism), self.parallelism_of(i, default_parallelism));
                    if up != down {
                        return Err(bad(&format!(
                            "a forward edge needs equal parallelism on both ends, but {:?} has {up} and this node {down}",
                            self.nodes[e.source as usize].uid
                        )));
                    }
                }
            }
        }
        self.topological_order().map(|_| ())
    }

    /// Node indices with every node after all its inputs.
    pub fn topological_order(&self) -> Result<Vec<usize>, PlanError> {
        let n = self.nodes.len();
        let mut indegree = vec![0usize; n];
        for e in &self.edges {
            indegree[e.target as usize] += 1;
        }
        let mut ready: Vec<usize> = (0..n).filter(|&i| indegree[i] == 0).rev().collect();
        let mut order = Vec::with_capacity(n);
        while let Some(i) = ready.pop() {
            order.push(i);
            for e in self.outputs(i) {
                let t = e.target as usize;
                indegree[t] -= 1;
                if indegree[t] == 0 {
                    ready.push(t);
                }
            }
        }
        match (0..n).find(|&i| indegree[i] > 0) {
            Some(i) => Err(PlanError::Cycle(self.nodes[i].uid.clone())),
            None => Ok(order),
        }
    }

    /// Binds the submission's `--input` to every file source without a path, and
    /// `--output` to every text sink that leaves it to the submitter.
    pub fn bind_io(&mut self, input: Option<&str>, output: Option<&str>) -> Result<(), PlanError> {
        let mut used_input = false;
        for n in &mut self.nodes {
            match &mut n.kind {
                NodeKind::Source(SourceKind::FileLines(path @ None) | SourceKind::TextLines(path @ None)) => {
                    used_input = true;
                    match input {
                        Some(p) => *path = Some(p.to_string()),
                        None => {
                            return Err(PlanError::Binding(format!(
                                "source {:?} reads the file given at submission, but no input file was given (--input)",
                                n.uid
                            )));
                        }
                    }
                }
                NodeKind::Sink(SinkKind::File(path @ None)) => *path = output.map(str::to_string),
                _ => {}
            }
        }
        if input.is_some() && !used_input {
            return Err(PlanError::Binding("an input file was given, but the job has no source that reads one".into()));
        }
        Ok(())
    }

    /// A human-readable rendering of the graph, one node per line.
    pub fn describe(&self, default_parallelism: u32) -> String {
        let mut s = format!("job {:?} (max parallelism {})\n", self.name, self.max_parallelism());
        for (i, n) in self.nodes.iter().enumerate() {
            let kind = match &n.kind {
                NodeKind::Source(SourceKind::FileLines(p)) => format!("source file-lines {}", p.as_deref().unwrap_or("<--input>")),
                NodeKind::Source(SourceKind::TextLines(p)) => format!("source text-lines {}", p.as_deref().unwrap_or("<--input>")),
                NodeKind::Source(SourceKind::Generator { start, count, .. }) => format!("source generator {start}..{}", start.saturating_add(*count)),
                NodeKind::Operator { keyed, side_outputs, state_ttl_ms } => {
                    let mut s = if *keyed { "operator (keyed)".to_string() } else { "operator".to_string() };
                    if !side_outputs.is_empty() {
                        s += &format!(" side outputs {side_outputs:?}");
                    }
                    if let Some(ms) = state_ttl_ms {
                        s += &format!(" state TTL {ms} ms");
                    }
                    s
                }
                NodeKind::Sink(SinkKind::Stdout) => "sink stdout".into(),
                NodeKind::Sink(SinkKind::File(p)) => format!("sink file {}", p.as_deref().unwrap_or("<--output or stdout>")),
                NodeKind::Sink(SinkKind::Discard) => "sink discard".into(),
                NodeKind::Source(SourceKind::Connector(c)) => format!("source {c}"),
                NodeKind::Sink(SinkKind::Connector(c)) => format!("sink {c}"),
            };
            s += &format!("  [{i}] {} ({}) {kind}, parallelism {}\n", n.uid, n.name, self.parallelism_of(i, default_parallelism));
            for e in self.outputs(i) {
                let target = self.nodes.get(e.target as usize).map_or("?", |t| t.uid.as_str());
                let side = e.side_output.as_ref().map_or(String::new(), |name| format!(" (side output {name:?})"));
                let input = if self.is_two_input(e.target as usize) { format!(" (input {})", e.input + 1) } else { String::new() };
                s += &format!("      -> [{}] {target} {:?}{side}{input}\n", e.target, e.partitioning);
            }
        }
        s
    }
}

fn check_parallelism(what: &str, value: u32) -> Result<(), PlanError> {
    if value == 0 || value > MAX_PARALLELISM_LIMIT {
        return Err(PlanError::BadParallelism { what: what.to_string(), value });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(uid: &str, kind: NodeKind) -> Node {
        Node { uid: uid.into(), name: uid.into(), kind, parallelism: None, watermarks: None }
    }

    fn wordcount() -> JobPlan {
        JobPlan {
            name: "wc".into(),
            nodes: vec![
                node("lines", NodeKind::Source(SourceKind::FileLines(None))),
                node("split", NodeKind::Operator { keyed: false, side_outputs: vec![], state_ttl_ms: None }),
                node("count", NodeKind::Operator { keyed: true, side_outputs: vec!["late".into()], state_ttl_ms: None }),
                node("out", NodeKind::Sink(SinkKind::File(None))),
            ],
            edges: vec![Edge::main(0, 1, Partitioning::Forward), Edge::main(1, 2, Partitioning::KeyBy), Edge::main(2, 3, Partitioning::Forward)],
            max_parallelism: None,
        }
    }

    #[test]
    fn valid_plan_passes_and_orders() {
        let p = wordcount();
        assert_eq!(p.validate(2), Ok(()));
        assert_eq!(p.topological_order(), Ok(vec![0, 1, 2, 3]));
    }

    #[test]
    fn rejects_bad_graphs() {
        let mut p = wordcount();
        p.edges[1].partitioning = Partitioning::Forward;
        assert!(matches!(p.validate(1), Err(PlanError::BadNode { .. })));
        let mut p = wordcount();
        p.edges.push(Edge::main(2, 1, Partitioning::Rebalance));
        assert!(matches!(p.validate(1), Err(PlanError::Cycle(_))));
        let mut p = wordcount();
        p.nodes[3].uid = "split".into();
        assert_eq!(p.validate(1), Err(PlanError::DuplicateUid("split".into())));
        let mut p = wordcount();
        p.edges[0].target = 9;
        assert!(matches!(p.validate(1), Err(PlanError::DanglingEdge { .. })));
        let mut p = wordcount();
        p.nodes[1].parallelism = Some(3);
        assert!(matches!(p.validate(2), Err(PlanError::BadNode { .. })));
        assert!(matches!(wordcount().validate(0), Err(PlanError::BadParallelism { .. })));
        let mut p = wordcount();
        p.edges = vec![p.edges[0].clone(); MAX_EDGES + 1];
        assert!(matches!(p.validate(1), Err(PlanError::TooLarge { .. })));
    }

    #[test]
    fn side_output_edges_name_a_declared_output() {
        let mut p = wordcount();
        p.nodes.push(node("late", NodeKind::Sink(SinkKind::Discard)));
        p.edges.push(Edge { side_output: Some("late".into()), ..Edge::main(2, 4, Partitioning::Rebalance) });
        assert_eq!(p.validate(2), Ok(()));
        assert_eq!(p.side_output_index(2, "late"), Some(0));
        assert!(p.describe(2).contains("-> [4] late Rebalance (side output \"late\")"));
        let mut undeclared = p.clone();
        undeclared.edges[3].side_output = Some("early".into());
        let err = undeclared.validate(2).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("side output \"early\" of \"count\", which declares no such"), "{err}");
        let mut from_source = p.clone();
        from_source.edges[3].source = 0;
        assert!(matches!(from_source.validate(2), Err(PlanError::BadNode { .. })), "sources have no side outputs");
        let mut twice = p.clone();
        twice.edges.push(Edge::main(2, 4, Partitioning::Rebalance));
        assert!(twice.validate(2).err().is_some_and(|e| e.to_string().contains("two input edges from \"count\"")));
        let mut duplicate = p;
        duplicate.nodes[2].kind = NodeKind::Operator { keyed: true, side_outputs: vec!["late".into(), "late".into()], state_ttl_ms: None };
        assert!(matches!(duplicate.validate(2), Err(PlanError::BadNode { .. })));
    }

    /// clicks and profiles, keyed by user, meet in one two-input operator.
    fn enrichment() -> JobPlan {
        let keyed = |source, input| Edge { input, key_type: Some("alloc::string::String".into()), ..Edge::main(source, 2, Partitioning::KeyBy) };
        JobPlan {
            name: "enrich".into(),
            nodes: vec![
                node("clicks", NodeKind::Source(SourceKind::Generator { start: 0, count: 10, records_per_ms: None })),
                node("profiles", NodeKind::Source(SourceKind::Generator { start: 0, count: 10, records_per_ms: None })),
                node("enrich", NodeKind::Operator { keyed: true, side_outputs: vec![], state_ttl_ms: None }),
                node("out", NodeKind::Sink(SinkKind::Discard)),
            ],
            edges: vec![keyed(0, 0), keyed(1, 1), Edge::main(2, 3, Partitioning::Forward)],
            max_parallelism: None,
        }
    }

    fn problem(p: &JobPlan) -> String {
        p.validate(2).err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn a_connect_needs_two_inputs_keyed_alike() {
        let p = enrichment();
        assert_eq!(p.validate(2), Ok(()));
        assert!(p.is_two_input(2) && !p.is_two_input(3));
        assert!(p.describe(2).contains("-> [2] enrich KeyBy (input 2)"), "{}", p.describe(2));
        let mut unkeyed = enrichment();
        unkeyed.edges[1].partitioning = Partitioning::Rebalance;
        unkeyed.edges[1].key_type = None;
        let err = problem(&unkeyed);
        assert!(err.contains("a connect must only have key-by inputs, but its input from \"profiles\" is not keyed"), "{err}");
        let mut other_key = enrichment();
        other_key.edges[1].key_type = Some("u64".into());
        let err = problem(&other_key);
        assert!(err.contains("keyed by different types: \"clicks\" by alloc::string::String, \"profiles\" by u64"), "{err}");
        let mut third = enrichment();
        third.edges[1].input = 2;
        assert!(problem(&third).contains("feeds input 2"));
        let mut second_only = enrichment();
        second_only.edges[0].input = 1;
        assert!(problem(&second_only).contains("nothing on its first input"));
        let mut not_keyed = enrichment();
        not_keyed.nodes[2].kind = NodeKind::Operator { keyed: false, side_outputs: vec![], state_ttl_ms: None };
        assert!(problem(&not_keyed).contains("only a keyed operator has two inputs"));
        let mut cycle = enrichment();
        cycle.nodes[3].kind = NodeKind::Operator { keyed: false, side_outputs: vec![], state_ttl_ms: None };
        cycle.nodes.push(node("sink", NodeKind::Sink(SinkKind::Discard)));
        cycle.edges.push(Edge::main(3, 4, Partitioning::Forward));
        cycle.edges.push(Edge { input: 1, key_type: Some("alloc::string::String".into()), ..Edge::main(3, 2, Partitioning::KeyBy) });
        assert_eq!(problem(&cycle), "the job graph has a cycle through node \"enrich\"");
    }

    #[test]
    fn a_broadcast_input_is_a_connects_second_input_only() {
        let mut p = enrichment();
        p.edges[1] = Edge { input: 1, ..Edge::main(1, 2, Partitioning::Broadcast) };
        assert_eq!(p.validate(2), Ok(()));
        assert!(p.has_broadcast_input(2) && p.is_two_input(2));
        let mut first = p.clone();
        first.edges[0] = Edge::main(0, 2, Partitioning::Broadcast);
        assert!(problem(&first).contains("its input from \"clicks\" is not keyed"), "{}", problem(&first));
        let mut mixed = p.clone();
        mixed.nodes.push(node("more", NodeKind::Source(SourceKind::Generator { start: 0, count: 10, records_per_ms: None })));
        mixed.edges.push(Edge { input: 1, key_type: Some("alloc::string::String".into()), ..Edge::main(4, 2, Partitioning::KeyBy) });
        assert!(problem(&mixed).contains("mixes broadcast and key-by"), "{}", problem(&mixed));
        assert!(!enrichment().has_broadcast_input(2));
    }

    #[test]
    fn a_state_ttl_belongs_to_keyed_operators_and_is_at_least_1_ms() {
        let mut p = enrichment();
        p.nodes[2].kind = NodeKind::Operator { keyed: true, side_outputs: vec![], state_ttl_ms: Some(60_000) };
        assert_eq!(p.validate(2), Ok(()));
        assert!(p.describe(2).contains("state TTL 60000 ms"), "{}", p.describe(2));
        p.nodes[2].kind = NodeKind::Operator { keyed: true, side_outputs: vec![], state_ttl_ms: Some(0) };
        assert!(problem(&p).contains("a state TTL must be at least 1 ms"));
        let mut p = wordcount();
        let i = p.nodes.iter().position(|n| matches!(n.kind, NodeKind::Operator { keyed: false, .. })).expect("an unkeyed operator");
        p.nodes[i].kind = NodeKind::Operator { keyed: false, side_outputs: vec![], state_ttl_ms: Some(5) };
        assert!(problem(&p).contains("only a keyed operator has state with a TTL"));
    }

    #[test]
    fn a_union_is_a_node_with_several_inputs() {
        let mut p = wordcount();
        p.nodes.insert(1, node("more", NodeKind::Source(SourceKind::Generator { start: 0, count: 10, records_per_ms: None })));
        for e in &mut p.edges {
            e.source += u32::from(e.source >= 1);
            e.target += u32::from(e.target >= 1);
        }
        p.edges.push(Edge::main(1, 2, Partitioning::Rebalance));
        assert_eq!(p.validate(2), Ok(()));
        assert!(!p.is_two_input(2));
    }

    #[test]
    fn binds_input_and_output() {
        let mut p = wordcount();
        assert!(p.clone().bind_io(None, None).is_err());
        p.bind_io(Some("in.txt"), Some("out.tsv")).expect("binds");
        assert_eq!(p.nodes[0].kind, NodeKind::Source(SourceKind::FileLines(Some("in.txt".into()))));
        assert_eq!(p.nodes[3].kind, NodeKind::Sink(SinkKind::File(Some("out.tsv".into()))));
    }
}
