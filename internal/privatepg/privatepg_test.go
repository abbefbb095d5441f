package privatepg

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pgxv5 "github.com/jackc/pgx/v5"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStartConnectClose(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := Start(ctx, Config{Settings: map[string]string{"work_mem": "5MB"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	conn, err := pgxv5.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		t.Fatalf("connect: %v\n%s", err, s.LogTail())
	}
	var workMem string
	err = conn.QueryRow(ctx, "SHOW work_mem").Scan(&workMem)
	conn.Close(ctx)
	if err != nil || workMem != "5MB" {
		t.Errorf("work_mem %q, %v: the settings were not passed", workMem, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the directory is still there: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
	defer ccancel()
	if c, err := pgxv5.Connect(cctx, s.DSN("postgres")); err == nil {
		c.Close(cctx)
		t.Error("the server still answers after Close")
	}
}

func TestBadSettingLeavesNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// A temporary directory of the test's own, so that servers other
	// tests or runs start meanwhile are not counted (short: the server's
	// socket goes under it).
	tmp, err := os.MkdirTemp("", "pgt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	if err := os.Chmod(tmp, 0o755); err != nil { // the server may run as another user
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", tmp)
	_, err = Start(ctx, Config{Settings: map[string]string{"no_such_setting": "1"}})
	if err == nil {
		t.Fatal("a server with an unknown setting started")
	}
	if !strings.Contains(err.Error(), "no_such_setting") {
		t.Errorf("Start = %v, want it to name the bad setting", err)
	}
	left, _ := filepath.Glob(filepath.Join(tmp, "jobwatch-pg-*"))
	for _, d := range left {
		t.Errorf("a failed start left %s behind", d)
	}
}

func TestFindBinDirHonoursTheVariable(t *testing.T) {
	t.Setenv(EnvBinDir, t.TempDir())
	if _, err := FindBinDir(context.Background()); !errors.Is(err, ErrNoBinaries) {
		t.Errorf("an empty $%s: %v", EnvBinDir, err)
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
