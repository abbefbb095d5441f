package pq

import (
	"errors"
	"net/url"
	"regexp"
	"sort"
	"strings"

	libpq "github.com/lib/pq"
)

// redacted replaces secrets in messages.
const redacted = "xxxxx"

// maxAppName is the longest application_name the server stores unchanged
// (NAMEDATALEN-1 bytes).
const maxAppName = 63

// dsnInfo is the listener's connection string and what must never appear in
// an error or a log line: the password, in every form the DSN spells it.
type dsnInfo struct {
	raw     string
	appBase string   // the caller's application_name, sanitized (may be empty)
	secrets []string // longest first
}

var kvPassword = regexp.MustCompile(`(?i)(?:^|\s)password\s*=\s*('(?:[^'\\]|\\.)*'|[^\s]*)`)

// parseDSN validates dsn with lib/pq's own parser (URL or key=value; the
// environment variables lib/pq honours fill in what the DSN leaves out) and
// collects its secrets. The error, if any, is already redacted.
func parseDSN(dsn string) (dsnInfo, error) {
	d := dsnInfo{raw: dsn}
	d.addSecrets(dsnSecrets(dsn)...)
	if strings.TrimSpace(dsn) == "" {
		return d, errors.New("empty DSN: the listener opens its own connection and needs one")
	}
	cfg, err := libpq.NewConfig(dsn)
	if err != nil {
		return d, errors.New(d.redact(err.Error()))
	}
	d.addSecrets(cfg.Password)
	d.appBase = sanitizeAppName(cfg.ApplicationName)
	return d, nil
}

// dsnSecrets finds the password in a DSN without trusting it to parse: the
// password of a URL's user info (raw and unescaped), a password query
// parameter, and a key=value password (quoted or not, unescaped too).
func dsnSecrets(dsn string) []string {
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
		}
	}
	return out
}

func (d *dsnInfo) addSecrets(s ...string) {
	for _, v := range s {
		if v == "" {
			continue
		}
		dup := false
		for _, have := range d.secrets {
			if have == v {
				dup = true
				break
			}
		}
		if !dup {
			d.secrets = append(d.secrets, v)
		}
	}
	sort.Slice(d.secrets, func(i, j int) bool { return len(d.secrets[i]) > len(d.secrets[j]) })
}

// redact removes the whole DSN and every secret from s.
func (d dsnInfo) redact(s string) string {
	if d.raw != "" {
		s = strings.ReplaceAll(s, d.raw, "<dsn>")
	}
	for _, sec := range d.secrets {
		s = strings.ReplaceAll(s, sec, redacted)
	}
	return s
}

// redactErr returns err unchanged when its message holds no secret, else an
// error with the redacted message that still unwraps to err (so errors.Is
// and errors.As keep working).
func (d dsnInfo) redactErr(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if r := d.redact(msg); r != msg {
		return &redactedError{msg: r, err: err}
	}
	return err
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// sanitizeAppName keeps printable ASCII only: the server replaces anything
// else, and the listener is found again by its exact name.
func sanitizeAppName(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c < 0x7f {
			b.WriteByte(c)
		} else {
			b.WriteByte('?')
		}
	}
	return b.String()
}

// listenerAppName is the application_name of one subscription's connection:
// the caller's (shortened to fit) followed by a unique tag, or the tag
// alone.
func (d dsnInfo) listenerAppName(tag string) string {
	suffix := "jobwatch-listener-" + tag
	if d.appBase == "" {
		return suffix
	}
	base := d.appBase
	if max := maxAppName - len(suffix) - 1; len(base) > max {
		base = base[:max]
	}
	return base + " " + suffix
}

// withAppName returns the DSN with application_name set to name (printable
// ASCII), in the DSN's own syntax: a URL gets the query parameter replaced,
// a key=value string gets the setting appended (lib/pq keeps the last one).
func (d dsnInfo) withAppName(name string) string {
	if strings.HasPrefix(d.raw, "postgres://") || strings.HasPrefix(d.raw, "postgresql://") {
		// lib/pq reads the first value of a repeated query parameter, so
		// set it rather than append it. parseDSN has already parsed the URL.
		if u, err := url.Parse(d.raw); err == nil {
			q := u.Query()
			q.Set("application_name", name)
			u.RawQuery = q.Encode()
			return u.String()
		}
	}
	q := strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(name)
	return d.raw + " application_name='" + q + "'"
}
