package pq

import (
	"errors"
	"net/url"
	"strings"

	libpq "github.com/lib/pq"

	"github.com/jobwatch/jobwatch/internal/redact"
)

// maxAppName is the longest application_name the server stores unchanged
// (NAMEDATALEN-1 bytes).
const maxAppName = 63

// dsnInfo is the listener's connection string and what must never appear in
// an error or a log line: the DSN itself and its password, in every form the
// DSN spells it (internal/redact).
type dsnInfo struct {
	raw     string
	appBase string // the caller's application_name, sanitized (may be empty)
	secrets redact.Redactor
}

// parseDSN validates dsn with lib/pq's own parser (URL or key=value; the
// environment variables lib/pq honours fill in what the DSN leaves out, so
// an empty DSN is all PG* defaults) and collects its secrets. The error, if
// any, is already redacted.
func parseDSN(dsn string) (dsnInfo, error) {
	d := dsnInfo{raw: dsn, secrets: redact.ForDSN(dsn)}
	cfg, err := libpq.NewConfig(dsn)
	if err != nil {
		return d, errors.New(d.redact(err.Error()))
	}
	d.secrets.Add(cfg.Password)
	d.appBase = sanitizeAppName(cfg.ApplicationName)
	return d, nil
}

// redact removes the whole DSN and every secret from s.
func (d dsnInfo) redact(s string) string { return d.secrets.String(s) }

// redactErr returns err unchanged when its message holds no secret, else an
// error with the redacted message that still unwraps to err (so errors.Is
// and errors.As keep working).
func (d dsnInfo) redactErr(err error) error { return d.secrets.Error(err) }

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
