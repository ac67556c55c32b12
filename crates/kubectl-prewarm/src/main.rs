//! `kubectl prewarm`: see the crate's library for the commands.

fn main() {
    std::process::exit(kubectl_prewarm::main(std::env::args_os()));
}
