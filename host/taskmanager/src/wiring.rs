//! Which channels a TaskManager's subtasks read and write, as a pure function of the
//! deployment and the TaskManager's index: [`plan`]. The TaskManager (`worker`) carries it out
//! (creates the channels, registers and dials the remote ones); keeping the decision
//! apart lets tests check the wiring of any deployment without threads or sockets.
//!
//! Every producer -> consumer pair of subtasks has a channel of its own, so checkpoint
//! alignment can hold back one input. A channel with both ends on this TaskManager is
//! in memory; one with the other end elsewhere is a data-plane stream named by its
//! [`ChannelId`]. Each channel thus appears once as some subtask's input and once as
//! some subtask's output target, on the TaskManagers of its two ends.

use weir_types::deployment::{ChannelId, JobDeployment};
use weir_types::ids::RunId;
use weir_types::plan::Partitioning;

use crate::error::DeploymentFault;

/// One subtask of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subtask {
    /// Its vertex, by index in the execution graph.
    pub vertex: usize,
    /// Its index among the vertex's subtasks.
    pub index: u32,
}

/// The channel from one subtask to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Link {
    /// The producer.
    pub from: Subtask,
    /// The consumer.
    pub to: Subtask,
}

impl Link {
    /// Its name on the data plane, for job run `run`.
    pub fn channel(&self, run: &RunId) -> ChannelId {
        ChannelId {
            run: run.clone(),
            vertex: self.to.vertex as u32,
            subtask: self.to.index,
            from_vertex: self.from.vertex as u32,
            from_subtask: self.from.index,
        }
    }
}

/// Where one input of a subtask comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A producer on this TaskManager, over an in-memory channel.
    Local(Link),
    /// A producer on another TaskManager, whose stream this channel id names.
    Remote(ChannelId),
}

/// Where one output channel of a subtask goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A consumer on this TaskManager, over an in-memory channel.
    Local(Link),
    /// A consumer on another TaskManager.
    Remote {
        /// That TaskManager, by index in the deployment's `taskmanagers`.
        taskmanager: u32,
        /// The stream to open to it.
        channel: ChannelId,
    },
}

/// One output edge of a subtask: what its router needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The downstream vertex.
    pub vertex: usize,
    /// How records are spread over its subtasks.
    pub partitioning: Partitioning,
    /// The side output of the subtask's last operator it carries (by index), `None`
    /// for the main output.
    pub side_output: Option<u32>,
    /// One per consumer the edge reaches, by subtask index: a router sends a key
    /// group's records to the target at its subtask's index. A forward edge has one.
    pub targets: Vec<Target>,
}

/// A subtask placed on this TaskManager, and its channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubtaskWiring {
    /// Which subtask.
    pub subtask: Subtask,
    /// Its inputs, in the order it reads them: per input edge, its producers by index.
    pub inputs: Vec<Input>,
    /// Per input, the head operator's input its edge feeds (1: a connect's second).
    pub input_of: Vec<u32>,
    /// Its output edges, in the vertex's order.
    pub outputs: Vec<Output>,
}

/// The channels of a TaskManager's share of a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wiring {
    /// The subtasks placed here, in the order of [`JobDeployment::subtasks_on`].
    pub subtasks: Vec<SubtaskWiring>,
}

/// The wiring of the subtasks that `d` places on TaskManager number `me`. Refuses a
/// deployment whose placement or edges do not match its graph (it comes off the wire).
pub fn plan(d: &JobDeployment, me: u32) -> Result<Wiring, DeploymentFault> {
    let vertices = &d.graph.vertices;
    if d.placement.len() != vertices.len() || d.placement.iter().zip(vertices).any(|(p, v)| p.len() != v.parallelism as usize) {
        return Err(DeploymentFault::PlacementMismatch);
    }
    let run = d.run_id();
    // Checked above for every vertex; an edge's far end may still be out of range.
    let on = |s: Subtask| d.placement.get(s.vertex).and_then(|p| p.get(s.index as usize)).copied().ok_or(DeploymentFault::PlacementMismatch);
    // A forward edge links subtask i to subtask i only; other edges link every pair.
    let peers = |of: usize, index: u32, partitioning: Partitioning| -> Result<Vec<Subtask>, DeploymentFault> {
        let parallelism = vertices.get(of).ok_or(DeploymentFault::MissingVertex(of))?.parallelism;
        Ok(match partitioning {
            Partitioning::Forward => vec![Subtask { vertex: of, index }],
            _ => (0..parallelism).map(|index| Subtask { vertex: of, index }).collect(),
        })
    };
    let mut subtasks = Vec::new();
    for (vertex, index) in d.subtasks_on(me) {
        let here = Subtask { vertex, index };
        let v = &vertices[vertex];
        let (mut inputs, mut input_of) = (Vec::new(), Vec::new());
        for &(from, partitioning, input) in &v.inputs {
            for producer in peers(from, index, partitioning)? {
                let link = Link { from: producer, to: here };
                inputs.push(if on(producer)? == me { Input::Local(link) } else { Input::Remote(link.channel(&run)) });
                input_of.push(input);
            }
        }
        let mut outputs = Vec::with_capacity(v.outputs.len());
        for &(to, partitioning, side_output) in &v.outputs {
            let mut targets = Vec::new();
            for consumer in peers(to, index, partitioning)? {
                let link = Link { from: here, to: consumer };
                targets.push(match on(consumer)? {
                    tm if tm == me => Target::Local(link),
                    taskmanager => Target::Remote { taskmanager, channel: link.channel(&run) },
                });
            }
            outputs.push(Output { vertex: to, partitioning, side_output, targets });
        }
        subtasks.push(SubtaskWiring { subtask: here, inputs, input_of, outputs });
    }
    Ok(Wiring { subtasks })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use weir_types::deployment::{JobCode, SinkFiles};
    use weir_types::graph::{ExecutionGraph, Vertex};
    use weir_types::plan::JobPlan;

    use super::*;

    const RUN: &str = "j.3";

    /// A deployment of `vertices` (parallelism, input edges) placed by `placement`;
    /// output edges are derived from the inputs, as the graph has them.
    fn deployment(vertices: &[(u32, Vec<(usize, Partitioning)>)], placement: Vec<Vec<u32>>) -> JobDeployment {
        let mut graph = ExecutionGraph {
            vertices: vertices
                .iter()
                .enumerate()
                .map(|(i, (parallelism, inputs))| Vertex {
                    nodes: vec![i],
                    parallelism: *parallelism,
                    inputs: inputs.iter().map(|&(v, p)| (v, p, 0)).collect(),
                    outputs: vec![],
                    name: format!("v{i}"),
                })
                .collect(),
        };
        for t in 0..graph.vertices.len() {
            for (v, p, _) in graph.vertices[t].inputs.clone() {
                graph.vertices[v].outputs.push((t, p, None));
            }
        }
        JobDeployment {
            job: "j".parse().expect("a job id"),
            plan: JobPlan { name: "j".into(), nodes: vec![], edges: vec![], max_parallelism: None },
            graph,
            args: vec![],
            code: JobCode { components: vec![], operators: vec![] },
            placement,
            taskmanagers: vec!["127.0.0.1:1".into(), "127.0.0.1:2".into()],
            sink_files: SinkFiles::PartPerSubtask,
            attempt: 3,
            checkpoints: None,
            restore: None,
            files: weir_types::access::FileAccess::Any,
            capabilities: weir_types::access::Capabilities::ALL,
        }
    }

    fn link_of(c: &ChannelId) -> Link {
        assert_eq!(c.run, RUN, "channels are named by run");
        Link { from: Subtask { vertex: c.from_vertex as usize, index: c.from_subtask }, to: Subtask { vertex: c.vertex as usize, index: c.subtask } }
    }

    /// The channels the graph asks for, from its edges alone.
    fn expected(d: &JobDeployment) -> Vec<Link> {
        let mut links = Vec::new();
        for (t, v) in d.graph.vertices.iter().enumerate() {
            for &(from, p, _) in &v.inputs {
                for c in 0..v.parallelism {
                    let producers = if p == Partitioning::Forward { c..c + 1 } else { 0..d.graph.vertices[from].parallelism };
                    for s in producers {
                        links.push(Link { from: Subtask { vertex: from, index: s }, to: Subtask { vertex: t, index: c } });
                    }
                }
            }
        }
        links.sort();
        links
    }

    /// Plans every TaskManager of `d` (`tms` of them) and checks that the plans fit:
    /// each channel is some subtask's input exactly once, on its consumer's
    /// TaskManager, and some subtask's target exactly once, on its producer's; it is
    /// local on both sides or remote on both, and a remote target names the
    /// consumer's TaskManager. Returns (local, remote) channel counts.
    fn check(d: &JobDeployment, tms: u32) -> (usize, usize) {
        let tm_of = |s: Subtask| d.placement[s.vertex][s.index as usize];
        // Per channel: (input on, local?), (target on, local?).
        let mut inputs: BTreeMap<Link, Vec<(u32, bool)>> = BTreeMap::new();
        let mut targets: BTreeMap<Link, Vec<(u32, bool)>> = BTreeMap::new();
        for me in 0..tms {
            let wiring = plan(d, me).expect("a valid deployment");
            let listed: Vec<(usize, u32)> = wiring.subtasks.iter().map(|w| (w.subtask.vertex, w.subtask.index)).collect();
            assert_eq!(listed, d.subtasks_on(me).collect::<Vec<_>>(), "taskmanager {me} wires exactly its subtasks");
            for w in &wiring.subtasks {
                for input in &w.inputs {
                    let (link, local) = match input {
                        Input::Local(link) => (*link, true),
                        Input::Remote(c) => (link_of(c), false),
                    };
                    assert_eq!(link.to, w.subtask, "an input of {:?} feeds it", w.subtask);
                    inputs.entry(link).or_default().push((me, local));
                }
                for out in &w.outputs {
                    let consumers: Vec<u32> = out
                        .targets
                        .iter()
                        .map(|t| {
                            let (link, local) = match t {
                                Target::Local(link) => (*link, true),
                                Target::Remote { taskmanager, channel } => {
                                    let link = link_of(channel);
                                    assert_eq!(*taskmanager, tm_of(link.to), "a remote target names its consumer's taskmanager");
                                    (link, false)
                                }
                            };
                            assert_eq!((link.from, link.to.vertex), (w.subtask, out.vertex));
                            targets.entry(link).or_default().push((me, local));
                            link.to.index
                        })
                        .collect();
                    let all: Vec<u32> = match out.partitioning {
                        Partitioning::Forward => vec![w.subtask.index],
                        _ => (0..d.graph.vertices[out.vertex].parallelism).collect(),
                    };
                    assert_eq!(consumers, all, "targets by subtask index");
                }
            }
        }
        let want = expected(d);
        assert_eq!(inputs.keys().copied().collect::<Vec<_>>(), want, "every channel is an input");
        assert_eq!(targets.keys().copied().collect::<Vec<_>>(), want, "every channel is a target");
        let (mut local, mut remote) = (0, 0);
        for link in want {
            let same = tm_of(link.from) == tm_of(link.to);
            assert_eq!(inputs[&link], vec![(tm_of(link.to), same)], "{link:?} is read once, by its consumer");
            assert_eq!(targets[&link], vec![(tm_of(link.from), same)], "{link:?} is written once, by its producer");
            if same {
                local += 1;
            } else {
                remote += 1;
            }
        }
        (local, remote)
    }

    #[test]
    fn forward_links_equal_subtasks_only() {
        let d = deployment(&[(2, vec![]), (2, vec![(0, Partitioning::Forward)])], vec![vec![0, 1], vec![1, 1]]);
        assert_eq!(check(&d, 2), (1, 1), "0->0 crosses taskmanagers, 1->1 stays");
    }

    #[test]
    fn key_by_and_rebalance_link_every_pair() {
        let d = deployment(
            &[(2, vec![]), (3, vec![(0, Partitioning::KeyBy)]), (1, vec![(1, Partitioning::Rebalance)])],
            vec![vec![0, 1], vec![0, 1, 0], vec![1]],
        );
        assert_eq!(check(&d, 2), (3 + 1, 3 + 2));
    }

    #[test]
    fn broadcast_to_two_vertices_and_a_vertex_with_two_inputs() {
        let d = deployment(
            &[
                (3, vec![]),
                (2, vec![(0, Partitioning::Broadcast)]),
                (1, vec![]),
                (2, vec![(1, Partitioning::Forward), (2, Partitioning::KeyBy), (0, Partitioning::Broadcast)]),
            ],
            vec![vec![0, 1, 0], vec![1, 0], vec![1], vec![0, 1]],
        );
        check(&d, 2);
        // Subtask 0 of vertex 3 reads its edges in order: forward from 1, key-by from
        // 2, broadcast from every subtask of 0.
        let wiring = plan(&d, 0).expect("valid");
        let v3 = wiring.subtasks.iter().find(|w| w.subtask == Subtask { vertex: 3, index: 0 }).expect("placed on 0");
        let from: Vec<(usize, u32)> = v3
            .inputs
            .iter()
            .map(|i| match i {
                Input::Local(l) => (l.from.vertex, l.from.index),
                Input::Remote(c) => (c.from_vertex as usize, c.from_subtask),
            })
            .collect();
        assert_eq!(from, vec![(1, 0), (2, 0), (0, 0), (0, 1), (0, 2)]);
        assert_eq!(v3.input_of, vec![0; 5]);
    }

    #[test]
    fn a_connect_knows_which_input_each_channel_feeds() {
        let mut d = deployment(
            &[(2, vec![]), (1, vec![]), (2, vec![(0, Partitioning::KeyBy), (1, Partitioning::KeyBy)])],
            vec![vec![0, 1], vec![1], vec![0, 1]],
        );
        d.graph.vertices[2].inputs[1].2 = 1;
        check(&d, 2);
        for me in 0..2 {
            let wiring = plan(&d, me).expect("valid");
            let w = wiring.subtasks.iter().find(|w| w.subtask.vertex == 2).expect("one subtask of the connect on each");
            assert_eq!(w.input_of, vec![0, 0, 1], "two channels from the first input, one from the second");
        }
    }

    #[test]
    fn placements_from_the_slot_assignment_fit() {
        let d = deployment(&[(4, vec![]), (4, vec![(0, Partitioning::KeyBy)]), (2, vec![(1, Partitioning::Rebalance)])], vec![]);
        let placement = weir_types::deployment::place(&d.graph, &[2, 2]).expect("4 slots");
        let d = JobDeployment { placement, ..d };
        let (local, remote) = check(&d, 2);
        assert!(local > 0 && remote > 0, "both kinds: {local} local, {remote} remote");
    }

    #[test]
    fn one_taskmanager_wires_everything_in_memory() {
        let d = deployment(&[(2, vec![]), (3, vec![(0, Partitioning::KeyBy)])], vec![vec![0, 0], vec![0, 0, 0]]);
        assert_eq!(check(&d, 1), (6, 0));
    }

    #[test]
    fn a_deployment_that_does_not_fit_its_graph_is_refused() {
        let short = deployment(&[(2, vec![]), (2, vec![(0, Partitioning::KeyBy)])], vec![vec![0, 1], vec![0]]);
        assert!(matches!(plan(&short, 0), Err(DeploymentFault::PlacementMismatch)));
        let mut dangling = deployment(&[(1, vec![]), (1, vec![(0, Partitioning::KeyBy)])], vec![vec![0], vec![0]]);
        dangling.graph.vertices[1].inputs.push((7, Partitioning::KeyBy, 0));
        assert!(matches!(plan(&dangling, 0), Err(DeploymentFault::MissingVertex(7))));
        let mut uneven = deployment(&[(1, vec![]), (2, vec![(0, Partitioning::KeyBy)])], vec![vec![0], vec![0, 0]]);
        uneven.graph.vertices[1].inputs[0].1 = Partitioning::Forward;
        assert!(matches!(plan(&uneven, 0), Err(DeploymentFault::PlacementMismatch)), "forward from a subtask that does not exist");
    }
}
