//! The `vigil.v1` gRPC API, generated at build time from `proto/vigil/v1/*.proto`. The .proto
//! files' comments are the API reference; this crate adds nothing but the generated code and the
//! descriptor set that server reflection serves.

#![allow(missing_docs)]
#![allow(clippy::all, clippy::pedantic)]

/// `vigil.v1`: the Analyses and Judge services and their messages.
pub mod v1 {
    tonic::include_proto!("vigil.v1");
}

/// The encoded `FileDescriptorSet` of every `vigil.v1` file, for tonic-reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/vigil_descriptor.bin"));
