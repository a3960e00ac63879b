//! The file capability on a real cluster (issue 19): jobs read and write only under
//! the JobManager's `--data-root`s (here the cluster's temporary directory, which also
//! holds the cluster's credentials and checkpoints), never the cluster's own files,
//! never through `..`, a symbolic link or over a file they did not write.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use weir_testkit::{TestCluster, stderr};

use crate::WEIR;

fn cluster() -> TestCluster {
    TestCluster::start_with(WEIR, &[("taskmanager-1", 2)], &["--checkpoint-dir", "{dir}/checkpoints"])
}

/// `weir submit wordcount -p P -i INPUT --output-dir OUTPUT`, waiting for its end.
fn wordcount(cluster: &TestCluster, p: &str, input: &Path, output: &Path) -> std::process::Output {
    let wasm = WEIR.example("wordcount");
    let args = [OsStr::new("submit"), wasm.as_os_str(), OsStr::new("-p"), OsStr::new(p), OsStr::new("-i"), input.as_os_str()];
    let mut argv: Vec<&OsStr> = args.to_vec();
    argv.extend([OsStr::new("--output-dir"), output.as_os_str()]);
    cluster.client(&argv)
}

/// The submission failed and its error says `rule` about `path`.
fn refused(o: &std::process::Output, path: &Path, rule: &str) {
    let err = stderr(o);
    assert!(!o.status.success(), "{} was accepted: {err}", path.display());
    assert!(err.contains(&path.display().to_string()), "the error names {}: {err}", path.display());
    assert!(err.contains(rule), "the error says {rule:?}: {err}");
}

/// Every file under `dir`, recursively, with its content.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push((p.clone(), std::fs::read(&p).unwrap_or_default()));
        }
    }
    out.sort();
    out
}

#[test]
fn paths_outside_the_roots_are_refused_at_submission_and_nothing_is_written() {
    let cluster = cluster();
    let root = cluster.dir.path();
    let input = root.join("in.txt");
    std::fs::write(&input, "a b a\n").expect("input");
    let elsewhere = tempfile::tempdir().expect("tempdir");

    // `..` climbing out of the root (the path starts under it).
    let climbing = root.join("data/../../../etc/passwd");
    refused(&wordcount(&cluster, "1", &climbing, &root.join("out-dotdot")), &climbing, "must not contain `..`");
    // Absolute paths elsewhere: /etc/shadow, an output in /etc, another directory.
    let shadow = Path::new("/etc/shadow");
    refused(&wordcount(&cluster, "1", shadow, &root.join("out-shadow")), shadow, "outside the data roots");
    let etc = Path::new("/etc/weir-test");
    refused(&wordcount(&cluster, "1", &input, etc), etc, "outside the data roots");
    refused(&wordcount(&cluster, "1", &input, elsewhere.path()), elsewhere.path(), "outside the data roots");

    assert!(!etc.exists(), "nothing created in /etc");
    assert_eq!(files(elsewhere.path()), vec![], "nothing written outside the root");
    assert!(!root.join("out-dotdot").exists() && !root.join("out-shadow").exists(), "no output of a refused job");
}

#[test]
fn the_clusters_own_files_are_out_of_reach_even_under_a_root() {
    let cluster = cluster();
    let root = cluster.dir.path();
    let input = root.join("in.txt");
    std::fs::write(&input, "a b a\n").expect("input");

    // The TaskManager's private key, the API token, the checkpoint storage.
    let key = cluster.creds.join("taskmanager-1/node.key");
    assert!(key.exists(), "the key the test tries to steal");
    let stolen = root.join("stolen");
    refused(&wordcount(&cluster, "1", &key, &stolen), &key, "the cluster's own files");
    let token = cluster.creds.join("api-token");
    refused(&wordcount(&cluster, "1", &token, &stolen), &token, "the cluster's own files");
    assert!(!stolen.exists(), "nothing copied");
    let checkpoints = root.join("checkpoints/out");
    refused(&wordcount(&cluster, "1", &input, &checkpoints), &checkpoints, "the cluster's own files");
    // The root itself holds the credentials: a sink or savepoint there could reach them.
    refused(&wordcount(&cluster, "1", &input, root), root, "the cluster's own files");

    // A savepoint into the credentials or outside the roots; a restore from outside.
    let job = "0123456789abcdef";
    for dir in [cluster.creds.join("sp"), PathBuf::from("/etc/weir-savepoint")] {
        let o = cluster.client(&[OsStr::new("savepoint"), OsStr::new(job), OsStr::new("--dir"), dir.as_os_str()]);
        let err = stderr(&o);
        assert!(
            !o.status.success() && err.contains(&dir.display().to_string()) && !err.contains("no job"),
            "refused before the job is looked up: {err}"
        );
        assert!(!dir.exists(), "no savepoint directory created");
    }
    let wasm = WEIR.example("wordcount");
    let from = Path::new("/etc");
    let o = cluster.client(&[
        OsStr::new("submit"),
        wasm.as_os_str(),
        OsStr::new("-i"),
        input.as_os_str(),
        OsStr::new("--from-savepoint"),
        from.as_os_str(),
    ]);
    refused(&o, from, "outside the data roots");
}

#[test]
fn a_symlink_out_of_the_root_is_refused_where_the_file_is_opened() {
    let cluster = cluster();
    let root = cluster.dir.path();
    let outside = tempfile::tempdir().expect("tempdir");
    std::fs::write(outside.path().join("secret"), "top secret\n").expect("secret");
    let link = root.join("link");
    std::os::unix::fs::symlink(outside.path(), &link).expect("symlink");
    let input = root.join("in.txt");
    std::fs::write(&input, "a b a\n").expect("input");

    // Lexically under the root: accepted by the JobManager, refused by the TaskManager
    // that resolves it, and the job fails naming the rule.
    let secret = link.join("secret");
    let o = wordcount(&cluster, "1", &secret, &root.join("out-secret"));
    let err = stderr(&o);
    assert!(!o.status.success() && err.contains("symbolic link") && err.contains("outside the data roots"), "{err}");
    assert!(files(&root.join("out-secret")).iter().all(|(_, c)| !String::from_utf8_lossy(c).contains("secret")), "nothing copied");

    let out = link.join("out");
    let o = wordcount(&cluster, "1", &input, &out);
    let err = stderr(&o);
    assert!(!o.status.success() && err.contains("symbolic link"), "{err}");
    assert_eq!(files(outside.path()).len(), 1, "nothing written through the link: {:?}", files(outside.path()));

    // A link to the TaskManager's credentials, inside the root.
    let creds_link = root.join("creds-link");
    std::os::unix::fs::symlink(&cluster.creds, &creds_link).expect("symlink");
    let o = wordcount(&cluster, "1", &creds_link.join("taskmanager-1/node.key"), &root.join("out-key"));
    let err = stderr(&o);
    assert!(!o.status.success() && err.contains("symbolic link") && err.contains("cluster's own files"), "{err}");
    assert!(files(&root.join("out-key")).iter().all(|(_, c)| !String::from_utf8_lossy(c).contains("PRIVATE")), "the key is not copied");
}

#[test]
fn a_job_under_the_root_runs_and_never_overwrites_a_file_it_did_not_write() {
    let cluster = cluster();
    let root = cluster.dir.path();
    let input = root.join("data/in.txt");
    std::fs::create_dir_all(input.parent().expect("parent")).expect("data dir");
    std::fs::write(&input, "a b a\nb a\n").expect("input");

    let out = root.join("data/out");
    let o = wordcount(&cluster, "2", &input, &out);
    assert!(o.status.success(), "a job under the root runs: {}", stderr(&o));
    let text: String = (0..2).map(|s| std::fs::read_to_string(out.join(format!("part-{s}"))).expect("part file")).collect();
    assert_eq!(text.lines().count(), 5, "{text}");

    // Run again into the same directory: its part files are not this job's.
    let o = wordcount(&cluster, "2", &input, &out);
    let err = stderr(&o);
    assert!(!o.status.success() && err.contains("part-") && err.contains("this job did not write it"), "{err}");
    let again: String = (0..2).map(|s| std::fs::read_to_string(out.join(format!("part-{s}"))).expect("part file")).collect();
    assert_eq!(again, text, "the first job's output is untouched");

    // A file someone else put there.
    let foreign = root.join("data/foreign");
    std::fs::create_dir_all(&foreign).expect("dir");
    std::fs::write(foreign.join("part-0"), "not yours\n").expect("foreign file");
    let o = wordcount(&cluster, "1", &input, &foreign);
    let err = stderr(&o);
    assert!(!o.status.success() && err.contains(&foreign.join("part-0").display().to_string()), "{err}");
    assert_eq!(std::fs::read_to_string(foreign.join("part-0")).expect("part-0"), "not yours\n");
}

/// Without `--data-root` a cluster grants no file path at all: a job with a file source
/// or sink is refused at submission, naming the flag (jobs of generators and stdout
/// sinks need none and still run).
#[test]
fn a_jobmanager_without_data_roots_refuses_every_file_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let creds = dir.path().join("cluster");
    let o = WEIR.run(["cluster-init".as_ref(), creds.as_os_str()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (jm, _, rest) = weir_testkit::cluster::spawn_jobmanager(WEIR, dir.path(), &creds, "127.0.0.1:0", "127.0.0.1:0", &[]);
    let _procs = weir_testkit::cluster::Processes(vec![jm]);
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "a\n").expect("input");
    let wasm = WEIR.example("wordcount");
    let mut c = WEIR.command();
    c.args([OsStr::new("submit"), wasm.as_os_str(), OsStr::new("-i"), input.as_os_str(), OsStr::new("--detach")]);
    let o = c.args(weir_testkit::cluster::remote(&creds, &rest)).output().expect("weir starts");
    refused(&o, &input, "--data-root");
}
