package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	pgxv5 "github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jobwatch/jobwatch/internal/dbconn"
	"github.com/jobwatch/jobwatch/internal/privatepg"
)

// privateSettings are the private server's settings beyond initdb's: the
// statement counter, with planning time, and room for every statement.
// Everything else (fsync, synchronous_commit, shared_buffers, autovacuum)
// stays at PostgreSQL's defaults.
var privateSettings = map[string]string{
	"shared_preload_libraries":          "pg_stat_statements",
	"pg_stat_statements.track_planning": "on",
	"pg_stat_statements.max":            "10000",
}

// privateDB is the database the bench creates on its private server.
const privateDB = "bench"

// target is where the bench measures: a private server it started, or the
// server --dsn names; and on it, the bench's schema and two roles, one for
// the watcher (whose statements are counted) and one for the workers that
// enqueue and finish jobs (not counted).
type target struct {
	server   *privatepg.Server // nil with --dsn
	adminDSN string
	admin    *pgxpool.Pool

	schema                  string
	watcherRole, workerRole string
	watcherDSN, workerDSN   string
	createdExtension        bool
	installed, rolesCreated bool

	info serverInfo
}

// serverInfo describes the server, for the report.
type serverInfo struct {
	Private  bool              `json:"private"`
	Version  string            `json:"version"`
	Settings map[string]string `json:"settings"`
}

// errNoStatements is a server without pg_stat_statements loaded.
var errNoStatements = errors.New("pg_stat_statements is not loaded")

// openTarget starts the private server (or connects to --dsn), checks that
// pg_stat_statements counts, and creates the schema, the queue and the
// roles. close undoes all of it, also after an error here.
func openTarget(ctx context.Context, cfg *config, logf func(string, ...any)) (t *target, err error) {
	t = &target{}
	defer func() {
		if err != nil {
			t.close(logf)
			t = nil
		}
	}()
	if cfg.dsn == "" {
		logf("starting a private PostgreSQL server (initdb into a temporary directory)")
		if t.server, err = privatepg.Start(ctx, privatepg.Config{BinDir: cfg.pgBin, Settings: privateSettings}); err != nil {
			return t, err
		}
		logf("private server: port %d, directory %s", t.server.Port, t.server.Dir)
		if err := createDatabase(ctx, t.server.DSN("postgres"), privateDB); err != nil {
			return t, err
		}
		t.adminDSN = t.server.DSN(privateDB)
		t.info.Private = true
	} else {
		t.adminDSN = cfg.dsn
	}
	if t.admin, err = openAdmin(ctx, t.adminDSN); err != nil {
		return t, err
	}
	if err := t.ensureStatements(ctx); err != nil {
		return t, err
	}
	if err := t.describe(ctx); err != nil {
		return t, err
	}
	tag := randomHex(4)
	t.schema = "jobwatch_bench_" + tag
	t.watcherRole, t.workerRole = t.schema+"_watcher", t.schema+"_worker"
	if err := t.createRoles(ctx); err != nil {
		return t, err
	}
	if err := t.install(ctx); err != nil {
		return t, err
	}
	logf("PostgreSQL %s; schema %s; watcher role %s (counted), worker role %s", t.info.Settings["server_version"], t.schema, t.watcherRole, t.workerRole)
	return t, nil
}

func openAdmin(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("%w: --dsn is not a valid connection string (a postgres:// URL or key=value pairs)", errUsage)
	}
	cfg.MaxConns = 4
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err == nil {
		err = pool.Ping(ctx)
	}
	if err != nil {
		if pool != nil {
			pool.Close()
		}
		return nil, &dbError{fmt.Errorf("connect: %w", err)}
	}
	return pool, nil
}

func createDatabase(ctx context.Context, dsn, name string) error {
	conn, err := pgxv5.Connect(ctx, dsn)
	if err != nil {
		return &dbError{fmt.Errorf("connect to the private server: %w", err)}
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgxv5.Identifier{name}.Sanitize())
	return err
}

// ensureStatements checks that pg_stat_statements is loaded and creates
// the extension in the database when it is missing (dropped at close).
func (t *target) ensureStatements(ctx context.Context) error {
	var preload string
	if err := t.admin.QueryRow(ctx, "SELECT current_setting('shared_preload_libraries')").Scan(&preload); err != nil {
		return err
	}
	loaded := false
	for _, lib := range strings.Split(preload, ",") {
		loaded = loaded || strings.Trim(strings.TrimSpace(lib), `"`) == "pg_stat_statements"
	}
	if !loaded {
		want := "pg_stat_statements"
		if strings.TrimSpace(preload) != "" {
			want = strings.TrimSpace(preload) + ", pg_stat_statements"
		}
		return fmt.Errorf("%w on this server (shared_preload_libraries is %q): the bench counts the watcher's statements with it. "+
			"Set it as superuser with ALTER SYSTEM SET shared_preload_libraries = '%s'; and restart the server "+
			"(optionally also ALTER SYSTEM SET pg_stat_statements.track_planning = on), "+
			"or leave out --dsn and the bench starts a private server of its own", errNoStatements, preload, want)
	}
	var exists bool
	if err := t.admin.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_stat_statements')").Scan(&exists); err != nil {
		return err
	}
	if !exists {
		if _, err := t.admin.Exec(ctx, "CREATE EXTENSION pg_stat_statements"); err != nil {
			return fmt.Errorf("CREATE EXTENSION pg_stat_statements: %w", err)
		}
		t.createdExtension = true
	}
	return nil
}

// describedSettings are the server settings the report shows.
var describedSettings = []string{
	"server_version", "shared_buffers", "synchronous_commit", "fsync", "autovacuum", "max_connections",
	"pg_stat_statements.track", "pg_stat_statements.track_planning", "pg_stat_statements.max",
}

func (t *target) describe(ctx context.Context) error {
	if err := t.admin.QueryRow(ctx, "SELECT version()").Scan(&t.info.Version); err != nil {
		return err
	}
	t.info.Settings = map[string]string{}
	for _, name := range describedSettings {
		var v string
		if err := t.admin.QueryRow(ctx, "SELECT current_setting($1, true)", name).Scan(&v); err != nil {
			return err
		}
		t.info.Settings[name] = v
	}
	return nil
}

// createRoles creates the watcher's and the workers' login roles, each
// with a random password (which trust authentication ignores).
func (t *target) createRoles(ctx context.Context) error {
	for _, r := range []struct {
		name string
		dsn  *string
	}{{t.watcherRole, &t.watcherDSN}, {t.workerRole, &t.workerDSN}} {
		pw := randomHex(16)
		if _, err := t.admin.Exec(ctx, "CREATE ROLE "+pgxv5.Identifier{r.name}.Sanitize()+" LOGIN PASSWORD '"+pw+"'"); err != nil {
			return fmt.Errorf("create the bench's roles (needs CREATEROLE): %w", err)
		}
		t.rolesCreated = true
		dsn, err := roleDSN(t.adminDSN, r.name, pw)
		if err != nil {
			return err
		}
		*r.dsn = dsn
	}
	return nil
}

// roleDSN is admin with its user and password replaced.
func roleDSN(admin, role, password string) (string, error) {
	if strings.Contains(admin, "://") {
		u, err := url.Parse(admin)
		if err != nil {
			return "", fmt.Errorf("%w: --dsn is not a valid URL", errUsage)
		}
		u.User = url.UserPassword(role, password)
		return u.String(), nil
	}
	// key=value: a later key overrides an earlier one.
	return admin + " user=" + role + " password=" + password, nil
}

// install creates the queue in the bench's schema, as the admin, and lets
// both roles use it.
func (t *target) install(ctx context.Context) error {
	db, err := dbconn.Open(ctx, dbconn.Config{DSN: t.adminDSN, Driver: "pgx", Schema: t.schema, MaxConns: 2})
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.Queue.Install(ctx); err != nil {
		return fmt.Errorf("install the queue: %w", err)
	}
	t.installed = true
	s := pgxv5.Identifier{t.schema}.Sanitize()
	roles := pgxv5.Identifier{t.watcherRole}.Sanitize() + ", " + pgxv5.Identifier{t.workerRole}.Sanitize()
	for _, q := range []string{
		"GRANT USAGE ON SCHEMA " + s + " TO " + roles,
		"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA " + s + " TO " + roles,
		"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA " + s + " TO " + roles,
	} {
		if _, err := t.admin.Exec(ctx, q); err != nil {
			return fmt.Errorf("grant the bench's roles: %w", err)
		}
	}
	return nil
}

// close drops what the bench created and stops its private server. It
// runs on its own bounded context, so that it also cleans up after Ctrl-C.
func (t *target) close(logf func(string, ...any)) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if t.admin != nil && t.server == nil {
		var stmts []string
		if t.installed {
			stmts = append(stmts, "DROP SCHEMA IF EXISTS "+pgxv5.Identifier{t.schema}.Sanitize()+" CASCADE")
		}
		if t.rolesCreated {
			stmts = append(stmts, "DROP ROLE IF EXISTS "+pgxv5.Identifier{t.watcherRole}.Sanitize(),
				"DROP ROLE IF EXISTS "+pgxv5.Identifier{t.workerRole}.Sanitize())
		}
		if t.createdExtension {
			stmts = append(stmts, "DROP EXTENSION IF EXISTS pg_stat_statements")
		}
		for _, q := range stmts {
			if _, err := t.admin.Exec(ctx, q); err != nil {
				logf("cleanup: %s: %v", q, dbconn.Redactor(t.adminDSN).Error(err))
			}
		}
		if len(stmts) > 0 {
			logf("dropped the bench's schema and roles")
		}
	}
	if t.admin != nil {
		t.admin.Close()
	}
	if t.server != nil {
		if err := t.server.Close(); err != nil {
			logf("cleanup: %v", err)
		} else {
			logf("stopped the private server and removed its directory")
		}
	}
}

// randomHex returns 2n random hex digits.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand does not fail on supported platforms
	return hex.EncodeToString(b)
}
