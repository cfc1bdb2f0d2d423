//! ferrite-bench: fio-like load generator through ferrite's drivers. See `--help`.

#[path = "../bench/mod.rs"]
mod bench;

fn main() -> std::process::ExitCode {
    bench::main()
}
