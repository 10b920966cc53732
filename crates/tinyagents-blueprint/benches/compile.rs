//! Placeholder; the benchmarks come later.
fn main() {}
