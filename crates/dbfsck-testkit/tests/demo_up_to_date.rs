//! The bundled demo (`testdata/demo`) is exactly what `build_demo` makes, so the README's demo
//! command shows the damage the fault kit says it holds. Regenerate with `DBFSCK_BLESS=1`.

use std::fs;
use std::path::Path;

#[test]
fn demo_matches_its_generator() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/demo");
    let tmp = tempfile::tempdir().unwrap();
    dbfsck_testkit::build_demo(tmp.path()).unwrap();
    if std::env::var_os("DBFSCK_BLESS").is_some() {
        fs::create_dir_all(&demo).unwrap();
        for e in fs::read_dir(tmp.path()).unwrap() {
            let e = e.unwrap();
            fs::copy(e.path(), demo.join(e.file_name())).unwrap();
        }
    }
    let mut made: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    made.sort();
    assert!(!made.is_empty());
    for name in made {
        let want = fs::read(tmp.path().join(&name)).unwrap();
        let have = fs::read(demo.join(&name)).unwrap_or_else(|e| {
            panic!("testdata/demo/{name:?} is missing ({e}); run with DBFSCK_BLESS=1")
        });
        assert!(
            want == have,
            "testdata/demo/{name:?} differs from its generator; run with DBFSCK_BLESS=1"
        );
    }
}
