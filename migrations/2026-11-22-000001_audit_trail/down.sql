-- The audit trail is evidence: no migration drops it. An operator who really
-- means to must drop the tables by hand.
DO $$ BEGIN
    RAISE EXCEPTION 'custodian: refusing to revert the audit trail migration';
END $$;
