-- Idempotent requests (AIP-155): the request ids callers sent, with a fingerprint of the
-- request and the answer given, written in the transaction of the call's effect (see
-- tandem_common::idempotency). Scoped per caller subject; pruned after
-- idempotency.retention_hours.
CREATE TABLE idempotent_requests (
    subject     TEXT NOT NULL,
    request_id  UUID NOT NULL,
    -- The gRPC method, e.g. /tandem.erp.v1.ErpService/ReceiveStock.
    method      TEXT NOT NULL,
    -- SHA-256 of the method and the request without its request_id.
    fingerprint BYTEA NOT NULL,
    -- The encoded response message; set before the claiming transaction commits.
    response    BYTEA,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (subject, request_id)
);

CREATE INDEX idempotent_requests_created_at ON idempotent_requests (created_at);
