//! ferrite-bench: fio-like load generator through ferrite's drivers. See `--help`.

#[path = "../bench/mod.rs"]
mod bench;

/// The allocator ferrited runs with (see ferrited's main).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    ferrite_tools::logger::init("ferrite-bench");
    bench::main()
}
