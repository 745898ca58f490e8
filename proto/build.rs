//! Generates the gRPC code for every .proto file under `tandem/` with a vendored `protoc`
//! (nobody installs one by hand), plus a file descriptor set for server reflection.

use std::{env, error::Error, path::PathBuf};

const PROTOS: &[&str] = &["tandem/crm/v1/crm.proto", "tandem/erp/v1/erp.proto"];

fn main() -> Result<(), Box<dyn Error>> {
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    let well_known = protoc_bin_vendored::include_path()?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let protos: Vec<PathBuf> = PROTOS.iter().map(PathBuf::from).collect();
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("tandem_descriptor.bin"))
        .compile_with_config(config, &protos, &[PathBuf::from("."), well_known])?;
    Ok(())
}
