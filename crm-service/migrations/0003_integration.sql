-- Integrators (e.g. the web shop) upsert customers by external_ref and place orders.
-- The last integration version applied to a customer, and by whom: an upsert at an equal or
-- older version changes nothing. 0 = never upserted by an integrator.
ALTER TABLE customers
    ADD COLUMN integration_source  TEXT,
    ADD COLUMN integration_version BIGINT NOT NULL DEFAULT 0 CHECK (integration_version >= 0);

-- The integrator's reference of an order placed through CrmSync.PlaceExternalOrder; the
-- idempotency key of that call. NULL for orders made at the sales desk.
ALTER TABLE orders ADD COLUMN external_ref TEXT;
CREATE UNIQUE INDEX orders_external_ref_key ON orders (external_ref) WHERE external_ref IS NOT NULL;
