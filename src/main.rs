//! The `lmsbridge` command.

// An allocator with per-thread caches: a launch makes a few hundred small allocations, and
// glibc's malloc and free were a tenth of the server's instructions (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    lmsbridge::cli::main()
}
