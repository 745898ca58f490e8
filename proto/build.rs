//! Generates the gRPC code for every .proto file under `tandem/` with a vendored `protoc`
//! (nobody installs one by hand), plus a file descriptor set for server reflection.

use std::{env, error::Error, path::PathBuf};

/// Each package gets its own descriptor set, so a server's reflection lists only its own
/// services.
const PACKAGES: &[(&str, &str)] = &[
    ("tandem/crm/v1/crm.proto", "tandem_crm_v1_descriptor.bin"),
    ("tandem/erp/v1/erp.proto", "tandem_erp_v1_descriptor.bin"),
];

fn main() -> Result<(), Box<dyn Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let well_known = protoc_bin_vendored::include_path()?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    for (proto, descriptor) in PACKAGES {
        let mut config = prost_build::Config::new();
        config.protoc_executable(&protoc);
        tonic_prost_build::configure()
            .file_descriptor_set_path(out.join(descriptor))
            .compile_with_config(
                config,
                &[PathBuf::from(proto)],
                &[PathBuf::from("."), well_known.clone()],
            )?;
    }
    Ok(())
}
