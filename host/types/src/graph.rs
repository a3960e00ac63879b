//! From a job plan to an execution graph of chained vertices.

use serde::{Deserialize, Serialize};

use crate::plan::{JobPlan, NodeKind, Partitioning};

/// One vertex: a chain of plan nodes run together in every subtask.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vertex {
    /// Plan node indices, head first.
    pub nodes: Vec<usize>,
    /// Number of subtasks.
    pub parallelism: u32,
    /// Edges from upstream vertices: (vertex index, partitioning, the head operator's
    /// input it feeds: 1 for the second input of a connect, else 0).
    pub inputs: Vec<(usize, Partitioning, u32)>,
    /// Edges to downstream vertices: (vertex index, partitioning, side output of the
    /// last node by index or `None` for its main output).
    pub outputs: Vec<(usize, Partitioning, Option<u32>)>,
    /// Display name: the chained nodes' names joined by arrows.
    pub name: String,
}

impl Vertex {
    /// How many upstream subtasks send to each subtask of this vertex (each ends its
    /// stream with one end marker).
    pub fn producers(&self, graph: &ExecutionGraph) -> usize {
        self.inputs.iter().map(|&(v, p, _)| if p == Partitioning::Forward { 1 } else { graph.vertices[v].parallelism as usize }).sum()
    }
}

/// The vertices of a job in topological order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionGraph {
    /// Vertices; upstream before downstream.
    pub vertices: Vec<Vertex>,
}

impl ExecutionGraph {
    /// Chains a plan that [`JobPlan::validate`] accepted at `default_parallelism`.
    pub fn build(plan: &JobPlan, default_parallelism: u32) -> Self {
        let order = plan.topological_order().unwrap_or_default();
        let mut vertex_of = vec![usize::MAX; plan.nodes.len()];
        let mut vertices: Vec<Vertex> = Vec::new();
        for &i in &order {
            let parallelism = plan.parallelism_of(i, default_parallelism);
            let ins: Vec<_> = plan.inputs(i).collect();
            let chain_into = match ins.as_slice() {
                // A side output leaves its operator's chain: only the main output flows on
                // inside one.
                [e] if e.partitioning == Partitioning::Forward
                    && e.side_output.is_none()
                    && plan.outputs(e.source as usize).count() == 1
                    && plan.parallelism_of(e.source as usize, default_parallelism) == parallelism
                    && !matches!(plan.nodes[i].kind, NodeKind::Source(_)) =>
                {
                    Some(vertex_of[e.source as usize])
                }
                _ => None,
            };
            match chain_into {
                Some(v) => {
                    vertices[v].nodes.push(i);
                    vertex_of[i] = v;
                }
                None => {
                    vertex_of[i] = vertices.len();
                    vertices.push(Vertex { nodes: vec![i], parallelism, inputs: vec![], outputs: vec![], name: String::new() });
                }
            }
        }
        for e in &plan.edges {
            let (s, t) = (vertex_of[e.source as usize], vertex_of[e.target as usize]);
            if s != t {
                let side = e.side_output.as_deref().and_then(|name| plan.side_output_index(e.source as usize, name));
                vertices[s].outputs.push((t, e.partitioning, side));
                vertices[t].inputs.push((s, e.partitioning, e.input));
            }
        }
        for v in &mut vertices {
            v.name = v.nodes.iter().map(|&n| plan.nodes[n].name.as_str()).collect::<Vec<_>>().join(" -> ");
        }
        Self { vertices }
    }

    /// Slots the job needs: with slot sharing, one subtask of every vertex fits in a
    /// slot, so the widest vertex decides.
    pub fn slots_needed(&self) -> u32 {
        self.vertices.iter().map(|v| v.parallelism).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Edge, Node, SinkKind, SourceKind};

    fn node(uid: &str, kind: NodeKind, parallelism: Option<u32>) -> Node {
        Node { uid: uid.into(), name: uid.into(), kind, parallelism, watermarks: None }
    }

    #[test]
    fn chains_forward_edges_and_breaks_at_key_by_and_parallelism_changes() {
        let op = NodeKind::Operator { keyed: false, side_outputs: vec![], state_ttl_ms: None };
        let plan = JobPlan {
            name: "j".into(),
            nodes: vec![
                node("src", NodeKind::Source(SourceKind::Generator { start: 0, count: 10, records_per_ms: None }), None),
                node("map", op.clone(), None),
                node("keyed", NodeKind::Operator { keyed: true, side_outputs: vec![], state_ttl_ms: None }, None),
                node("fmt", op.clone(), None),
                node("narrow", op, Some(1)),
                node("sink", NodeKind::Sink(SinkKind::Discard), Some(1)),
            ],
            edges: vec![
                Edge::main(0, 1, Partitioning::Forward),
                Edge::main(1, 2, Partitioning::KeyBy),
                Edge::main(2, 3, Partitioning::Forward),
                Edge::main(3, 4, Partitioning::Rebalance),
                Edge::main(4, 5, Partitioning::Forward),
            ],
            max_parallelism: None,
        };
        assert_eq!(plan.validate(3), Ok(()));
        let g = ExecutionGraph::build(&plan, 3);
        let chains: Vec<_> = g.vertices.iter().map(|v| (v.nodes.clone(), v.parallelism)).collect();
        assert_eq!(chains, vec![(vec![0, 1], 3), (vec![2, 3], 3), (vec![4, 5], 1)]);
        assert_eq!(g.vertices[1].inputs, vec![(0, Partitioning::KeyBy, 0)]);
        assert_eq!(g.vertices[2].producers(&g), 3);
        assert_eq!(g.vertices[0].name, "src -> map");
        assert_eq!(g.slots_needed(), 3);
    }

    #[test]
    fn a_node_with_two_outputs_ends_its_chain() {
        let op = NodeKind::Operator { keyed: false, side_outputs: vec![], state_ttl_ms: None };
        let plan = JobPlan {
            name: "j".into(),
            nodes: vec![
                node("src", NodeKind::Source(SourceKind::Generator { start: 0, count: 10, records_per_ms: None }), None),
                node("a", op.clone(), None),
                node("b", op, None),
            ],
            edges: vec![Edge::main(0, 1, Partitioning::Forward), Edge::main(0, 2, Partitioning::Forward)],
            max_parallelism: None,
        };
        let g = ExecutionGraph::build(&plan, 2);
        assert_eq!(g.vertices.len(), 3);
        assert_eq!(g.vertices[1].producers(&g), 1);
    }

    #[test]
    fn a_side_output_edge_is_never_chained() {
        let plan = JobPlan {
            name: "j".into(),
            nodes: vec![
                node("src", NodeKind::Source(SourceKind::Generator { start: 0, count: 10, records_per_ms: None }), None),
                node("windows", NodeKind::Operator { keyed: true, side_outputs: vec!["other".into(), "late".into()], state_ttl_ms: None }, None),
                node("late-sink", NodeKind::Sink(SinkKind::Discard), None),
            ],
            edges: vec![
                Edge::main(0, 1, Partitioning::KeyBy),
                // Forward at equal parallelism, the windows' only output: would chain if
                // it were their main output.
                Edge { side_output: Some("late".into()), ..Edge::main(1, 2, Partitioning::Forward) },
            ],
            max_parallelism: None,
        };
        assert_eq!(plan.validate(2), Ok(()));
        let g = ExecutionGraph::build(&plan, 2);
        let chains: Vec<_> = g.vertices.iter().map(|v| v.nodes.clone()).collect();
        assert_eq!(chains, vec![vec![0], vec![1], vec![2]]);
        assert_eq!(g.vertices[1].outputs, vec![(2, Partitioning::Forward, Some(1))]);
    }
}
