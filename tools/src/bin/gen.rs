//! `natrec-gen`: the workload generator (see `natrec_tools::gen`).

fn main() -> anyhow::Result<()> {
    natrec_tools::gen::run(std::env::args().skip(1).collect())
}
