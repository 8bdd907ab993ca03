package vault

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
)

// Secret is a credential read from an environment variable or a file, so
// that it never appears on a command line or in a config file. It prints and
// logs as "[redacted]".
type Secret struct {
	// Env names an environment variable holding the value.
	Env string
	// File names a file holding the value (trailing newlines ignored);
	// re-read on every login, so a rotated file is picked up.
	File string
	// Value is the literal value, for tests and programmatic use.
	Value string
}

// ErrNoSecret means a Secret has no source configured.
var ErrNoSecret = errors.New("no secret source configured")

// Resolve returns the value. Errors name the source, never the value.
func (s Secret) Resolve() (string, error) {
	switch {
	case s.Value != "":
		return s.Value, nil
	case s.Env != "":
		v, ok := os.LookupEnv(s.Env)
		if !ok || v == "" {
			return "", fmt.Errorf("environment variable %s is not set", s.Env)
		}
		return v, nil
	case s.File != "":
		b, err := os.ReadFile(s.File)
		if err != nil {
			return "", fmt.Errorf("read secret: %w", err)
		}
		v := strings.TrimRight(string(b), "\r\n")
		if v == "" {
			return "", fmt.Errorf("secret file %s is empty", s.File)
		}
		return v, nil
	}
	return "", ErrNoSecret
}

// IsSet reports whether any source is configured.
func (s Secret) IsSet() bool { return s.Value != "" || s.Env != "" || s.File != "" }

// String describes the source without the value.
func (s Secret) String() string {
	switch {
	case s.Value != "":
		return "[redacted]"
	case s.Env != "":
		return "env:" + s.Env
	case s.File != "":
		return "file:" + s.File
	}
	return "unset"
}

// LogValue keeps secrets out of structured logs.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON keeps secrets out of JSON, including JSON logs of structs
// holding a Secret.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// GoString keeps secrets out of %#v.
func (s Secret) GoString() string { return "vault.Secret(" + s.String() + ")" }
