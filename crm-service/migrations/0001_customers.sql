-- Customer profiles: the CRM is their system of record.
CREATE TABLE customers (
    id           UUID PRIMARY KEY,
    display_name TEXT NOT NULL,
    email        TEXT NOT NULL,
    phone        TEXT,
    tax_id       TEXT,
    status       TEXT NOT NULL CHECK (status IN ('ACTIVE', 'ARCHIVED')),
    external_ref TEXT UNIQUE,
    version      BIGINT NOT NULL CHECK (version > 0),
    create_time  TIMESTAMPTZ NOT NULL DEFAULT now(),
    update_time  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Transactional outbox (see tandem_common::outbox).
CREATE TABLE outbox (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id     UUID NOT NULL UNIQUE,
    topic        TEXT NOT NULL,
    kafka_key    TEXT NOT NULL,
    payload      JSONB NOT NULL,
    traceparent  TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    published_at TIMESTAMPTZ
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
