//! Compiled components are cached by content hash across process restarts.

use weir_testkit::stderr;

use crate::WEIR;

fn inspect(cache: &std::path::Path) -> String {
    let o = WEIR
        .command()
        .env("WEIR_CACHE_DIR", cache)
        .env("WEIR_LOG", "weir_wasm=info")
        .args(["inspect".as_ref(), WEIR.example("wordcount").as_os_str()])
        .output()
        .expect("weir starts");
    assert!(o.status.success(), "{}", stderr(&o));
    stderr(&o)
}

#[test]
fn a_job_compiles_once_and_later_processes_load_it_from_the_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = inspect(dir.path());
    assert!(first.contains("compiled the component"), "{first}");
    let files: Vec<_> = std::fs::read_dir(dir.path()).expect("cache dir").flatten().map(|e| e.path()).collect();
    assert_eq!(files.len(), 1, "one cached artifact: {files:?}");

    let second = inspect(dir.path());
    assert!(second.contains("loaded the compiled component from the cache"), "{second}");
    assert!(!second.contains("compiled the component"), "{second}");

    // A damaged cache entry is discarded and rebuilt, never trusted.
    std::fs::write(&files[0], b"garbage").expect("corrupt");
    let third = inspect(dir.path());
    assert!(third.contains("discarding unusable compiled component"), "{third}");
    assert!(third.contains("compiled the component"), "{third}");
    let fourth = inspect(dir.path());
    assert!(fourth.contains("loaded the compiled component from the cache"), "{fourth}");
}
