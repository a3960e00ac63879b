//! Value, map and list state through a keyed `process` function, end to end.

use std::collections::HashMap;

use weir_testkit::{splitmix64, stderr};

use crate::WEIR;

/// Per key: the values in order of first appearance, as the job computes them.
fn expected(n: u64) -> HashMap<u64, Vec<u64>> {
    let mut firsts: HashMap<u64, Vec<u64>> = HashMap::new();
    for i in 0..n {
        let list = firsts.entry(i % 97).or_default();
        let v = splitmix64(i) % 13;
        if !list.contains(&v) {
            list.push(v);
        }
    }
    firsts
}

fn run(n: u64, parallelism: u32) -> (HashMap<u64, (usize, Vec<u64>)>, usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.tsv");
    let o = WEIR.run([
        "run".as_ref(),
        WEIR.example("distinct_values").as_os_str(),
        "--arg".as_ref(),
        format!("n={n}").as_ref(),
        "-p".as_ref(),
        parallelism.to_string().as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&out).expect("output");
    let mut last = HashMap::new();
    for line in text.lines() {
        let (key, rest) = line.split_once('\t').expect("key<TAB>value");
        let (distinct, list) = rest.split_once(' ').expect("distinct and list");
        let list: Vec<u64> = list.split(',').map(|v| v.parse().expect("value")).collect();
        last.insert(key.parse().expect("key"), (distinct.parse().expect("count"), list));
    }
    (last, text.lines().count())
}

#[test]
fn value_map_and_list_state_give_exact_results() {
    let n = 20_000;
    let want = expected(n);
    let (got, lines) = run(n, 1);
    assert_eq!(lines, want.values().map(Vec::len).sum::<usize>(), "one line per new distinct value");
    assert_eq!(got.len(), want.len());
    for (key, list) in &want {
        assert_eq!(got[key], (list.len(), list.clone()), "key {key}");
    }
}

#[test]
fn keyed_state_is_partitioned_correctly_at_parallelism_2() {
    let n = 20_000;
    let want = expected(n);
    let (got, _) = run(n, 2);
    assert_eq!(got.len(), want.len());
    for (key, list) in &want {
        // Two source subtasks interleave, so first appearances may come in another
        // order; the set of values and its size do not change.
        let (distinct, mut values) = got[key].clone();
        values.sort_unstable();
        let mut expected = list.clone();
        expected.sort_unstable();
        assert_eq!((distinct, values), (expected.len(), expected), "key {key}");
    }
}
