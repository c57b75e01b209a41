-- A SQLite file as nostr-swarm wrote it before versioned migrations (commit ed822ea):
-- sqlite3.Connection.iterdump() of the payments store, replayed by tests/support/state_files.py.
BEGIN TRANSACTION;
CREATE TABLE payments (
    payment_hash TEXT PRIMARY KEY,
    invoice TEXT NOT NULL,
    job_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    amount_msats INTEGER NOT NULL CHECK (amount_msats > 0),
    state TEXT NOT NULL CHECK (state IN ('intent', 'paid', 'failed', 'unknown')),
    preimage TEXT,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
INSERT INTO "payments" VALUES('cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc','lnbcrtcccccccc','j1','p1',4000,'paid','dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd',NULL,1,1700000000,1700000001);
INSERT INTO "payments" VALUES('eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee','lnbcrteeeeeeee','j2','p2',2000,'intent',NULL,NULL,1,1700000002,1700000002);
INSERT INTO "payments" VALUES('ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff','lnbcrtffffffff','j3','p3',1000,'failed',NULL,'NO_ROUTE: none',1,1700000003,1700000004);
CREATE INDEX payments_job ON payments(job_id);
CREATE INDEX payments_time ON payments(created_at);
COMMIT;
