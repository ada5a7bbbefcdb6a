//! Generates the silo link's and grain directory's protobuf and gRPC code with a vendored
//! `protoc`, so building needs no system tool.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        // Decodes each message from contiguous bytes (src/wire.rs).
        .codec_path("crate::wire::Codec")
        .build_client(true)
        .build_server(true)
        .compile_with_config(
            config,
            &[
                "proto/link.proto",
                "proto/directory.proto",
                "proto/stats.proto",
            ],
            &["proto"],
        )?;
    println!("cargo:rerun-if-changed=proto/link.proto");
    println!("cargo:rerun-if-changed=proto/directory.proto");
    println!("cargo:rerun-if-changed=proto/stats.proto");
    Ok(())
}
