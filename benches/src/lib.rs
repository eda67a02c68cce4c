//! Benchmarks of dbfsck (see `benches/`) and the `dbfsck-gen` dataset generator.
