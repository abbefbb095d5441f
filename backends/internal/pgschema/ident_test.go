package pgschema_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/jobwatch/jobwatch/backends/internal/pgschema"
)

func TestValidateIdentifier(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		in   string
		ok   bool
	}{
		{"simple", "jobs", true},
		{"underscore and digits", "a_1_b", true},
		{"leading digit (quoted anyway)", "1abc", true},
		{"dash", "my-app", true},
		{"upper case kept", "MyApp", true},
		{"unicode letters", "tâches_日本", true},
		{"unicode digits", "x٣", true},
		{"63 bytes", strings.Repeat("a", 63), true},
		{"64 bytes", strings.Repeat("a", 64), false},
		{"63 bytes of 3-byte runes", strings.Repeat("日", 21), true},
		{"66 bytes of 3-byte runes", strings.Repeat("日", 22), false},
		{"62 bytes plus 2-byte rune", strings.Repeat("a", 62) + "é", false},
		{"61 bytes plus 2-byte rune", strings.Repeat("a", 61) + "é", true},
		{"empty", "", false},
		{"double quote", `a"b`, false},
		{"single quote", "a'b", false},
		{"semicolon", "a;drop table x", false},
		{"NUL", "a\x00b", false},
		{"space", "a b", false},
		{"tab", "a\tb", false},
		{"newline", "a\nb", false},
		{"non-breaking space", "a\u00a0b", false},
		{"dollar", "a$b", false},
		{"dot", "a.b", false},
		{"backslash", `a\b`, false},
		{"invalid UTF-8", "a\xffb", false},
		{"combining mark", "e\u0301", false},
		{"emoji", "a🙂", false},
		{"zero-width space", "a\u200bb", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := pgschema.ValidateIdentifier("schema", c.in)
			if c.ok && err != nil {
				t.Fatalf("ValidateIdentifier(%q) = %v, want nil", c.in, err)
			}
			if !c.ok {
				if err == nil {
					t.Fatalf("ValidateIdentifier(%q) = nil, want an error", c.in)
				}
				if !errors.Is(err, pgschema.ErrInvalidIdentifier) {
					t.Fatalf("error %v does not match ErrInvalidIdentifier", err)
				}
				var ie *pgschema.IdentifierError
				if !errors.As(err, &ie) || ie.Kind != "schema" || ie.Reason == "" {
					t.Fatalf("error %#v is not a descriptive *IdentifierError", err)
				}
			}
		})
	}
}

func TestValidatePrefix(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"", "app_", "a", "App-1_"} {
		if err := pgschema.ValidatePrefix(ok); err != nil {
			t.Errorf("ValidatePrefix(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{" ", "a;", `a"`, "a'", "a\x00", "a b"} {
		if err := pgschema.ValidatePrefix(bad); !errors.Is(err, pgschema.ErrInvalidIdentifier) {
			t.Errorf("ValidatePrefix(%q) = %v, want ErrInvalidIdentifier", bad, err)
		}
	}
}

func TestQuote(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, ident, lit string }{
		{"abc", `"abc"`, `'abc'`},
		{`a"b`, `"a""b"`, `'a"b'`},
		{"a'b", `"a'b"`, `'a''b'`},
		{"", `""`, `''`},
		{"日本", `"日本"`, `'日本'`},
	}
	for _, c := range cases {
		if got := pgschema.QuoteIdentifier(c.in); got != c.ident {
			t.Errorf("QuoteIdentifier(%q) = %s, want %s", c.in, got, c.ident)
		}
		if got := pgschema.QuoteLiteral(c.in); got != c.lit {
			t.Errorf("QuoteLiteral(%q) = %s, want %s", c.in, got, c.lit)
		}
	}
}
