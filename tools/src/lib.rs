//! natrec's tools: the workload generator ([`gen`]) behind the `natrec-gen`
//! binary, used by the benchmarks (`natrec-bench`) and by the integration
//! tests, which replay what it writes and compare with the truth it keeps.

pub mod gen;
