package main

import (
	"flag"
	"slices"
	"testing"
)

func TestInterspersed(t *testing.T) {
	tests := []struct {
		args []string
		pos  []string
		json bool
	}{
		{[]string{"5", "--json"}, []string{"5"}, true},
		{[]string{"--json", "5", "6"}, []string{"5", "6"}, true},
		{[]string{"5", "--json", "6"}, []string{"5", "6"}, true},
		{[]string{"-"}, []string{"-"}, false},
		{[]string{"5", "--", "--json"}, []string{"5", "--json"}, false},
		{nil, nil, false},
	}
	for _, tt := range tests {
		fs := newFlagSet("test")
		asJSON := fs.Bool("json", false, "")
		pos, err := interspersed(fs, tt.args)
		if err != nil || !slices.Equal(pos, tt.pos) || *asJSON != tt.json {
			t.Errorf("%q: %q, json %v, %v; want %q, json %v", tt.args, pos, *asJSON, err, tt.pos, tt.json)
		}
	}
	fs := newFlagSet("test")
	if _, err := interspersed(fs, []string{"5", "--bogus"}); err == nil {
		t.Error("an unknown flag after an id was accepted")
	}
	if _, err := interspersed(fs, []string{"5", "--help"}); err != flag.ErrHelp {
		t.Errorf("--help after an id: %v", err)
	}
}
