-- What `audit verify` needs to tell a legitimate unchained row from a forged
-- one. Unchained rows are legitimate when they predate chaining (the
-- message_audit_v1 / message_payloads_v1 tables, frozen by the lean-audit
-- migration, and audit_log rows written before the audit-chain migration)
-- or were written while an instance ran with audit.chain = false. Anything
-- else without a chain was put there by hand.

-- Each start of custodian whose audit.chain differs from the latest mark
-- records one: from that point on, pipeline entries are chained (true) or
-- may be unchained (false). An unchained audit_log row above a `true`
-- mark's id watermark, or recorded after its time (and before the next
-- `false` mark), was not written by custodian. No mark yet: nothing is
-- known about the rows already there, and verify only counts them.
CREATE TABLE audit_chain_marks (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chained         BOOLEAN     NOT NULL,
    -- The audit_log id sequence when the mark was recorded: every id ever
    -- handed out before it is at or below this, even one whose row commits
    -- later.
    after_log_id    BIGINT      NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The legacy tables as this migration found them. Nothing writes them
-- since the lean-audit migration renamed them; a row above `last_id`,
-- recorded after `recorded_at`, or more rows than counted here, was forged.
CREATE TABLE audit_legacy_frozen (
    one_row         BOOLEAN     PRIMARY KEY DEFAULT true CHECK (one_row),
    last_id         BIGINT      NOT NULL,
    audit_rows      BIGINT      NOT NULL,
    payload_rows    BIGINT      NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO audit_legacy_frozen (last_id, audit_rows, payload_rows)
SELECT coalesce(max(id), 0), count(*), (SELECT count(*) FROM message_payloads_v1)
  FROM message_audit_v1;

CREATE TRIGGER audit_chain_marks_append_only BEFORE UPDATE OR DELETE ON audit_chain_marks
    FOR EACH ROW EXECUTE FUNCTION custodian_refuse_change();
CREATE TRIGGER audit_chain_marks_no_truncate BEFORE TRUNCATE ON audit_chain_marks
    FOR EACH STATEMENT EXECUTE FUNCTION custodian_refuse_change();
CREATE TRIGGER audit_legacy_frozen_append_only BEFORE UPDATE OR DELETE ON audit_legacy_frozen
    FOR EACH ROW EXECUTE FUNCTION custodian_refuse_change();
CREATE TRIGGER audit_legacy_frozen_no_truncate BEFORE TRUNCATE ON audit_legacy_frozen
    FOR EACH STATEMENT EXECUTE FUNCTION custodian_refuse_change();

-- Unchained rows are few where chaining is on: verify finds them by this
-- index instead of reading the whole table.
CREATE INDEX audit_log_unchained ON audit_log (id) WHERE chain_id IS NULL;

-- custodian never writes the legacy tables again.
REVOKE INSERT ON message_audit_v1, message_payloads_v1 FROM custodian_audit_writer;
GRANT SELECT, INSERT ON audit_chain_marks TO custodian_audit_writer;
GRANT SELECT ON audit_legacy_frozen TO custodian_audit_writer;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO custodian_audit_writer;
