//! The job graph as the builder API records it, and its lowering to the WIT `job-plan`
//! plus the operator registry (node index = operator id).

use crate::ops::{Operator, PendingKey};
use crate::time::WatermarkStrategy;
use crate::ttl::StateTtl;
use crate::wit::weir::dataflow::plan_types as wit;

pub(crate) enum NodeKind {
    Source(wit::SourceKind),
    Operator {
        keyed: bool,
        op: Box<dyn Operator>,
    },
    /// A `key_by`; becomes part of its upstream operator or an operator of its own.
    KeySelector(Box<dyn PendingKey>),
    Sink(wit::SinkKind),
    /// Left behind when a key selector was fused away.
    Removed,
}

pub(crate) struct Node {
    pub(crate) uid: String,
    pub(crate) name: String,
    pub(crate) kind: NodeKind,
    pub(crate) parallelism: Option<u32>,
    /// Generate watermarks from this node's output (sources and operators only).
    pub(crate) watermarks: Option<WatermarkStrategy>,
    /// The side outputs the plan reads or the operator was told to fill, in order of
    /// declaration: their index is what output batches carry.
    pub(crate) side_outputs: Vec<String>,
    /// A keyed operator's state TTL (ms), which the host sweeps.
    pub(crate) state_ttl_ms: Option<u64>,
    /// The format version of the state the operator writes (declared in `open`).
    pub(crate) state_version: u32,
}

pub(crate) struct Edge {
    pub(crate) source: usize,
    pub(crate) target: usize,
    pub(crate) partitioning: wit::Partitioning,
    /// `None`: the source's main output; else its side output of this name.
    pub(crate) side_output: Option<String>,
    /// The target's input it feeds: 1 for a connect's second, else 0.
    pub(crate) input: u32,
    /// A key-by edge's key type (`type_name`), which the host checks agrees over a
    /// node's inputs.
    pub(crate) key_type: Option<String>,
}

/// What `build` produced: the graph plus the problems found while building it.
#[derive(Default)]
pub(crate) struct Graph {
    pub(crate) name: Option<String>,
    pub(crate) max_parallelism: Option<u32>,
    pub(crate) nodes: Vec<Node>,
    pub(crate) edges: Vec<Edge>,
    pub(crate) errors: Vec<String>,
}

/// The operator registry: `ops[id]` is the operator of node `id`, `None` for sources
/// and sinks.
pub(crate) type Registry = Vec<Option<Registered>>;

/// An operator of the registry.
pub(crate) struct Registered {
    pub(crate) op: Box<dyn Operator>,
    /// The state format version it declares when it opens.
    pub(crate) state_version: u32,
}

impl Graph {
    /// Adds a node, recording an error (and still adding it, so the builder chain goes
    /// on) if the uid is taken.
    pub(crate) fn add_node(&mut self, uid: &str, kind: NodeKind) -> usize {
        if uid.is_empty() {
            self.errors.push("a node has an empty uid".to_string());
        } else if self.nodes.iter().any(|n| n.uid == uid) {
            self.errors.push(format!("uid {uid:?} is used by more than one node"));
        }
        self.nodes.push(Node {
            uid: uid.to_string(),
            name: uid.to_string(),
            kind,
            parallelism: None,
            watermarks: None,
            side_outputs: Vec::new(),
            state_ttl_ms: None,
            state_version: 0,
        });
        self.nodes.len() - 1
    }

    pub(crate) fn add_edge(&mut self, source: usize, target: usize, partitioning: wit::Partitioning, side_output: Option<String>) {
        self.edges.push(Edge { source, target, partitioning, side_output, input: 0, key_type: None });
    }

    /// Adds a key-by edge into input `input` of `target`, naming the key type.
    pub(crate) fn add_keyed_edge(&mut self, source: usize, target: usize, input: u32, key_type: &str) {
        let key_type = Some(key_type.to_string());
        self.edges.push(Edge { source, target, partitioning: wit::Partitioning::KeyBy, side_output: None, input, key_type });
    }

    /// Declares side output `name` on node `index` (once, however often it is asked
    /// for). Only operators emit to side outputs.
    pub(crate) fn declare_side_output(&mut self, index: usize, name: &str) {
        let Some(node) = self.nodes.get_mut(index) else { return };
        if !matches!(node.kind, NodeKind::Operator { .. }) {
            let msg = format!("node {:?}: only operators have side outputs (asked for {name:?})", node.uid);
            self.errors.push(msg);
        } else if name.is_empty() {
            let msg = format!("node {:?}: a side output needs a name", node.uid);
            self.errors.push(msg);
        } else if !node.side_outputs.iter().any(|s| s == name) {
            node.side_outputs.push(name.to_string());
        }
    }

    /// Gives the keyed operator of node `index` the state TTL `ttl`, in the guest (which
    /// stamps and checks expiry) and in the plan (the host sweeps expired state).
    pub(crate) fn set_state_ttl(&mut self, index: usize, ttl: StateTtl) {
        let Some(node) = self.nodes.get_mut(index) else { return };
        let applied = match &mut node.kind {
            NodeKind::Operator { keyed: true, op } => op.set_state_ttl(ttl),
            _ => false,
        };
        if !applied {
            let msg = format!("node {:?}: a state TTL needs a keyed operator with state", node.uid);
            self.errors.push(msg);
        } else if ttl.ms == 0 {
            let msg = format!("node {:?}: a state TTL must be at least 1 ms", node.uid);
            self.errors.push(msg);
        } else {
            node.state_ttl_ms = Some(ttl.ms);
        }
    }

    /// Declares the format version of the state the operator of node `index` writes.
    pub(crate) fn set_state_version(&mut self, index: usize, version: u32) {
        let Some(node) = self.nodes.get_mut(index) else { return };
        match node.kind {
            NodeKind::Operator { .. } => node.state_version = version,
            _ => {
                let msg = format!("node {:?}: only operators have a state version", node.uid);
                self.errors.push(msg);
            }
        }
    }

    pub(crate) fn node_mut(&mut self, index: usize) -> Option<&mut Node> {
        self.nodes.get_mut(index)
    }

    /// Makes node `index` generate watermarks with `strategy`. Only sources and
    /// operators produce records whose timestamps can drive them.
    pub(crate) fn set_watermarks(&mut self, index: usize, strategy: WatermarkStrategy) {
        let Some(node) = self.nodes.get_mut(index) else { return };
        match node.kind {
            NodeKind::Source(_) | NodeKind::Operator { .. } => node.watermarks = Some(strategy),
            _ => {
                let msg = format!("node {:?}: watermarks need a source or an operator", node.uid);
                self.errors.push(msg);
            }
        }
    }

    /// Lowers the graph: places every key selector, drops fused nodes, renumbers, and
    /// returns the plan with the operators in plan order.
    pub(crate) fn finish(mut self, default_name: &str) -> Result<(wit::JobPlan, Registry), String> {
        if !self.errors.is_empty() {
            return Err(self.errors.join("; "));
        }
        for index in 0..self.nodes.len() {
            if matches!(self.nodes[index].kind, NodeKind::KeySelector(_)) {
                self.place_key_selector(index)?;
            }
        }

        let mut new_index = vec![None; self.nodes.len()];
        let mut nodes = Vec::with_capacity(self.nodes.len());
        let mut registry: Registry = Vec::with_capacity(self.nodes.len());
        for (old, node) in self.nodes.into_iter().enumerate() {
            let (kind, op) = match node.kind {
                NodeKind::Removed => continue,
                NodeKind::Source(s) => (wit::NodeKind::Source(s), None),
                NodeKind::Sink(s) => (wit::NodeKind::Sink(s), None),
                NodeKind::Operator { keyed, op } => {
                    let op = Registered { op, state_version: node.state_version };
                    (wit::NodeKind::Operator(wit::OperatorSpec { keyed, side_outputs: node.side_outputs, state_ttl_ms: node.state_ttl_ms }), Some(op))
                }
                NodeKind::KeySelector(_) => return Err(format!("internal: key selector {:?} not placed", node.uid)),
            };
            new_index[old] = Some(u32::try_from(nodes.len()).map_err(|_| "too many nodes".to_string())?);
            let watermarks = node.watermarks.map(WatermarkStrategy::to_wit);
            nodes.push(wit::Node { uid: node.uid, name: node.name, kind, parallelism: node.parallelism, watermarks });
            registry.push(op);
        }
        let mut edges = Vec::with_capacity(self.edges.len());
        for e in &self.edges {
            match (new_index.get(e.source).copied().flatten(), new_index.get(e.target).copied().flatten()) {
                (Some(source), Some(target)) => edges.push(wit::Edge {
                    source,
                    target,
                    partitioning: e.partitioning,
                    side_output: e.side_output.clone(),
                    input: e.input,
                    key_type: e.key_type.clone(),
                }),
                _ => return Err("internal: edge to a removed node".to_string()),
            }
        }
        let plan = wit::JobPlan { name: self.name.unwrap_or_else(|| default_name.to_string()), nodes, edges, max_parallelism: self.max_parallelism };
        Ok((plan, registry))
    }

    /// Fuses the key selector at `index` into its upstream operator when that operator
    /// feeds nothing else (its output then is the keyed stream), or turns it into an
    /// operator of its own, chained to the upstream by a forward edge.
    fn place_key_selector(&mut self, index: usize) -> Result<(), String> {
        let inputs: Vec<(usize, bool)> = self.edges.iter().filter(|e| e.target == index).map(|e| (e.source, e.side_output.is_some())).collect();
        let [(upstream, from_side)] = inputs[..] else {
            // After a union: an operator of its own, read by every stream of it.
            let NodeKind::KeySelector(pending) = core::mem::replace(&mut self.nodes[index].kind, NodeKind::Removed) else {
                return Err("internal: not a key selector".to_string());
            };
            self.nodes[index].kind = NodeKind::Operator { keyed: false, op: pending.into_operator() };
            return Ok(());
        };
        let fan_out = self.edges.iter().filter(|e| e.source == upstream).count();
        let NodeKind::KeySelector(pending) = core::mem::replace(&mut self.nodes[index].kind, NodeKind::Removed) else {
            return Err("internal: not a key selector".to_string());
        };
        let pending = match &mut self.nodes[upstream].kind {
            // Fused, the key would apply to the upstream's main output, not to a side one.
            NodeKind::Operator { op, .. } if !from_side && fan_out == 1 && op.accepts_key(pending.value_type()) => {
                match op.fuse_key(pending.into_fused()) {
                    Ok(()) => {
                        // The upstream now writes keyed records: it takes over the
                        // selector's outgoing edges and the selector disappears.
                        self.edges.retain(|e| e.target != index);
                        for e in &mut self.edges {
                            if e.source == index {
                                e.source = upstream;
                            }
                        }
                        return Ok(());
                    }
                    Err(_) => return Err("internal: an operator refused the key it accepted".to_string()),
                }
            }
            _ => pending,
        };
        let op = pending.into_operator();
        let parallelism = self.nodes[upstream].parallelism;
        let node = &mut self.nodes[index];
        node.kind = NodeKind::Operator { keyed: false, op };
        // Forward edges need equal parallelism; matching the upstream keeps the selector
        // chained to it.
        node.parallelism = parallelism;
        Ok(())
    }
}
