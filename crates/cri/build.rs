//! Generates the CRI v1 client from `proto/cri/api.proto` with a vendored `protoc`, so a fresh
//! machine needs no protobuf compiler installed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto/cri");
    let proto = proto_dir.join("api.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC from the environment.
    unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    tonic_prost_build::configure()
        .build_server(false)
        .compile_protos(&[proto], &[proto_dir])?;
    Ok(())
}
