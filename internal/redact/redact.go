// Package redact keeps a PostgreSQL DSN's password out of error messages and
// log lines. Secrets finds the password in every spelling a DSN may hold it
// without trusting the DSN to parse (a DSN that fails to parse still ends up
// in an error message), and a Redactor replaces the DSN and its secrets in
// text, wrapping errors so that errors.Is and errors.As still see through
// them.
//
// It is shared by backends/pq and cmd/jobwatch.
package redact

import (
	"net/url"
	"regexp"
	"sort"
	"strings"
)

const (
	// Mask replaces each secret.
	Mask = "xxxxx"
	// DSNMask replaces a whole DSN (ForDSN).
	DSNMask = "<dsn>"
)

// kvPassword matches a key=value password: quoted, quoted but never closed
// (it then runs to the end, as a parser would read it), or bare.
var kvPassword = regexp.MustCompile(`(?i)(?:^|\s)password\s*=\s*('(?:[^'\\]|\\.)*'|'.*$|[^\s]*)`)

// Secrets finds the password in a DSN without trusting it to parse: the
// password of a URL's user info (raw and unescaped), a password query
// parameter (raw and unescaped), and a key=value password (quoted or not,
// unescaped too). It may return duplicates and empty strings; a Redactor
// drops both.
func Secrets(dsn string) []string {
	var out []string
	if i := strings.Index(dsn, "://"); i >= 0 {
		rest := dsn[i+3:]
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			userinfo := rest[:at]
			if c := strings.Index(userinfo, ":"); c >= 0 {
				pw := userinfo[c+1:]
				out = append(out, pw)
				if u, err := url.PathUnescape(pw); err == nil {
					out = append(out, u)
				}
			}
		}
		if q := strings.Index(rest, "?"); q >= 0 {
			for _, kv := range strings.Split(rest[q+1:], "&") {
				k, v, _ := strings.Cut(kv, "=")
				if strings.EqualFold(k, "password") {
					out = append(out, v)
					if u, err := url.QueryUnescape(v); err == nil {
						out = append(out, u)
					}
				}
			}
		}
	}
	for _, m := range kvPassword.FindAllStringSubmatch(dsn, -1) {
		v := m[1]
		out = append(out, v)
		if len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' {
			inner := v[1 : len(v)-1]
			out = append(out, inner, strings.NewReplacer(`\'`, `'`, `\\`, `\`).Replace(inner))
		} else if strings.HasPrefix(v, "'") {
			// Never closed: a parser's message may quote any part of it.
			out = append(out, v[1:])
			out = append(out, strings.Fields(v[1:])...)
		}
	}
	return out
}

// Redactor removes a DSN and secrets from text. The zero value removes
// nothing. Add must not be called concurrently with other methods; the
// others are safe for concurrent use.
type Redactor struct {
	dsn     string
	secrets []string // distinct, not empty, longest first
}

// New returns a Redactor that replaces each of secrets with Mask.
func New(secrets ...string) Redactor {
	var r Redactor
	r.Add(secrets...)
	return r
}

// ForDSN returns a Redactor that replaces dsn, wherever it appears whole,
// with DSNMask, and each of Secrets(dsn) with Mask.
func ForDSN(dsn string) Redactor {
	r := New(Secrets(dsn)...)
	r.dsn = dsn
	return r
}

// Add adds secrets to hide (empty strings and ones already known are
// ignored). Longer secrets are replaced first, so that one secret inside
// another does not leave the rest of the longer one behind.
func (r *Redactor) Add(secrets ...string) {
	for _, s := range secrets {
		if s == "" {
			continue
		}
		dup := false
		for _, have := range r.secrets {
			if have == s {
				dup = true
				break
			}
		}
		if !dup {
			r.secrets = append(r.secrets, s)
		}
	}
	sort.SliceStable(r.secrets, func(i, j int) bool { return len(r.secrets[i]) > len(r.secrets[j]) })
}

// String removes the whole DSN and every secret from s.
func (r Redactor) String(s string) string {
	if r.dsn != "" {
		s = strings.ReplaceAll(s, r.dsn, DSNMask)
	}
	for _, sec := range r.secrets {
		s = strings.ReplaceAll(s, sec, Mask)
	}
	return s
}

// Error returns err unchanged when its message holds nothing to hide (nil
// stays nil), else an error with the redacted message that still unwraps
// to err, so that errors.Is and errors.As keep working.
func (r Redactor) Error(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if red := r.String(msg); red != msg {
		return &redactedError{msg: red, err: err}
	}
	return err
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
