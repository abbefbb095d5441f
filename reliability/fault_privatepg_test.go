package reliability_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	pgxv5 "github.com/jackc/pgx/v5"
)

// fltEnvPGBinDir names the directory of the PostgreSQL server binaries
// (initdb, pg_ctl), when neither pg_config nor /usr/lib/postgresql finds it.
const fltEnvPGBinDir = "JOBWATCH_PG_BINDIR"

// fltPgServer is a private PostgreSQL cluster of one test: initdb'd into a
// temporary directory, listening on 127.0.0.1 on a free port, stopped at
// cleanup. Unlike the shared test database it may be stopped and started.
type fltPgServer struct {
	bin  string // directory of initdb, pg_ctl
	dir  string // holds data/, the log and the socket
	data string
	log  string
	port int
	cred *syscall.Credential // whom the server runs as (nil: ourselves)
	DSN  string              // of the database "jobwatch"
}

// fltStartServer creates, starts and fills a private cluster, or fails the
// test saying which prerequisite is missing.
func fltStartServer(t *testing.T, ctx context.Context) *fltPgServer {
	t.Helper()
	s := &fltPgServer{bin: fltPgBinDir(t), dir: t.TempDir()}
	s.data = filepath.Join(s.dir, "data")
	s.log = filepath.Join(s.dir, "server.log")
	if os.Geteuid() == 0 {
		// PostgreSQL refuses to run as root: run it as the unprivileged
		// "postgres" user, which must be able to reach and own its
		// directory.
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root, the private PostgreSQL server must run as an unprivileged user, "+
				"and the OS user %q does not exist (%v): create it (the postgresql package does) "+
				"or run the tests as a non-root user", "postgres", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(s.dir, uid, gid); err != nil {
			t.Fatalf("chown %s to postgres: %v", s.dir, err)
		}
		// t.TempDir's parents are private (0700) to us: let postgres
		// traverse them, up to the system's temporary directory.
		tmp := filepath.Clean(os.TempDir())
		for d := filepath.Dir(s.dir); strings.HasPrefix(d, tmp+string(filepath.Separator)); d = filepath.Dir(d) {
			fi, err := os.Stat(d)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(d, fi.Mode().Perm()|0o011); err != nil {
				t.Fatalf("chmod %s: %v", d, err)
			}
		}
	}
	s.port = fltFreePort(t)

	if out, err := s.run(ctx, "initdb", "-D", s.data, "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		// Immediate: the cluster is thrown away with its directory.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := os.Stat(filepath.Join(s.data, "postmaster.pid")); err != nil {
			return // not running
		}
		if out, err := s.run(ctx, "pg_ctl", "stop", "-D", s.data, "-m", "immediate", "-w", "-t", "20"); err != nil {
			t.Errorf("pg_ctl stop at cleanup: %v\n%s", err, out)
		}
	})
	s.Start(t, ctx)

	admin := s.DSNFor("postgres")
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgxv5.Connect(cctx, admin)
	if err != nil {
		t.Fatalf("connect to the private server: %v\n%s", err, s.logTail())
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(cctx, "CREATE DATABASE jobwatch"); err != nil {
		t.Fatalf("CREATE DATABASE: %v", err)
	}
	s.DSN = s.DSNFor("jobwatch")
	return s
}

// DSNFor is the URL of database db on the private server.
func (s *fltPgServer) DSNFor(db string) string {
	u := url.URL{Scheme: "postgres", User: url.User("postgres"), Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)),
		Path: "/" + db, RawQuery: "sslmode=disable"}
	return u.String()
}

// Start starts the server and returns once it accepts connections.
func (s *fltPgServer) Start(t *testing.T, ctx context.Context) {
	t.Helper()
	opts := fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -c unix_socket_directories=%s "+
		"-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=40", s.port, s.dir)
	if out, err := s.run(ctx, "pg_ctl", "start", "-D", s.data, "-l", s.log, "-o", opts, "-w", "-t", "30"); err != nil {
		t.Fatalf("pg_ctl start: %v\n%s\n%s", err, out, s.logTail())
	}
}

// Stop stops the server (fast shutdown: sessions are terminated) and
// returns once it is down.
func (s *fltPgServer) Stop(t *testing.T, ctx context.Context) {
	t.Helper()
	if out, err := s.run(ctx, "pg_ctl", "stop", "-D", s.data, "-m", "fast", "-w", "-t", "30"); err != nil {
		t.Fatalf("pg_ctl stop: %v\n%s\n%s", err, out, s.logTail())
	}
}

// run runs one of the server's binaries as the server's user, bounded by
// ctx, and returns what it printed. Output goes to a file, not a pipe: the
// postmaster that pg_ctl starts must not hold a pipe of ours open.
func (s *fltPgServer) run(ctx context.Context, name string, args ...string) (string, error) {
	out, err := os.CreateTemp(s.dir, name+"-*.out")
	if err != nil {
		return "", err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, name), args...)
	cmd.Dir = s.dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "LC_ALL=C", "TZ=UTC"}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 5 * time.Second
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	err = cmd.Run()
	b, _ := os.ReadFile(out.Name())
	return strings.TrimSpace(string(b)), err
}

// logTail is the end of the server's log, for failure messages.
func (s *fltPgServer) logTail() string {
	b, err := os.ReadFile(s.log)
	if err != nil {
		return "(no server log: " + err.Error() + ")"
	}
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return "server log (end):\n" + string(b)
}

// fltPgBinDir finds the PostgreSQL server binaries: $JOBWATCH_PG_BINDIR,
// pg_config --bindir, or the newest /usr/lib/postgresql/*/bin.
func fltPgBinDir(t *testing.T) string {
	t.Helper()
	has := func(dir string) bool {
		for _, b := range []string{"initdb", "pg_ctl", "postgres"} {
			if fi, err := os.Stat(filepath.Join(dir, b)); err != nil || fi.IsDir() {
				return false
			}
		}
		return true
	}
	var tried []string
	if dir := os.Getenv(fltEnvPGBinDir); dir != "" {
		if has(dir) {
			return dir
		}
		t.Fatalf("$%s=%s has no initdb, pg_ctl and postgres", fltEnvPGBinDir, dir)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "pg_config", "--bindir").Output(); err == nil {
		dir := strings.TrimSpace(string(out))
		if has(dir) {
			return dir
		}
		tried = append(tried, dir+" (pg_config --bindir)")
	} else if !errors.Is(err, exec.ErrNotFound) {
		tried = append(tried, fmt.Sprintf("pg_config --bindir (%v)", err))
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return fltVersionOf(dirs[i]) > fltVersionOf(dirs[j]) })
	for _, dir := range dirs {
		if has(dir) {
			return dir
		}
		tried = append(tried, dir)
	}
	t.Fatalf("the PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found; tried %v. "+
		"Install the server (scripts/ensure-postgres does) or set $%s", tried, fltEnvPGBinDir)
	return ""
}

func fltVersionOf(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// fltFreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func fltFreePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
