//! Any bytes as a message payload: the bridge's decoding, topic check, schema validation and
//! every translation answer a request or a classified error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sync_bridge::flows::{self, integration, to_crm, to_erp};

fuzz_target!(|data: &[u8]| {
    let Ok(envelope) = flows::decode(Some(data)) else {
        return;
    };
    for topic in flows::SOURCE_TOPICS {
        let _ = flows::check_topic(topic, &envelope);
    }
    let _ = integration::validate(&envelope);
    let _ = to_erp::customer_request(&envelope);
    let _ = to_erp::order_request(&envelope, false);
    let _ = to_erp::cancel_request(&envelope);
    let _ = to_crm::product_request(&envelope);
    let _ = to_crm::stock_request(std::slice::from_ref(&envelope));
    let _ = to_crm::order_status_request(&envelope);
    let _ = to_crm::finance_request(&envelope);
    let _ = integration::customer_request(&envelope);
    let _ = integration::order_request(&envelope);
    let _ = integration::count_request(&envelope);
});
