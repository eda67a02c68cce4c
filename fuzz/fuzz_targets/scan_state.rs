//! Any text as a `--state` file: no panic; an accepted state round-trips, its ranges merge to
//! sorted, disjoint ranges and can be checked against any layout, and its pending findings
//! come back with their files.
#![no_main]

use dbfsck_core::ScanState;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(state) = ScanState::parse(text) {
        let again = ScanState::parse(&state.to_json()).unwrap();
        assert_eq!(again, state);
        for f in state.files.values() {
            let mut g = dbfsck_core::FileState::default();
            for r in &f.done {
                g.add(r[0], r[1]);
            }
            assert!(g.done.windows(2).all(|w| w[0][1] < w[1][0]));
            let _ = g.uncovered(0, u64::MAX);
            let _ = f.fits(f.len, 4096, f.len, 4096);
            let _ = f.fits(f.len, 0, 0, 0);
        }
        for p in &state.pending {
            let _ = p.restore();
        }
    }
});
