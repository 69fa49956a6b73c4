//! Compiles `vigil/v1/*.proto` with protox (pure Rust: no `protoc` on the build machine) and
//! generates the messages, servers and clients with tonic-prost-build. The encoded descriptor set
//! is written to `OUT_DIR/vigil_descriptor.bin` for server reflection.

use std::path::PathBuf;

use prost::Message;

const PROTOS: &[&str] = &[
    "vigil/v1/judgement.proto",
    "vigil/v1/analyses.proto",
    "vigil/v1/judge.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for p in PROTOS {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(PROTOS, ["."])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("vigil_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_transport(false)
        .compile_fds(fds)?;
    Ok(())
}
