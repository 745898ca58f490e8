//! Generates the hello-world baseline service with a vendored `protoc`.

use std::{error::Error, path::PathBuf};

fn main() -> Result<(), Box<dyn Error>> {
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure().compile_with_config(
        config,
        &[PathBuf::from("proto/helloworld.proto")],
        &[PathBuf::from("proto")],
    )?;
    Ok(())
}
