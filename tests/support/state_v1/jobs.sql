-- A SQLite file as nostr-swarm wrote it before versioned migrations (commit ed822ea):
-- sqlite3.Connection.iterdump() of the jobs store, replayed by tests/support/state_files.py.
BEGIN TRANSACTION;
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    customer TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    received_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    state TEXT NOT NULL,
    model TEXT,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    quote_msats INTEGER,
    amount_msats INTEGER NOT NULL DEFAULT 0,
    payment_hash TEXT,
    paid INTEGER NOT NULL DEFAULT 0,  -- 1 paid, 0 not (yet), -1 invoice expired unpaid
    reason TEXT,
    latency_ms REAL,
    request TEXT,
    owner TEXT,  -- the node working the job (a fleet shares the table)
    lease_until REAL  -- renewed by the owner while working, then free for another node
);
INSERT INTO "jobs" VALUES('job1','cust',1700000000,1700000000.0,1700000000.0,'done','m',3,5,NULL,1000,'1212121212121212121212121212121212121212121212121212121212121212',0,NULL,NULL,'{}','node-a',1700000030.0);
INSERT INTO "jobs" VALUES('job2','cust',1700000001,1700000000.0,1700000000.0,'received',NULL,0,0,NULL,0,NULL,0,NULL,NULL,NULL,'node-a',1700000030.0);
CREATE INDEX jobs_received ON jobs(received_at);
CREATE INDEX jobs_state ON jobs(state);
CREATE INDEX jobs_unpaid ON jobs(payment_hash) WHERE paid = 0;
COMMIT;
