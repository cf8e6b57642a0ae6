//! natrec micro benchmarks: see `benches/`. The library is empty; the benches are the point.
