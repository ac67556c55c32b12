//! `kruise`: kruise-manager and kruise-daemon in one executable, chosen by the name it runs as
//! (`/kruise-daemon` in the image is a link to `/kruise-manager`), or by a first argument
//! (`kruise manager …`, `kruise daemon …`). The two programs share most of their code (kube,
//! tokio, rustls, serde, the API types); one copy of it keeps the image within its size budget.

use std::ffi::OsString;
use std::path::Path;

kruise_observe::global_allocator!();

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
