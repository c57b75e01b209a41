-- A SQLite file as nostr-swarm wrote it before versioned migrations (commit ed822ea):
-- sqlite3.Connection.iterdump() of the reputation store, replayed by tests/support/state_files.py.
BEGIN TRANSACTION;
CREATE TABLE flags (
    customer TEXT NOT NULL,
    provider TEXT NOT NULL,
    at       REAL NOT NULL,
    model    TEXT NOT NULL,
    weights  TEXT NOT NULL,
    engine   TEXT NOT NULL,
    peers    TEXT NOT NULL,
    reason   TEXT NOT NULL
);
INSERT INTO "flags" VALUES('me','p2',1700000000.0,'m','sha256:abababababababababababababababababababababababababababababababab','llama.cpp','p1','same weights and settings, different answer');
CREATE TABLE reputation (
    customer    TEXT NOT NULL,
    provider    TEXT NOT NULL,
    jobs        INTEGER NOT NULL DEFAULT 0,
    results     REAL NOT NULL DEFAULT 0,
    agreed      REAL NOT NULL DEFAULT 0,
    dissented   REAL NOT NULL DEFAULT 0,
    answered    REAL NOT NULL DEFAULT 0,
    timeouts    REAL NOT NULL DEFAULT 0,
    errors      REAL NOT NULL DEFAULT 0,
    unmatched   REAL NOT NULL DEFAULT 0,
    latency_ms  REAL,
    price_msats REAL,
    paid_msats  INTEGER NOT NULL DEFAULT 0,
    first_seen  REAL NOT NULL DEFAULT 0,
    last_seen   REAL NOT NULL DEFAULT 0,
    decayed_at  REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (customer, provider)
);
INSERT INTO "reputation" VALUES('me','p2',1,1.0,0.0,1.0,0.0,0.0,0.0,0.0,300.0,2000.0,0,1700000000.0,1700000000.0,1700000000.0);
INSERT INTO "reputation" VALUES('me','p1',2,1.99793918835683426138e+00,1.99793918835683426138e+00,0.0,0.0,0.0,0.0,0.0,108.0,1000.0,2000,1700000000.0,1700003600.0,1700003600.0);
INSERT INTO "reputation" VALUES('me','p3',1,0.0,0.0,0.0,0.0,1.0,0.0,0.0,5000.0,NULL,0,1700003600.0,1700003600.0,1700003600.0);
COMMIT;
