-- The probe of an installation's trigger: each step's statements change the
-- queue table (:queue, quoted and qualified) in some way, and what matters is
-- which notifications each step sends on the channel (:"channel").
-- scripts/pgqueuer-reference runs it with psql on PgQueuer's own install
-- (pgqueuer-*-notify.txt is what it recorded); TestTriggerMatchesPgQueuer
-- runs it on jobwatch's install and compares. Only "\echo step" lines and
-- statements, each ending with a semicolon at the end of a line (no quote
-- marks in a step name: psql would read them as quoting).
LISTEN :"channel";
\echo step insert two rows
INSERT INTO :queue (priority, entrypoint, status) VALUES (0, 'probe', 'queued'), (1, 'probe', 'queued');
\echo step update every row
UPDATE :queue SET status = 'picked', heartbeat = NOW();
\echo step update no row
UPDATE :queue SET heartbeat = NOW() WHERE false;
\echo step delete no row
DELETE FROM :queue WHERE false;
\echo step update one row and delete none in one statement, as a hold through the log_jobs query of PgQueuer does
WITH gone AS (DELETE FROM :queue WHERE false RETURNING id) UPDATE :queue SET status = 'failed' WHERE id = (SELECT min(id) FROM :queue);
\echo step delete one row
DELETE FROM :queue WHERE id = (SELECT min(id) FROM :queue);
\echo step insert, update and delete in one transaction
BEGIN;
INSERT INTO :queue (priority, entrypoint, status) VALUES (2, 'probe', 'queued');
UPDATE :queue SET status = 'picked' WHERE priority = 2;
DELETE FROM :queue WHERE priority = 2;
COMMIT;
\echo step truncate
TRUNCATE :queue;
\echo step end
