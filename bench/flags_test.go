package main

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseConfigRejectsBadInput(t *testing.T) {
	noMarkers := filepath.Join(t.TempDir(), "doc.md")
	if err := os.WriteFile(noMarkers, []byte("# no markers\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		msg  string
	}{
		{[]string{"--sizes", "0"}, "-sizes"},
		{[]string{"--sizes", "10,x"}, "not a count"},
		{[]string{"--series", "default,pgqueuer"}, "not a series"},
		{[]string{"--driver", "nope"}, "--driver"},
		{[]string{"--spread", "-1s"}, "--spread"},
		{[]string{"--interval", "0s"}, "--interval"},
		{[]string{"--batch", "0"}, "--batch"},
		{[]string{"--pool", "1"}, "--pool"},
		{[]string{"--idle", "-1s"}, "--idle"},
		{[]string{"--idle-jobs", "0"}, "--idle-jobs"},
		{[]string{"--samples", "0"}, "--samples"},
		{[]string{"--poll-interval", "0s"}, "--poll-interval"},
		{[]string{"--drain", "0s"}, "--drain"},
		{[]string{"--chart", "/nonexistent-dir/x.svg"}, "--chart"},
		{[]string{"--json", "/nonexistent-dir/x.json"}, "--json"},
		{[]string{"--doc", noMarkers}, "lacks the lines"},
		{[]string{"--doc", "/nonexistent-dir/x.md"}, "--doc"},
		{[]string{"extra"}, "unexpected argument"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, err := parseConfig(tt.args, nilWriter{})
			if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %v, want a usage error with %q", err, tt.msg)
			}
		})
	}
	if _, err := parseConfig([]string{"--help"}, nilWriter{}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help: %v", err)
	}
}

func TestQuickModeKeepsExplicitFlags(t *testing.T) {
	cfg, err := parseConfig([]string{"--quick", "--sizes", "50", "--idle", "0s"}, nilWriter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.sizes) != 1 || cfg.sizes[0] != 50 || cfg.idle != 0 {
		t.Errorf("explicit flags lost: sizes %v, idle %s", cfg.sizes, cfg.idle)
	}
	if cfg.spread != time.Second || cfg.samples != 20 || cfg.idleJobs != 1000 {
		t.Errorf("quick values not applied: spread %s, samples %d, idle jobs %d", cfg.spread, cfg.samples, cfg.idleJobs)
	}
	full, err := parseConfig(nil, nilWriter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(full.sizes) != 3 || full.spread != 30*time.Second || full.idle != time.Minute || full.idleJobs != 100_000 {
		t.Errorf("defaults are not the issue's workload: %+v", full)
	}
}

func TestCommandLineMasksThePassword(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--quick"}, "go run ./bench --quick"},
		{[]string{"--dsn", "postgres://u:s3cret@h/db"}, "go run ./bench --dsn postgres://u:xxxxx@h/db"},
		{[]string{"--dsn=host=h password=s3cret"}, "go run ./bench '--dsn=host=h password=xxxxx'"},
		{[]string{"--doc", "it's.md"}, `go run ./bench --doc 'it'\''s.md'`},
	}
	for _, tt := range tests {
		if got := commandLine(tt.args); got != tt.want {
			t.Errorf("commandLine(%q) = %q, want %q", tt.args, got, tt.want)
		}
	}
}

func TestRoleDSN(t *testing.T) {
	tests := []struct{ admin, want string }{
		{"postgres://admin:pw@127.0.0.1:5432/db?sslmode=disable", "postgres://r:p@127.0.0.1:5432/db?sslmode=disable"},
		{"host=127.0.0.1 user=admin dbname=db", "host=127.0.0.1 user=admin dbname=db user=r password=p"},
	}
	for _, tt := range tests {
		if got, err := roleDSN(tt.admin, "r", "p"); err != nil || got != tt.want {
			t.Errorf("roleDSN(%q) = %q, %v; want %q", tt.admin, got, err, tt.want)
		}
	}
}
