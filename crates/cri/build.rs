//! Generates the CRI v1 client from `proto/cri/api.proto`, and a read-only client of containerd's
//! content service from `proto/containerd/content.proto`, of its images service
//! (`images.proto`, labels and names only) and of its leases service (`leases.proto`), with a vendored `protoc`, so a fresh
//! machine needs no protobuf compiler installed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let (cri_dir, containerd_dir) = (protos.join("cri"), protos.join("containerd"));
    let cri = cri_dir.join("api.proto");
    let content = containerd_dir.join("content.proto");
    let images = containerd_dir.join("images.proto");
    let leases = containerd_dir.join("leases.proto");
    for p in [&cri, &content, &images, &leases] {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC from the environment.
    unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    tonic_prost_build::configure()
        .build_server(false)
        .compile_protos(&[cri, content, images, leases], &[cri_dir, containerd_dir])?;
    Ok(())
}
