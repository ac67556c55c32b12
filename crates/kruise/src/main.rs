//! `kruise`: kruise-manager and kruise-daemon in one executable, chosen by the name it runs as
//! (`/kruise-daemon` in the image is a link to `/kruise-manager`), or by a first argument
//! (`kruise manager …`, `kruise daemon …`). The two programs share most of their code (kube,
//! tokio, rustls, serde, the API types); one copy of it keeps the image within its size budget.

use std::ffi::OsString;
use std::path::Path;

/// jemalloc gives memory back once a burst is over (a fan-out's responses, an adoption's lists)
/// and fragments less than glibc's malloc, which kept kruise-manager at its peak (5,000 nodes x
/// 30 jobs at rest: 81 MiB against 135; see the README's benchmarks). The daemon shares it.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options. Freed pages go back to the system 30 s after their last use instead of
/// 10: with 10, a 5,000-node fan-out kept giving pages back and faulting them in again, which
/// slowed the manager's rounds by half (the jobs complete in 1.16x the pulls alone instead of
/// 1.21x), while the memory at rest stays the same (81 MiB against 82).
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: &u8 = &b"dirty_decay_ms:30000\0"[0];

fn main() -> anyhow::Result<()> {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let name = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    match name.as_str() {
        "kruise-manager" => kruise_manager::main(args),
        "kruise-daemon" => kruise_daemon::main(args),
        _ => {
            let program = args.get(1).and_then(|a| a.to_str()).map(str::to_string);
            match program.as_deref() {
                Some("manager") => kruise_manager::main(args.split_off(1)),
                Some("daemon") => kruise_daemon::main(args.split_off(1)),
                _ => anyhow::bail!(
                    "run this as kruise-manager or kruise-daemon (a link of that name), or as \
                     `{name} manager …` / `{name} daemon …`"
                ),
            }
        }
    }
}
