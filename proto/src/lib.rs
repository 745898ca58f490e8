//! Tandem's contracts: the generated gRPC code for `tandem.crm.v1` and `tandem.erp.v1` (and
//! the types they share, `tandem.common.v1`), the
//! descriptor sets that server reflection serves, and the payloads of the events on Kafka.

pub mod events;
pub mod money;
pub mod reasons;

/// `tandem.common.v1`: the message types both APIs share (money, address, customer status).
pub mod common {
    pub mod v1 {
        tonic::include_proto!("tandem.common.v1");
    }
}

/// `tandem.crm.v1`: the CRM's public API and its sync API.
pub mod crm {
    pub mod v1 {
        tonic::include_proto!("tandem.crm.v1");
        pub use crate::common::v1::{Address, AddressKind, CustomerStatus, Money};

        /// Encoded `FileDescriptorSet` of this package, for server reflection.
        pub const FILE_DESCRIPTOR_SET: &[u8] =
            tonic::include_file_descriptor_set!("tandem_crm_v1_descriptor");
    }
}

/// `tandem.erp.v1`: the ERP's public API and its sync API.
pub mod erp {
    pub mod v1 {
        tonic::include_proto!("tandem.erp.v1");
        pub use crate::common::v1::{Address, AddressKind, CustomerStatus, Money};

        /// Encoded `FileDescriptorSet` of this package, for server reflection.
        pub const FILE_DESCRIPTOR_SET: &[u8] =
            tonic::include_file_descriptor_set!("tandem_erp_v1_descriptor");
    }
}
