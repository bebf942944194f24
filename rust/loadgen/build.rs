//! Generates the `sealgate.v1.Attestation` client from protos/ at build time. protox compiles
//! the .proto files to a FileDescriptorSet in Rust, so no system `protoc` is needed.

use std::path::PathBuf;

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../protos");
    let proto = root.join("sealgate/v1/attestation.proto");
    let fds = protox::compile([&proto], [&root]).expect("compile sealgate/v1/attestation.proto");
    for f in ["attestation.proto", "common.proto"] {
        println!(
            "cargo:rerun-if-changed={}",
            root.join("sealgate/v1").join(f).display()
        );
    }
    tonic_prost_build::configure()
        .build_server(false)
        .build_transport(true)
        .compile_fds(fds)
        .expect("generate the gRPC client");
}
