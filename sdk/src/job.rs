//! The builder API: [`Job`], [`Stream`], [`KeyedStream`], [`WindowedStream`], [`Sink`].
//!
//! Building records nodes, edges and closures in a shared [`Graph`]; streams are cheap
//! handles to one node of it, so a stream can be cloned to feed several operators.

use core::cell::RefCell;
use core::marker::PhantomData;
use core::ops::Add;
use std::rc::Rc;

use crate::Data;
use crate::broadcast::BroadcastConnectedStream;
#[cfg(doc)]
use crate::broadcast::KeyedBroadcastProcessFunction;
use crate::connect::ConnectedStreams;
#[cfg(doc)]
use crate::connect::KeyedCoProcessFunction;
use crate::emit::Emitter;
use crate::graph::{Graph, NodeKind};
use crate::join::{IntervalJoin, JoinedStreams};
use crate::keyed::{self, KeyedContext};
use crate::ops::{self, Format, Raw};
use crate::side::OutputTag;

/// The side output of an event-time window's too-late records when the job names none.
pub const DEFAULT_LATE_OUTPUT: &str = "late";
use crate::text::TextField;
use crate::time::{TimeDomain, Timer, WatermarkStrategy};
use crate::timers::{Closures, KeyedProcessFunction, ProcessFn, TimerContext};
use crate::ttl::StateTtl;
use crate::window::{Window, Windows};
use crate::windowed::{AggregateFn, AggregateFunction, CountFn, ProcessWindowFn, ReduceFn, WindowFn, WindowOp};
use crate::wit::weir::dataflow::plan_types::{ConnectorSpec, GeneratorSource, Partitioning, SinkKind, SourceKind};

/// The job being built: its arguments, name and sources. `build` receives one.
pub struct Job {
    graph: Rc<RefCell<Graph>>,
    args: Vec<(String, String)>,
}

impl Job {
    pub(crate) fn new(args: Vec<(String, String)>) -> Self {
        Job { graph: Rc::new(RefCell::new(Graph::default())), args }
    }

    /// Takes the recorded graph out of the job (streams still alive keep only an empty
    /// one).
    pub(crate) fn into_graph(self) -> Graph {
        core::mem::take(&mut *self.graph.borrow_mut())
    }

    /// The value of submission argument `name` (`weir run --arg name=value`); the last
    /// one wins if it is given twice.
    pub fn arg(&self, name: &str) -> Option<&str> {
        self.args.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Submission argument `name` as a number, `default` if absent; a value that is not
    /// a number makes planning fail, naming the argument.
    pub fn arg_u64(&mut self, name: &str, default: u64) -> u64 {
        match self.arg(name).map(str::parse::<u64>) {
            None => default,
            Some(Ok(n)) => n,
            Some(Err(e)) => {
                self.fail(format!("argument {name}: {e}"));
                default
            }
        }
    }

    /// All submission arguments, in order.
    pub fn args(&self) -> &[(String, String)] {
        &self.args
    }

    /// Sets the job's name (default: `"job"`).
    pub fn name(&mut self, name: impl Into<String>) {
        self.graph.borrow_mut().name = Some(name.into());
    }

    /// Sets the number of key groups (default 128), fixed for the life of the job's state.
    pub fn max_parallelism(&mut self, key_groups: u32) {
        let mut g = self.graph.borrow_mut();
        if key_groups == 0 {
            g.errors.push("max_parallelism must be at least 1".to_string());
        }
        g.max_parallelism = Some(key_groups);
    }

    /// Makes planning fail with `msg`, e.g. for an invalid argument.
    pub fn fail(&mut self, msg: impl Into<String>) {
        self.graph.borrow_mut().errors.push(msg.into());
    }

    /// The lines of the file given at submission (`weir run --input`), one record each.
    pub fn file_lines(&mut self, uid: &str) -> Stream<(), String> {
        self.source(uid, SourceKind::FileLines(None))
    }

    /// The lines of the file at `path`, one record each.
    pub fn file_lines_at(&mut self, uid: &str, path: impl Into<String>) -> Stream<(), String> {
        self.source(uid, SourceKind::FileLines(Some(path.into())))
    }

    /// The numbers `start .. start + count`, spread over the source's subtasks.
    pub fn generator(&mut self, uid: &str, start: u64, count: u64) -> Stream<(), u64> {
        self.source(uid, SourceKind::Generator(GeneratorSource { start, count, records_per_ms: None }))
    }

    /// The numbers `start .. start + count` with event time: number `n` gets timestamp
    /// `n / records_per_ms` (ms), so the stream spans `count / records_per_ms` ms of
    /// event time. Each subtask's timestamps ascend, so
    /// `.with_watermarks(WatermarkStrategy::monotonous())` makes watermarks of them.
    pub fn generator_with_time(&mut self, uid: &str, start: u64, count: u64, records_per_ms: u64) -> Stream<(), u64> {
        if records_per_ms == 0 {
            self.fail(format!("generator {uid:?}: records_per_ms must be at least 1"));
        }
        self.source(uid, SourceKind::Generator(GeneratorSource { start, count, records_per_ms: Some(records_per_ms.max(1)) }))
    }

    /// The records of an external system (see [`Connector`]), e.g. a Kafka topic. The
    /// connector decides what the values are; its documentation says which `V` reads
    /// them.
    pub fn connector_source<V: Data>(&mut self, uid: &str, connector: Connector) -> Stream<(), V> {
        self.source(uid, SourceKind::Connector(connector.into_spec()))
    }

    fn source<V: Data>(&mut self, uid: &str, kind: SourceKind) -> Stream<(), V> {
        let node = self.graph.borrow_mut().add_node(uid, NodeKind::Source(kind));
        Stream::at(self.graph.clone(), node)
    }
}

/// A stream of records with keys of type `K` (`()` before any `key_by`) and values of
/// type `V`, both postcard-encoded on the wire.
///
/// Operators take `self` and return the next stream; clone a stream to feed it to
/// several operators.
pub struct Stream<K, V> {
    graph: Rc<RefCell<Graph>>,
    node: usize,
    partitioning: Partitioning,
    /// `None`: the node's main output; else the side output of this name.
    side_output: Option<String>,
    /// The other streams of a union (empty unless this is one): the next operator
    /// reads them all, as Flink's union is no operator but the inputs of the next.
    also: Vec<Upstream>,
    _t: PhantomData<fn() -> (K, V)>,
}

/// One more input of a union: a node's main or side output, with its pending
/// partitioning.
#[derive(Clone)]
struct Upstream {
    node: usize,
    partitioning: Partitioning,
    side_output: Option<String>,
}

impl<K, V> Clone for Stream<K, V> {
    fn clone(&self) -> Self {
        Stream {
            graph: self.graph.clone(),
            node: self.node,
            partitioning: self.partitioning,
            side_output: self.side_output.clone(),
            also: self.also.clone(),
            _t: PhantomData,
        }
    }
}

impl<K: Data, V: Data> Stream<K, V> {
    fn at(graph: Rc<RefCell<Graph>>, node: usize) -> Self {
        Stream { graph, node, partitioning: Partitioning::Forward, side_output: None, also: Vec::new(), _t: PhantomData }
    }

    /// Records `what` as an error if this stream is a union, which has no node of its
    /// own to apply it to; true if it is one.
    fn refuse_on_union(&self, what: &str) -> bool {
        if self.also.is_empty() {
            return false;
        }
        let msg = format!("{what} on a union: a union is no node; apply it to each input, or to the operator after the union");
        self.graph.borrow_mut().errors.push(msg);
        true
    }

    /// Adds an operator node fed by this stream through the pending partitioning.
    fn then<K2: Data, W: Data>(self, uid: &str, kind: NodeKind) -> Stream<K2, W> {
        let node = {
            let mut g = self.graph.borrow_mut();
            let node = g.add_node(uid, kind);
            g.add_edge(self.node, node, self.partitioning, self.side_output);
            let mut sources = vec![self.node];
            for (i, u) in self.also.into_iter().enumerate() {
                // The host has one channel per pair of subtasks, so one node reaches
                // another by one edge: a stream that is in a union twice (a node's main
                // and side output, or a stream with itself) comes through a pass-through
                // node, chained to its producer.
                let from = match sources.contains(&u.node) {
                    false => u.node,
                    true => {
                        let pass = g.add_node(&format!("{uid}.union-{}", i + 1), NodeKind::Operator { keyed: false, op: ops::filter(|_: &V| true) });
                        g.add_edge(u.node, pass, Partitioning::Forward, u.side_output.clone());
                        let parallelism = g.nodes.get(u.node).and_then(|n| n.parallelism);
                        if let Some(n) = g.node_mut(pass) {
                            n.parallelism = parallelism;
                        }
                        pass
                    }
                };
                sources.push(u.node);
                let side_output = if from == u.node { u.side_output } else { None };
                g.add_edge(from, node, u.partitioning, side_output);
            }
            node
        };
        Stream::at(self.graph, node)
    }

    /// The records the operator producing this stream emits to side output `tag`
    /// (Flink's `getSideOutput`), as a stream of their own with the operator's input
    /// keys. Declares the side output on the operator; records for it are dropped and
    /// counted if nothing reads the returned stream. `parallelism`, `name` and
    /// `with_watermarks` on it apply to the producing operator, as on its main stream.
    pub fn side_output<T: Data>(&self, tag: &OutputTag<T>) -> Stream<K, T> {
        if !self.refuse_on_union("side_output") {
            self.graph.borrow_mut().declare_side_output(self.node, tag.name());
        }
        Stream {
            graph: self.graph.clone(),
            node: self.node,
            partitioning: Partitioning::Forward,
            side_output: Some(tag.name().to_string()),
            also: Vec::new(),
            _t: PhantomData,
        }
    }

    fn op<W: Data>(self, uid: &str, op: Box<dyn ops::Operator>) -> Stream<K, W> {
        self.then(uid, NodeKind::Operator { keyed: false, op })
    }

    /// Applies `f` to every value; the key passes through unchanged.
    pub fn map<W: Data>(self, uid: &str, f: impl FnMut(V) -> W + 'static) -> Stream<K, W> {
        self.op(uid, ops::map(f))
    }

    /// Calls `f` on every value; `f` emits any number of output values, each with the
    /// input's key.
    pub fn flat_map<W: Data>(self, uid: &str, f: impl FnMut(V, &mut Emitter<'_, W>) + 'static) -> Stream<K, W> {
        self.op(uid, ops::flat_map(f))
    }

    /// Keeps the records whose value satisfies `f` (copied byte for byte).
    pub fn filter(self, uid: &str, f: impl FnMut(&V) -> bool + 'static) -> Stream<K, V> {
        self.op(uid, ops::filter(f))
    }

    /// Partitions the stream by the key `selector` computes from each value.
    ///
    /// If this stream is the only output of a guest operator, the selector runs inside
    /// that operator's emit and costs no extra node; otherwise (e.g. right after a host
    /// source) it becomes a small operator node named `uid`, chained to its input. Any
    /// pending `rebalance`/`broadcast` is dropped: the key decides the partitioning.
    /// On a union it is an operator node read by all of the union's inputs, each
    /// through its own pending partitioning.
    pub fn key_by<K2: Data>(self, uid: &str, selector: impl FnMut(&V) -> K2 + 'static) -> KeyedStream<K2, V> {
        self.keyed_by(uid, ops::key_fn(selector))
    }

    /// Partitions the stream by its values themselves: `key_by(uid, |v| v.clone())`
    /// without the clone. The encoded value is written once and copied as the key, so
    /// no selector runs and nothing is allocated. Placed like `key_by`.
    pub fn key_by_value(self, uid: &str) -> KeyedStream<V, V> {
        self.keyed_by(uid, ops::key_value::<V>())
    }

    fn keyed_by<K2: Data>(self, uid: &str, pending: Box<dyn ops::PendingKey>) -> KeyedStream<K2, V> {
        let partitioning = if self.also.is_empty() { Partitioning::Forward } else { self.partitioning };
        let stream: Stream<K2, V> = Stream { partitioning, ..self }.then(uid, NodeKind::KeySelector(pending));
        KeyedStream { graph: stream.graph, node: stream.node, ttl: None, _t: PhantomData }
    }

    /// Sets each record's timestamp to `timestamp(&value)` and generates watermarks from
    /// them with `strategy` (Flink's `assignTimestampsAndWatermarks`): the event time of
    /// everything downstream. Keys and values pass through unchanged, and a `key_by`
    /// right after it runs inside it.
    pub fn assign_timestamps(self, uid: &str, timestamp: impl FnMut(&V) -> i64 + 'static, strategy: WatermarkStrategy) -> Stream<K, V> {
        let stream = self.op(uid, ops::assign_timestamps(timestamp));
        stream.with_watermarks(strategy)
    }

    /// Generates watermarks with `strategy` from the timestamps of the records of the
    /// node that produces this stream: a source (e.g. [`Job::generator_with_time`]) or
    /// an operator that sets timestamps (`Emitter::emit_at`). Replaces the watermarks
    /// that arrive from upstream; a strategy set before on the same node is replaced.
    pub fn with_watermarks(self, strategy: WatermarkStrategy) -> Self {
        if !self.refuse_on_union("with_watermarks") {
            self.graph.borrow_mut().set_watermarks(self.node, strategy);
        }
        self
    }

    /// The records of this stream and of `other` as one stream (Flink's `union`; chain
    /// calls for more). Like Flink's, it is no operator: the next operator reads every
    /// stream of the union, each through its own pending partitioning (`rebalance`
    /// one whose parallelism differs from that operator's), and no record is copied.
    /// So `parallelism`, `name`, `with_watermarks` and `side_output` do not apply to a
    /// union itself (planning fails, naming them); `rebalance` and `broadcast` apply to
    /// each of its streams.
    pub fn union(mut self, other: Stream<K, V>) -> Stream<K, V> {
        self.also.push(Upstream { node: other.node, partitioning: other.partitioning, side_output: other.side_output });
        self.also.extend(other.also);
        self
    }

    /// Sends the records of the next edge round-robin to all downstream subtasks.
    pub fn rebalance(self) -> Self {
        self.partitioned(Partitioning::Rebalance)
    }

    /// Sends every record of the next edge to every downstream subtask.
    pub fn broadcast(self) -> Self {
        self.partitioned(Partitioning::Broadcast)
    }

    fn partitioned(mut self, partitioning: Partitioning) -> Self {
        for u in &mut self.also {
            u.partitioning = partitioning;
        }
        Stream { partitioning, ..self }
    }

    /// Sets the number of subtasks of the node that produces this stream.
    pub fn parallelism(self, n: u32) -> Self {
        if !self.refuse_on_union("parallelism") {
            set_parallelism(&self.graph, &[Some(self.node)], n);
        }
        self
    }

    /// Declares the format version of the state the operator producing this stream
    /// writes (default 0). The host records it with every snapshot of that state; code
    /// that restores the snapshot later (after a failure, an upgrade from a savepoint,
    /// a live swap) reads it with [`restored_state_version`](crate::restored_state_version)
    /// and can convert what older code wrote.
    pub fn state_version(self, version: u32) -> Self {
        if !self.refuse_on_union("state_version") {
            self.graph.borrow_mut().set_state_version(self.node, version);
        }
        self
    }

    /// Sets the display name of the node that produces this stream (default: its uid).
    pub fn name(self, name: &str) -> Self {
        if self.refuse_on_union("name") {
            return self;
        }
        if let Some(node) = self.graph.borrow_mut().node_mut(self.node) {
            node.name = name.to_string();
        }
        self
    }

    /// Ends the stream in `sink`. Text sinks (stdout, file) get a formatting operator
    /// `"<uid>.format"` in front of them that prints keys and values as text; discard
    /// sinks take the records as they are.
    pub fn sink(self, uid: &str, sink: Sink) -> SinkHandle
    where
        K: TextField,
        V: TextField,
    {
        if matches!(sink.kind, SinkKind::Discard) {
            return self.discard(uid);
        }
        let graph = self.graph.clone();
        let format = self.op::<()>(&format!("{uid}.format"), Format::<K, V>::boxed());
        let format_node = format.node;
        let sink_node = format.then::<(), ()>(uid, NodeKind::Sink(sink.kind));
        SinkHandle { graph, sink: sink_node.node, format: Some(format_node) }
    }

    /// Ends the stream in a discarding sink; unlike `sink`, needs no [`TextField`].
    pub fn discard(self, uid: &str) -> SinkHandle {
        let graph = self.graph.clone();
        let sink_node = self.then::<(), ()>(uid, NodeKind::Sink(SinkKind::Discard));
        SinkHandle { graph, sink: sink_node.node, format: None }
    }

    /// Escape hatch for testing the host: an operator that returns `f(batch)` as its
    /// output batch without any checking or encoding.
    #[doc(hidden)]
    pub fn raw_operator<K2: Data, W: Data>(self, uid: &str, f: fn(&[u8]) -> Vec<u8>) -> Stream<K2, W> {
        self.then(uid, NodeKind::Operator { keyed: false, op: Box::new(Raw(f)) })
    }
}

/// The two-input operator `op` of `first.connect(second)`, keyed like both.
pub(crate) fn connect<K: Data, V1: Data, V2: Data, W: Data>(
    first: KeyedStream<K, V1>,
    second: KeyedStream<K, V2>,
    second_edge: Option<(Partitioning, Option<String>)>,
    ttl: Option<StateTtl>,
    uid: &str,
    op: Box<dyn ops::Operator>,
) -> Stream<K, W> {
    let node = {
        let mut g = first.graph.borrow_mut();
        let node = g.add_node(uid, NodeKind::Operator { keyed: true, op });
        if let Some(ttl) = ttl {
            g.set_state_ttl(node, ttl);
        }
        g.add_keyed_edge(first.node, node, 0, core::any::type_name::<K>());
        g.add_keyed_edge(second.node, node, 1, core::any::type_name::<K>());
        if let (Some((partitioning, key_type)), Some(e)) = (second_edge, g.edges.last_mut()) {
            e.partitioning = partitioning;
            e.key_type = key_type;
        }
        node
    };
    Stream::at(first.graph, node)
}

/// The control stream of a keyed broadcast operator: a node's main or side output.
pub(crate) struct BroadcastInput {
    node: usize,
    side_output: Option<String>,
}

pub(crate) fn connect_broadcast<K: Data, V: Data, W: Data>(
    keyed: KeyedStream<K, V>,
    control: BroadcastInput,
    uid: &str,
    op: Box<dyn ops::Operator>,
) -> Stream<K, W> {
    let node = {
        let mut g = keyed.graph.borrow_mut();
        let node = g.add_node(uid, NodeKind::Operator { keyed: true, op });
        if let Some(ttl) = keyed.ttl {
            g.set_state_ttl(node, ttl);
        }
        g.add_keyed_edge(keyed.node, node, 0, core::any::type_name::<K>());
        g.add_edge(control.node, node, Partitioning::Broadcast, control.side_output);
        if let Some(e) = g.edges.last_mut() {
            e.input = 1;
        }
        node
    };
    Stream::at(keyed.graph, node)
}

fn set_parallelism(graph: &Rc<RefCell<Graph>>, nodes: &[Option<usize>], n: u32) {
    let mut g = graph.borrow_mut();
    if n == 0 {
        g.errors.push("parallelism must be at least 1".to_string());
        return;
    }
    for node in nodes.iter().flatten() {
        if let Some(node) = g.node_mut(*node) {
            node.parallelism = Some(n);
        }
    }
}

/// A stream partitioned by key `K`: the input of keyed operators, which keep value
/// state per key in the host and see every record of a key in one subtask.
pub struct KeyedStream<K, V> {
    graph: Rc<RefCell<Graph>>,
    node: usize,
    /// The state TTL of the keyed operator that reads this stream.
    ttl: Option<StateTtl>,
    _t: PhantomData<fn() -> (K, V)>,
}

impl<K: Data, V: Data> KeyedStream<K, V> {
    fn keyed<W: Data>(self, uid: &str, op: Box<dyn ops::Operator>) -> Stream<K, W> {
        let node = {
            let mut g = self.graph.borrow_mut();
            let node = g.add_node(uid, NodeKind::Operator { keyed: true, op });
            if let Some(ttl) = self.ttl {
                g.set_state_ttl(node, ttl);
            }
            g.add_keyed_edge(self.node, node, 0, core::any::type_name::<K>());
            node
        };
        Stream::at(self.graph, node)
    }

    /// Gives the state of the next keyed operator on this stream (`count`, `sum`,
    /// `reduce`, `process`, `process_function`, a window) the time-to-live `ttl`: its
    /// value, map and list states expire that long after their last write (or read,
    /// with [`StateTtl::update_on_read`]), in processing time, and expired state is never
    /// returned. The host also drops expired state in the background. Flink sets a TTL
    /// per state descriptor; here it covers every state of the operator.
    pub fn state_ttl(mut self, ttl: StateTtl) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Meets `other`, keyed by the same key type, in one two-input keyed operator
    /// (Flink's `connect` of keyed streams): finish with
    /// [`ConnectedStreams::process`] and a [`KeyedCoProcessFunction`].
    pub fn connect<V2: Data>(self, other: KeyedStream<K, V2>) -> ConnectedStreams<K, V, V2> {
        ConnectedStreams { first: self, second: other, second_edge: None, ttl: None }
    }

    /// Broadcasts `control` to every subtask of one keyed operator with broadcast state
    /// (Flink's `connect(control.broadcast(descriptor))`): finish with
    /// [`BroadcastConnectedStream::process`] and a [`KeyedBroadcastProcessFunction`].
    /// `control` may be keyed any way (its keys are ignored); not a union.
    pub fn connect_broadcast<K2: Data, B: Data>(self, control: Stream<K2, B>) -> BroadcastConnectedStream<K, V, B> {
        control.refuse_on_union("connect_broadcast");
        let control = BroadcastInput { node: control.node, side_output: control.side_output };
        BroadcastConnectedStream { keyed: self, control, _b: PhantomData }
    }

    /// Joins `other`, keyed by the same key type, by equal keys (Flink's
    /// `join(..).where(..).equalTo(..)`: the keys are the key selectors'): regularly
    /// ([`JoinedStreams::inner`], `left_outer`, `full_outer`) or by window
    /// ([`JoinedStreams::window`]). One two-input keyed operator, over `connect`.
    pub fn join<R: Data>(self, other: KeyedStream<K, R>) -> JoinedStreams<K, V, R> {
        JoinedStreams { left: self, right: other, retention: None, ttl: None }
    }

    /// Joins `other` by key and time interval (Flink's `intervalJoin`): finish with
    /// [`IntervalJoin::between`] and [`IntervalBounds::process`](crate::IntervalBounds::process).
    pub fn interval_join<R: Data>(self, other: KeyedStream<K, R>) -> IntervalJoin<K, V, R> {
        IntervalJoin { left: self, right: other }
    }

    /// Makes planning fail with `msg` (an invalid operator parameter).
    pub(crate) fn fail(&self, msg: &str) {
        self.graph.borrow_mut().errors.push(msg.to_string());
    }

    /// Escape hatch for testing the host's plan validation: connects `other` whatever
    /// its key type, its edge saying `partitioning` and key type `key_type`, which the
    /// typed `connect` never lets disagree.
    #[doc(hidden)]
    pub fn connect_unchecked<K2: Data, V2: Data>(
        self,
        other: KeyedStream<K2, V2>,
        partitioning: Partitioning,
        key_type: Option<&str>,
    ) -> ConnectedStreams<K, V, V2> {
        let second = KeyedStream { graph: other.graph, node: other.node, ttl: None, _t: PhantomData };
        ConnectedStreams { first: self, second, second_edge: Some((partitioning, key_type.map(str::to_string))), ttl: None }
    }

    /// The running number of records per key, emitted with every record.
    pub fn count(self, uid: &str) -> Stream<K, u64> {
        self.keyed(uid, keyed::count())
    }

    /// The running sum of the values per key, emitted with every record. Overflow
    /// behaves like `V`'s `+` in release builds (wrapping for integers).
    pub fn sum(self, uid: &str) -> Stream<K, V>
    where
        V: Add<Output = V>,
    {
        self.keyed(uid, keyed::reduce(|a: V, b: V| a + b))
    }

    /// The running reduction of the values per key with `f`, emitted with every record.
    /// The first value of a key is its initial accumulator.
    pub fn reduce(self, uid: &str, f: impl FnMut(V, V) -> V + 'static) -> Stream<K, V> {
        self.keyed(uid, keyed::reduce(f))
    }

    /// The general keyed operator: `f` sees each record's value with a
    /// [`KeyedContext`] holding its key, value state `S` and map states, and emits any
    /// number of outputs, which keep the key.
    pub fn process<S: Data, W: Data>(self, uid: &str, f: impl FnMut(&mut KeyedContext<'_, K, S>, V, &mut Emitter<'_, W>) + 'static) -> Stream<K, W> {
        self.keyed(uid, keyed::Process::boxed(f))
    }

    /// `process` with timers: `on_record` sees each record with a [`TimerContext`]
    /// (everything a [`KeyedContext`] has, plus the watermark, processing time and the
    /// key's timers), and `on_timer` runs when a timer it set fires. See
    /// [`KeyedProcessFunction`], which this wraps.
    pub fn process_with_timers<S: Data, W: Data>(
        self,
        uid: &str,
        on_record: impl FnMut(&mut TimerContext<'_, K, S>, V, &mut Emitter<'_, W>) + 'static,
        on_timer: impl FnMut(&mut TimerContext<'_, K, S>, Timer, &mut Emitter<'_, W>) + 'static,
    ) -> Stream<K, W> {
        self.process_function(uid, Closures::new(on_record, on_timer))
    }

    /// Runs a [`KeyedProcessFunction`] (Flink's): per-record processing and timer
    /// callbacks that share the function's fields.
    pub fn process_function<F: KeyedProcessFunction<K, V>>(self, uid: &str, f: F) -> Stream<K, F::Out> {
        self.keyed(uid, ProcessFn::boxed(f))
    }

    /// Groups each key's records into event-time windows: a window fires when the
    /// watermark passes its end. Finish with an aggregation of [`WindowedStream`].
    pub fn window(self, windows: Windows) -> WindowedStream<K, V> {
        WindowedStream { stream: self, windows, domain: TimeDomain::Event, lateness: 0, late_output: None }
    }

    /// Groups each key's records into windows of processing time: a record goes by the
    /// time its batch is processed, and a window fires when the wall clock passes its end.
    pub fn window_processing_time(self, windows: Windows) -> WindowedStream<K, V> {
        WindowedStream { stream: self, windows, domain: TimeDomain::Processing, lateness: 0, late_output: None }
    }
}

/// A keyed stream grouped into windows, waiting for what to compute per window (Flink's
/// `WindowedStream`).
///
/// Results are records with the key, the value `(Window, result)` (`process`: what it
/// emits) and the window's last instant (`Window::max_timestamp`) as timestamp, emitted
/// when the window fires. Each key's open windows and their accumulators are its value
/// state, so an incremental aggregate (`count`, `sum`, `reduce`, `aggregate`) keeps one
/// accumulator per open window, while `process` keeps every value until the window
/// fires.
pub struct WindowedStream<K, V> {
    stream: KeyedStream<K, V>,
    windows: Windows,
    domain: TimeDomain,
    lateness: i64,
    /// The side output that takes records past the allowed lateness.
    late_output: Option<String>,
}

impl<K: Data, V: Data> WindowedStream<K, V> {
    /// Keeps each event-time window `ms` past its end (Flink's `allowedLateness`): a late
    /// record for it still counts and fires the window again at once with the updated
    /// result. Records later than that are dropped (and counted in the log), or go to
    /// the side output of [`side_output_late_data`](Self::side_output_late_data). Default 0.
    pub fn allowed_lateness(mut self, ms: u64) -> Self {
        if self.domain == TimeDomain::Processing && ms > 0 {
            self.stream.graph.borrow_mut().errors.push("allowed_lateness applies to event-time windows only".to_string());
        }
        self.lateness = i64::try_from(ms).unwrap_or(i64::MAX);
        self
    }

    /// Sends records that come after their window's allowed lateness to the side output
    /// `tag` (Flink's `sideOutputLateData`), each with its original key, timestamp and
    /// value, instead of dropping them. Read them with `side_output(&tag)` on the
    /// window's result stream. Without it they go to a side output named `late` that
    /// nothing reads: the host drops and counts them (its metrics show how many).
    pub fn side_output_late_data(mut self, tag: &OutputTag<V>) -> Self {
        self.late_output = Some(tag.name().to_string());
        self
    }

    fn windowed<F: WindowFn>(self, uid: &str, f: F) -> Stream<K, F::Out> {
        if let Err(e) = self.windows.check() {
            self.stream.graph.borrow_mut().errors.push(format!("window {uid:?}: {e}"));
        }
        // Event-time windows always have a late-data side output (`late` unless named),
        // so the host counts records that come too late even where no edge reads them.
        let late_output = match self.domain {
            TimeDomain::Event => Some(self.late_output.unwrap_or_else(|| DEFAULT_LATE_OUTPUT.to_string())),
            TimeDomain::Processing => self.late_output,
        };
        let stream = self.stream.keyed(uid, WindowOp::boxed(self.windows, self.domain, self.lateness, late_output.clone(), f));
        if let Some(name) = &late_output {
            stream.graph.borrow_mut().declare_side_output(stream.node, name);
        }
        stream
    }

    /// The number of records per key and window.
    pub fn count(self, uid: &str) -> Stream<K, (Window, u64)> {
        self.windowed(uid, CountFn)
    }

    /// The sum of the values per key and window. Overflow behaves like `V`'s `+` in
    /// release builds (wrapping for integers).
    pub fn sum(self, uid: &str) -> Stream<K, (Window, V)>
    where
        V: Add<Output = V>,
    {
        self.windowed(uid, ReduceFn::new(|a: V, b: V| a + b))
    }

    /// The values per key and window combined with `f`, starting from the window's
    /// first value.
    pub fn reduce(self, uid: &str, f: impl FnMut(V, V) -> V + 'static) -> Stream<K, (Window, V)> {
        self.windowed(uid, ReduceFn::new(f))
    }

    /// An [`AggregateFunction`] per key and window.
    pub fn aggregate<A: AggregateFunction<V>>(self, uid: &str, f: A) -> Stream<K, (Window, A::Out)> {
        self.windowed(uid, AggregateFn::new(f))
    }

    /// Calls `f` with the key, the window and all of its values (in arrival order) when
    /// the window fires (Flink's `ProcessWindowFunction`). Emitted records keep the key
    /// and carry the window's last instant as timestamp. Every value is kept in the
    /// key's state until then; prefer an aggregate where one does.
    pub fn process<W: Data>(self, uid: &str, f: impl FnMut(&K, Window, Vec<V>, &mut Emitter<'_, W>) + 'static) -> Stream<K, W> {
        self.windowed(uid, ProcessWindowFn::new(f))
    }
}

/// Where a stream ends; a host-run sink.
pub struct Sink {
    kind: SinkKind,
}

impl Sink {
    /// `key<TAB>value` lines on the standard output of the process running the sink.
    pub fn stdout() -> Sink {
        Sink { kind: SinkKind::Stdout }
    }

    /// `key<TAB>value` lines appended to the file at `path`.
    pub fn file(path: impl Into<String>) -> Sink {
        Sink { kind: SinkKind::File(Some(path.into())) }
    }

    /// Records are counted and dropped; no formatting operator is added.
    pub fn discard() -> Sink {
        Sink { kind: SinkKind::Discard }
    }

    /// `key<TAB>value` lines written to an external system (see [`Connector`]), e.g. rows
    /// of a PostgreSQL table.
    pub fn connector(connector: Connector) -> Sink {
        Sink { kind: SinkKind::Connector(connector.into_spec()) }
    }
}

/// An external system a source reads or a sink writes (Kafka, PostgreSQL), configured
/// by named options as in Flink SQL's `WITH (...)`. The host checks the kind and every
/// option when the job is submitted. Secrets are never options: name the file or
/// environment variable on the TaskManager that holds one (e.g. `password-file`).
///
/// ```ignore
/// let clicks = job.connector_source::<Vec<u8>>("clicks",
///     Connector::new("kafka").option("bootstrap-servers", "localhost:9092").option("topic", "clicks"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connector {
    kind: String,
    options: Vec<(String, String)>,
}

impl Connector {
    /// A connector of `kind` without options yet.
    pub fn new(kind: impl Into<String>) -> Self {
        Connector { kind: kind.into(), options: vec![] }
    }

    /// Sets option `name` (a later setting of the same name wins).
    pub fn option(mut self, name: impl Into<String>, value: impl ToString) -> Self {
        let name = name.into();
        self.options.retain(|(n, _)| *n != name);
        self.options.push((name, value.to_string()));
        self
    }

    fn into_spec(self) -> ConnectorSpec {
        ConnectorSpec { kind: self.kind, options: self.options }
    }
}

impl Default for Sink {
    /// The file given at submission (`weir run --output`), else stdout: the CLI decides.
    fn default() -> Sink {
        Sink { kind: SinkKind::File(None) }
    }
}

/// The sink node a stream ended in, to adjust it.
pub struct SinkHandle {
    graph: Rc<RefCell<Graph>>,
    sink: usize,
    format: Option<usize>,
}

impl SinkHandle {
    /// Sets the number of sink subtasks (and of its formatter, which is chained to it).
    pub fn parallelism(self, n: u32) -> Self {
        set_parallelism(&self.graph, &[Some(self.sink), self.format], n);
        self
    }

    /// Sets the sink's display name (default: its uid).
    pub fn name(self, name: &str) -> Self {
        if let Some(node) = self.graph.borrow_mut().node_mut(self.sink) {
            node.name = name.to_string();
        }
        self
    }
}
