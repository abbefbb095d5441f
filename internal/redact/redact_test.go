package redact_test

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/jobwatch/jobwatch/internal/redact"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSecrets(t *testing.T) {
	cases := []struct {
		name string
		dsn  string
		want []string // each must be found
		none bool     // no secret at all
	}{
		{name: "url user info", dsn: "postgres://u:pw1@h:5432/d", want: []string{"pw1"}},
		{name: "url user info escaped", dsn: "postgres://u:p%40ss%2Fw@h/d", want: []string{"p%40ss%2Fw", "p@ss/w"}},
		{name: "url user info with @ in it", dsn: "postgres://u:a@b@h/d", want: []string{"a@b"}},
		{name: "url query parameter", dsn: "postgres://u@h/d?sslmode=disable&password=qp%2B1", want: []string{"qp%2B1", "qp+1"}},
		{name: "url query parameter any case", dsn: "postgresql://u@h/d?PASSWORD=Up", want: []string{"Up"}},
		{name: "key=value unquoted", dsn: "host=h password=kv1 dbname=d", want: []string{"kv1"}},
		{name: "key=value first", dsn: "password=first host=h", want: []string{"first"}},
		{name: "key=value spaces around =", dsn: "host=h password = sp1", want: []string{"sp1"}},
		{name: "key=value quoted", dsn: "host=h password='q w' dbname=d", want: []string{"'q w'", "q w"}},
		{name: "key=value escaped", dsn: `host=h password='it\'s\\x' dbname=d`, want: []string{`'it\'s\\x'`, `it\'s\\x`, `it's\x`}},
		{name: "key=value upper case key", dsn: "host=h PASSWORD=Kv2", want: []string{"Kv2"}},
		{name: "unparsable url", dsn: "postgres://u:bad1@h:notaport/d", want: []string{"bad1"}},
		{name: "unparsable key=value", dsn: "host=h password=bad2 'broken", want: []string{"bad2"}},
		{name: "key=value quote never closed", dsn: "host=h password='hunter2 second half", want: []string{"hunter2 second half", "hunter2", "second", "half"}},
		{name: "no password url", dsn: "postgres://u@h/d?sslmode=disable", none: true},
		{name: "no password key=value", dsn: "host=h user=u dbname=d", none: true},
		{name: "empty", dsn: "", none: true},
		{name: "key named like password", dsn: "host=h mypassword=x", none: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := redact.Secrets(c.dsn)
			nonEmpty := got[:0:0]
			for _, s := range got {
				if s != "" {
					nonEmpty = append(nonEmpty, s)
				}
			}
			if c.none && len(nonEmpty) != 0 {
				t.Errorf("Secrets(%q) = %q, want none", c.dsn, got)
			}
			for _, w := range c.want {
				found := false
				for _, s := range got {
					found = found || s == w
				}
				if !found {
					t.Errorf("Secrets(%q) = %q, missing %q", c.dsn, got, w)
				}
			}
		})
	}
}

func TestForDSN(t *testing.T) {
	cases := []struct {
		name, dsn, in, want string
	}{
		{"url user info", "postgres://u:pw1@h/d", "auth failed for pw1", "auth failed for xxxxx"},
		{"url user info escaped", "postgres://u:p%40ss@h/d", "bad p%40ss or p@ss", "bad xxxxx or xxxxx"},
		{"url query parameter", "postgres://u@h/d?password=qp1", "qp1!", "xxxxx!"},
		{"key=value unquoted", "host=h password=kv1", "got kv1", "got xxxxx"},
		{"key=value quoted", "host=h password='q w'", "got 'q w' and q w", "got xxxxx and xxxxx"},
		{"key=value escaped", `host=h password='it\'s'`, "got it's", "got xxxxx"},
		{"whole dsn", "postgres://u:pw1@h/d", `cannot parse "postgres://u:pw1@h/d"`, `cannot parse "<dsn>"`},
		{"unparsable dsn", "host=h password=bad2 'broken", "near bad2 'broken", "near xxxxx 'broken"},
		{"no password", "postgres://u@h/d", "connect to h failed", "connect to h failed"},
		{"longest first", "postgres://u:ab%2Fcd@h/d", "ab%2Fcd ab/cd", "xxxxx xxxxx"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := redact.ForDSN(c.dsn)
			if got := r.String(c.in); got != c.want {
				t.Errorf("String(%q) = %q, want %q", c.in, got, c.want)
			}
		})
	}
}

func TestNewAndAdd(t *testing.T) {
	var zero redact.Redactor
	if got := zero.String("a b"); got != "a b" {
		t.Errorf("zero Redactor changed %q", got)
	}
	r := redact.New("", "ab")
	r.Add("abcd", "ab", "")
	if got := r.String("abcd ab x"); got != "xxxxx xxxxx x" {
		t.Errorf("String = %q", got)
	}
}

func TestError(t *testing.T) {
	r := redact.ForDSN("postgres://u:S3cret@h/d")
	if r.Error(nil) != nil {
		t.Error("Error(nil) != nil")
	}
	clean := errors.New("connection refused")
	if got := r.Error(clean); got != clean {
		t.Errorf("an error without secrets was wrapped: %#v", got)
	}
	base := &fs.PathError{Op: "dial", Path: "h", Err: fs.ErrNotExist}
	leaky := fmt.Errorf("password S3cret rejected: %w", base)
	got := r.Error(leaky)
	if strings.Contains(got.Error(), "S3cret") || got.Error() != "password xxxxx rejected: dial h: file does not exist" {
		t.Errorf("Error() = %q", got)
	}
	var pe *fs.PathError
	if !errors.Is(got, fs.ErrNotExist) || !errors.As(got, &pe) || !errors.Is(got, leaky) {
		t.Errorf("the redacted error does not unwrap to the original: %#v", got)
	}
}
