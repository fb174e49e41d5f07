-- fencelock's fence in PostgreSQL: per resource, the highest fencing token
-- a transaction committed under; checked and raised inside the caller's
-- transaction (docs/fencing.md). Idempotent: running it again changes
-- nothing (IF NOT EXISTS, OR REPLACE), so it can be run at every start.

CREATE TABLE IF NOT EXISTS fencelock_fence (
    resource   text PRIMARY KEY,
    token      bigint NOT NULL CHECK (token >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Admits the current transaction's writes to `p_resource` under fencing
-- token `p_token`: returns it when no higher token was committed for the
-- resource, and records it; otherwise raises SQLSTATE FL001, which fails
-- the transaction, so nothing it wrote is kept.
--
-- The upsert locks the resource's row until the transaction ends: a
-- concurrent transaction of another holder waits at its own call, then
-- sees this token if this one committed (and is refused when its token is
-- lower), or the old one if this one rolled back. A check and a write in
-- one statement, no read-then-write race. Equal tokens pass: one holder
-- may commit several transactions under its token.
CREATE OR REPLACE FUNCTION fencelock_fence(p_resource text, p_token bigint)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    accepted bigint;
    highest  bigint;
BEGIN
    INSERT INTO fencelock_fence AS f (resource, token)
    VALUES (p_resource, p_token)
    ON CONFLICT (resource) DO UPDATE
        SET token = EXCLUDED.token, updated_at = now()
        WHERE f.token <= EXCLUDED.token
    RETURNING f.token INTO accepted;
    IF accepted IS NULL THEN
        SELECT token INTO highest FROM fencelock_fence WHERE resource = p_resource;
        RAISE EXCEPTION USING
            ERRCODE = 'FL001',
            MESSAGE = format('fencelock: stale fencing token %s for %L', p_token, p_resource),
            DETAIL = format('token %s was committed for it already', highest),
            HINT = 'a newer holder of the lock wrote; this one lost the lock';
    END IF;
    RETURN accepted;
END
$$;
