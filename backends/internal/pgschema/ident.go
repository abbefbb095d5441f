package pgschema

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxIdentifierBytes is PostgreSQL's identifier limit (NAMEDATALEN-1). A
// longer name is silently truncated by CREATE and rejected by pg_notify, so
// every name this package builds must fit.
const MaxIdentifierBytes = 63

// ErrInvalidIdentifier matches every rejected prefix, schema or channel name.
var ErrInvalidIdentifier = errors.New("jobwatch: invalid identifier")

// IdentifierError says which name was rejected and why. It matches
// ErrInvalidIdentifier.
type IdentifierError struct {
	Kind   string // "prefix", "schema", "channel", or the object kind
	Name   string // the rejected name (possibly truncated for display)
	Reason string
}

func (e *IdentifierError) Error() string {
	return fmt.Sprintf("jobwatch: invalid %s %q: %s", e.Kind, e.Name, e.Reason)
}

// Is makes errors.Is(err, ErrInvalidIdentifier) true.
func (e *IdentifierError) Is(target error) bool { return target == ErrInvalidIdentifier }

// identRune reports whether r may appear in a name. The set is deliberately
// narrow: letters and digits of any script, '_' and '-'. That excludes
// quotes of both kinds, ';', '$' (it would end the dollar-quoted trigger
// body), '\\', '.', whitespace, control characters and NUL, so a name can
// never change the meaning of the SQL it is spliced into, even before
// quoting (which is applied anyway).
func identRune(r rune) bool {
	return r == '_' || r == '-' || unicode.IsLetter(r) || unicode.IsDigit(r)
}

// checkChars validates the characters of a name (the empty name is left to
// the caller: a prefix may be empty, a channel may not).
func checkChars(kind, name string) error {
	if !utf8.ValidString(name) {
		return &IdentifierError{Kind: kind, Name: display(name), Reason: "not valid UTF-8"}
	}
	for i, r := range name {
		if !identRune(r) {
			return &IdentifierError{Kind: kind, Name: display(name),
				Reason: fmt.Sprintf("character %q at byte %d is not allowed (use letters, digits, '_' or '-')", r, i)}
		}
	}
	return nil
}

// checkLen validates the byte length of a complete identifier.
func checkLen(kind, name string) error {
	if name == "" {
		return &IdentifierError{Kind: kind, Name: name, Reason: "empty"}
	}
	if len(name) > MaxIdentifierBytes {
		return &IdentifierError{Kind: kind, Name: display(name),
			Reason: fmt.Sprintf("%d bytes, PostgreSQL's limit is %d", len(name), MaxIdentifierBytes)}
	}
	return nil
}

// ValidateIdentifier checks a complete identifier (a schema or channel name,
// or an object name): 1 to 63 bytes of letters, digits, '_' or '-'. kind
// names it in the error.
func ValidateIdentifier(kind, name string) error {
	if err := checkLen(kind, name); err != nil {
		return err
	}
	return checkChars(kind, name)
}

// ValidatePrefix checks a prefix: empty is allowed; otherwise the characters
// of an identifier. The length is checked on the names built from it, by
// NewNames.
func ValidatePrefix(prefix string) error {
	return checkChars("prefix", prefix)
}

// QuoteIdentifier quotes name as a PostgreSQL identifier: wrapped in double
// quotes, embedded double quotes doubled. Validated names contain none, but
// quoting never depends on validation having run.
func QuoteIdentifier(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// QuoteLiteral quotes s as a standard-conforming SQL string literal.
func QuoteLiteral(s string) string {
	return `'` + strings.ReplaceAll(s, `'`, `''`) + `'`
}

func display(s string) string {
	const max = 80
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
