//! Events the broker deleted before the bridge read them. When a partition's next offset is no
//! longer in the broker's log (the bridge was stopped longer than the topic's retention, or the
//! log outgrew its size limit), librdkafka jumps to the oldest record the broker still holds
//! (`auto.offset.reset = earliest`) and says so only in a log line. The events in between never
//! reach the other service: this turns that line into an error naming the partition and the
//! remedy, and into the counter `tandem_bridge_offset_resets_total`.

use rdkafka::config::RDKafkaLogLevel;
use tandem_common::metrics_names as m;

/// A partition whose offset librdkafka reset because the broker no longer held it.
#[derive(Debug, PartialEq, Eq)]
pub struct Reset<'a> {
    pub topic: &'a str,
    pub partition: i32,
}

/// Recognises librdkafka's warning for an offset reset caused by an error, e.g.
/// `crm.customers [2]: offset reset (at offset 12 (leader epoch -1), broker 1) to offset
/// BEGINNING (leader epoch -1): fetch failed due to requested offset not available on the
/// broker: Broker: Offset out of range`. A reset without an error (a new group with no
/// committed offset) is only debug-logged by librdkafka, so it is not matched.
pub fn recognise<'a>(
    level: RDKafkaLogLevel,
    facility: &str,
    message: &'a str,
) -> Option<Reset<'a>> {
    if facility != "OFFSET" || (level as i32) > (RDKafkaLogLevel::Warning as i32) {
        return None;
    }
    let (head, _) = message.split_once(": offset reset (")?;
    let (topic, partition) = head.rsplit_once(" [")?;
    let partition = partition.strip_suffix(']')?.parse().ok()?;
    Some(Reset { topic, partition })
}

/// Reports a reset: an error log with the remedy, and the counter.
pub fn report(reset: &Reset<'_>, message: &str) {
    metrics::counter!(m::BRIDGE_OFFSET_RESETS,
        "topic" => reset.topic.to_owned(), "partition" => reset.partition.to_string())
    .increment(1);
    tracing::error!(
        topic = reset.topic,
        partition = reset.partition,
        detail = message,
        "the broker no longer holds the events after the bridge's offset (retention deleted \
         them unread): they were skipped; run `tandemctl reconcile --repair` to bring the other \
         side up to date"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT_OF_RANGE: &str = "crm.customers [2]: offset reset (at offset 12 (leader epoch -1), \
        broker 1) to offset BEGINNING (leader epoch -1): fetch failed due to requested offset not \
        available on the broker: Broker: Offset out of range";

    #[test]
    fn an_out_of_range_reset_names_its_topic_and_partition() {
        assert_eq!(
            recognise(RDKafkaLogLevel::Warning, "OFFSET", OUT_OF_RANGE),
            Some(Reset {
                topic: "crm.customers",
                partition: 2
            })
        );
    }

    #[test]
    fn other_lines_are_not_resets() {
        // The same text at debug level is a reset without an error (no committed offset yet).
        assert_eq!(
            recognise(RDKafkaLogLevel::Debug, "OFFSET", OUT_OF_RANGE),
            None
        );
        assert_eq!(
            recognise(RDKafkaLogLevel::Warning, "FETCH", OUT_OF_RANGE),
            None
        );
        assert_eq!(
            recognise(
                RDKafkaLogLevel::Warning,
                "OFFSET",
                "crm.customers [x]: offset reset (at offset 1)"
            ),
            None
        );
        assert_eq!(
            recognise(RDKafkaLogLevel::Warning, "OFFSET", "offset commit failed"),
            None
        );
    }
}
