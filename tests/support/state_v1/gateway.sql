-- A SQLite file as nostr-swarm wrote it before versioned migrations (commit ed822ea):
-- sqlite3.Connection.iterdump() of the gateway store, replayed by tests/support/state_files.py.
BEGIN TRANSACTION;
CREATE TABLE accounts (
    name TEXT PRIMARY KEY,
    budget_msats INTEGER,
    budget_usd_nanos INTEGER,
    spent_msats INTEGER NOT NULL DEFAULT 0 CHECK (spent_msats >= 0),
    spent_usd_nanos INTEGER NOT NULL DEFAULT 0 CHECK (spent_usd_nanos >= 0),
    requests INTEGER NOT NULL DEFAULT 0,
    period_s INTEGER,
    period_start INTEGER NOT NULL DEFAULT 0
);
INSERT INTO "accounts" VALUES('key:alice',50000,NULL,5000,0,1,NULL,1700000000);
CREATE TABLE api_keys (
    name TEXT PRIMARY KEY,
    key_sha256 BLOB NOT NULL UNIQUE,
    spec TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    rotated_at INTEGER
);
INSERT INTO "api_keys" VALUES('bob',X'213A1D551CBFC4267729CC38FA3C341F41CFB9B3DC33D5D6221CE871A37683CD','{"models": ["m"], "rpm": 10}',1796551148,NULL);
CREATE TABLE hold_accounts (
    hold_id INTEGER NOT NULL REFERENCES holds(id),
    account TEXT NOT NULL REFERENCES accounts(name),
    PRIMARY KEY (hold_id, account)
);
INSERT INTO "hold_accounts" VALUES(1,'key:alice');
CREATE TABLE holds (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    msats INTEGER NOT NULL CHECK (msats >= 0),
    usd_nanos INTEGER NOT NULL CHECK (usd_nanos >= 0),
    initial_msats INTEGER NOT NULL DEFAULT 0,
    charged_msats INTEGER NOT NULL DEFAULT 0,
    charged_usd_nanos INTEGER NOT NULL DEFAULT 0,
    open INTEGER NOT NULL DEFAULT 1,
    label TEXT NOT NULL DEFAULT '',
    who TEXT NOT NULL DEFAULT '',
    model TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL
);
INSERT INTO "holds" VALUES(1,0,0,20000,5000,0,0,'','','',1700000000);
CREATE TABLE pending (
    payment_hash TEXT PRIMARY KEY,
    hold_id INTEGER NOT NULL REFERENCES holds(id),
    msats INTEGER NOT NULL CHECK (msats > 0),
    state TEXT NOT NULL CHECK (state IN ('pending', 'paid', 'failed')),
    created_at INTEGER NOT NULL,
    resolved_at INTEGER
);
INSERT INTO "pending" VALUES('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',1,5000,'paid',1700000000,1700000000);
INSERT INTO "pending" VALUES('bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb',1,3000,'pending',1700000000,NULL);
CREATE INDEX hold_accounts_account ON hold_accounts(account);
CREATE INDEX pending_state ON pending(state);
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('holds',1);
PRAGMA user_version = 2;
COMMIT;
