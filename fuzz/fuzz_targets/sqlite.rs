//! Any bytes as an SQLite database, alone or with a `-wal` or a `-journal` beside it: the input's
//! first byte picks the layout (0: a database alone, 1: with a WAL, 2: with a journal, 3: a WAL
//! named alone), the next two where the bytes split (in 64-byte steps). The database is scanned
//! as SQLite reads it (WAL overlaid, journal rolled back, then the whole-file walk), on one
//! thread and on two: no panic, the same findings both ways, every finding on one of the files.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use dbfsck_core::Scanner;
use libfuzzer_sys::fuzz_target;

/// This process's scratch directory.
fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("dbfsck-fuzz-sqlite-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

fuzz_target!(|data: &[u8]| {
    let [mode, a, b, rest @ ..] = data else {
        return;
    };
    let cut = (usize::from(u16::from_le_bytes([*a, *b])) * 64).min(rest.len());
    let (db_bytes, side) = if mode % 4 == 0 {
        (rest, &[][..])
    } else {
        rest.split_at(cut)
    };
    let db = dir().join("f.db");
    let wal = dir().join("f.db-wal");
    let journal = dir().join("f.db-journal");
    let _ = std::fs::remove_file(&wal);
    let _ = std::fs::remove_file(&journal);
    std::fs::write(&db, db_bytes).unwrap();
    let root = match mode % 4 {
        1 => {
            std::fs::write(&wal, side).unwrap();
            db.clone()
        }
        2 => {
            std::fs::write(&journal, side).unwrap();
            db.clone()
        }
        3 => {
            std::fs::write(&wal, side).unwrap();
            wal.clone()
        }
        _ => db.clone(),
    };
    let scan = |threads: usize| {
        Scanner::new()
            .format(Some("sqlite"))
            .unwrap()
            .threads(threads)
            .chunk_size(4096)
            .scan(&[&root])
            .unwrap()
    };
    let one = scan(1);
    let two = scan(2);
    assert_eq!(one.findings, two.findings);
    let names = [&db, &wal, &journal].map(|p| p.to_string_lossy().into_owned());
    for f in &one.findings {
        assert!(names.contains(&f.path), "{f:?}");
    }
});
