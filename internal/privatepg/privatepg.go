// Package privatepg runs a throwaway PostgreSQL cluster: initdb into a
// temporary directory, listening on 127.0.0.1 on a free port, stopped and
// deleted by Close. The benchmark program uses it so that its counts of
// pg_stat_statements see no other client's traffic and so that it can
// preload the extension without touching a shared server.
package privatepg

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
	"sync"
	"syscall"
	"time"
)

// EnvBinDir names the directory of the server binaries (initdb, pg_ctl,
// postgres), for when neither pg_config nor /usr/lib/postgresql finds them.
const EnvBinDir = "JOBWATCH_PG_BINDIR"

// ErrNoBinaries means the server binaries were not found.
var ErrNoBinaries = errors.New("privatepg: PostgreSQL server binaries not found")

// Config says how to start a server.
type Config struct {
	// BinDir holds initdb, pg_ctl and postgres; empty: FindBinDir.
	BinDir string
	// Settings are passed as -c name=value to the server.
	Settings map[string]string
}

// Server is a running private cluster. Its methods are safe for
// concurrent use.
type Server struct {
	BinDir string // initdb, pg_ctl, postgres
	Dir    string // temporary directory: data/, the log, the socket
	Port   int    // on 127.0.0.1
	// User is the superuser (trust authentication, no password).
	User string

	data, log string
	cred      *syscall.Credential // whom the server runs as (nil: ourselves)
	closeOnce sync.Once
	closeErr  error
}

// Start creates and starts a cluster and returns once it accepts
// connections. On error nothing is left behind. ctx bounds initdb and the
// start.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	bin := cfg.BinDir
	if bin == "" {
		var err error
		if bin, err = FindBinDir(ctx); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp("", "jobwatch-pg-")
	if err != nil {
		return nil, fmt.Errorf("privatepg: %w", err)
	}
	s := &Server{BinDir: bin, Dir: dir, User: "postgres", data: filepath.Join(dir, "data"), log: filepath.Join(dir, "server.log")}
	if err := s.start(ctx, cfg); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Server) start(ctx context.Context, cfg Config) error {
	if err := s.runAsServerUser(); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	s.Port = port
	if out, err := s.run(ctx, "initdb", "-D", s.data, "-U", s.User, "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"); err != nil {
		return fmt.Errorf("privatepg: initdb: %w\n%s", err, out)
	}
	opts := []string{"-p", strconv.Itoa(s.Port), "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=" + s.Dir}
	names := make([]string, 0, len(cfg.Settings))
	for k := range cfg.Settings {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		opts = append(opts, "-c", k+"="+cfg.Settings[k])
	}
	// The port was free when picked, but another process may take it
	// before the server binds it: then pick another, a few times.
	for attempt := 1; ; attempt++ {
		port := append([]string{"-p", strconv.Itoa(s.Port)}, opts[2:]...)
		out, err := s.run(ctx, "pg_ctl", "start", "-D", s.data, "-l", s.log, "-o", strings.Join(port, " "), "-w", "-t", "60")
		if err == nil {
			return nil
		}
		tail := s.LogTail()
		if attempt == 3 || !strings.Contains(tail, "Address already in use") {
			return fmt.Errorf("privatepg: pg_ctl start: %w\n%s\n%s", err, out, tail)
		}
		if s.Port, err = freePort(); err != nil {
			return err
		}
	}
}

// runAsServerUser arranges for the server to run as the unprivileged
// "postgres" OS user when we are root: PostgreSQL refuses to run as root.
func (s *Server) runAsServerUser() error {
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("privatepg: running as root, the server must run as an unprivileged user, "+
			"and the OS user %q does not exist (%v): create it (the postgresql package does) or run as a non-root user", "postgres", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	if err := os.Chown(s.Dir, uid, gid); err != nil {
		return fmt.Errorf("privatepg: %w", err)
	}
	return nil
}

// DSN is the URL of database db on the server, as its superuser.
func (s *Server) DSN(db string) string {
	u := url.URL{Scheme: "postgres", User: url.User(s.User), Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)),
		Path: "/" + db, RawQuery: "sslmode=disable"}
	return u.String()
}

// Close stops the server (fast shutdown: sessions are terminated) and
// deletes its directory. It is idempotent and bounded (about a minute).
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := os.Stat(filepath.Join(s.data, "postmaster.pid")); err == nil {
			if out, err := s.run(ctx, "pg_ctl", "stop", "-D", s.data, "-m", "fast", "-w", "-t", "30"); err != nil {
				s.closeErr = fmt.Errorf("privatepg: pg_ctl stop: %w\n%s", err, out)
			}
		}
		if err := os.RemoveAll(s.Dir); err != nil && s.closeErr == nil {
			s.closeErr = fmt.Errorf("privatepg: %w", err)
		}
	})
	return s.closeErr
}

// run runs one of the server's binaries as the server's user, bounded by
// ctx, and returns what it printed. Output goes to a file, not a pipe: the
// postmaster that pg_ctl starts must not hold a pipe of ours open.
func (s *Server) run(ctx context.Context, name string, args ...string) (string, error) {
	out, err := os.CreateTemp(s.Dir, name+"-*.out")
	if err != nil {
		return "", err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	if s.cred != nil {
		_ = os.Chown(out.Name(), int(s.cred.Uid), int(s.cred.Gid))
	}
	cmd := exec.CommandContext(ctx, filepath.Join(s.BinDir, name), args...)
	cmd.Dir = s.Dir
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

// LogTail is the end of the server's log, for error messages.
func (s *Server) LogTail() string {
	b, err := os.ReadFile(s.log)
	if err != nil {
		return "(no server log: " + err.Error() + ")"
	}
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return "server log (end):\n" + string(b)
}

// FindBinDir finds the server binaries: $JOBWATCH_PG_BINDIR, pg_config
// --bindir, or the newest /usr/lib/postgresql/*/bin. The error matches
// ErrNoBinaries and says where it looked.
func FindBinDir(ctx context.Context) (string, error) {
	var tried []string
	if dir := os.Getenv(EnvBinDir); dir != "" {
		if hasServer(dir) {
			return dir, nil
		}
		return "", fmt.Errorf("%w: $%s=%s has no initdb, pg_ctl and postgres", ErrNoBinaries, EnvBinDir, dir)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "pg_config", "--bindir").Output(); err == nil {
		dir := strings.TrimSpace(string(out))
		if hasServer(dir) {
			return dir, nil
		}
		tried = append(tried, dir+" (pg_config --bindir)")
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, dir := range dirs {
		if hasServer(dir) {
			return dir, nil
		}
		tried = append(tried, dir)
	}
	return "", fmt.Errorf("%w (tried %v): install the PostgreSQL server or set $%s", ErrNoBinaries, tried, EnvBinDir)
}

func hasServer(dir string) bool {
	for _, b := range []string{"initdb", "pg_ctl", "postgres"} {
		if fi, err := os.Stat(filepath.Join(dir, b)); err != nil || fi.IsDir() {
			return false
		}
	}
	return true
}

func versionOf(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("privatepg: find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
