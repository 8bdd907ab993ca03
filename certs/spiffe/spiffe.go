// Package spiffe parses and checks the workload identities Maestro issues:
// SPIFFE IDs of the form spiffe://<trust-domain>/ns/<namespace>/sa/<account>,
// carried as the single URI SAN of an X.509 leaf.
package spiffe

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// maxIDLength is the SPIFFE specification's limit on the length of an ID.
const maxIDLength = 2048

// ErrInvalidID is wrapped by every parse or validation failure.
var ErrInvalidID = errors.New("invalid spiffe id")

// ErrNoID means a certificate carries no SPIFFE ID in its URI SANs.
var ErrNoID = errors.New("certificate has no spiffe id")

// ID is a workload identity: a service account in a namespace of a trust
// domain. The zero value is not a valid ID.
type ID struct {
	TrustDomain    string
	Namespace      string
	ServiceAccount string
}

// New returns the ID for service account sa in namespace ns of trust domain
// td, checking every part.
func New(td, ns, sa string) (ID, error) {
	id := ID{TrustDomain: td, Namespace: ns, ServiceAccount: sa}
	if err := id.Validate(); err != nil {
		return ID{}, err
	}
	return id, nil
}

// Must is New for identities known at compile time; it panics on an invalid
// ID, so it is for tests and constants only.
func Must(td, ns, sa string) ID {
	id, err := New(td, ns, sa)
	if err != nil {
		panic(err)
	}
	return id
}

// Validate reports whether every part of id is allowed by the SPIFFE
// specification and Maestro's path shape.
func (id ID) Validate() error {
	if err := validateTrustDomain(id.TrustDomain); err != nil {
		return err
	}
	if err := validateSegment("namespace", id.Namespace); err != nil {
		return err
	}
	if err := validateSegment("service account", id.ServiceAccount); err != nil {
		return err
	}
	if len(id.String()) > maxIDLength {
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidID, maxIDLength)
	}
	return nil
}

// IsZero reports whether id is the zero value.
func (id ID) IsZero() bool { return id == ID{} }

// String returns the URI form spiffe://td/ns/ns/sa/sa.
func (id ID) String() string {
	return "spiffe://" + id.TrustDomain + "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount
}

// URL returns id as a URL, the form x509.Certificate.URIs holds.
func (id ID) URL() *url.URL {
	return &url.URL{Scheme: "spiffe", Host: id.TrustDomain, Path: "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount}
}

// MarshalText implements encoding.TextMarshaler so IDs appear as URIs in
// JSON and YAML.
func (id ID) MarshalText() ([]byte, error) {
	if id.IsZero() {
		return []byte{}, nil
	}
	return []byte(id.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with Parse.
func (id *ID) UnmarshalText(b []byte) error {
	p, err := Parse(string(b))
	if err != nil {
		return err
	}
	*id = p
	return nil
}

// Parse reads an ID of the form spiffe://<td>/ns/<ns>/sa/<sa>. It is strict:
// upper-case trust domains, ports, user info, queries, fragments, percent
// escapes, empty, "." and ".." segments and any other path shape are errors.
func Parse(s string) (ID, error) {
	if len(s) > maxIDLength {
		return ID{}, fmt.Errorf("%w: longer than %d bytes", ErrInvalidID, maxIDLength)
	}
	const scheme = "spiffe://"
	if !strings.HasPrefix(s, scheme) {
		return ID{}, fmt.Errorf("%w %q: scheme must be spiffe://", ErrInvalidID, s)
	}
	rest := s[len(scheme):]
	td, path, ok := strings.Cut(rest, "/")
	if !ok {
		return ID{}, fmt.Errorf("%w %q: missing path /ns/<namespace>/sa/<account>", ErrInvalidID, s)
	}
	if err := validateTrustDomain(td); err != nil {
		return ID{}, fmt.Errorf("%q: %w", s, err)
	}
	parts := strings.Split(path, "/")
	if len(parts) != 4 || parts[0] != "ns" || parts[2] != "sa" {
		return ID{}, fmt.Errorf("%w %q: path must be /ns/<namespace>/sa/<account>", ErrInvalidID, s)
	}
	id := ID{TrustDomain: td, Namespace: parts[1], ServiceAccount: parts[3]}
	if err := validateSegment("namespace", id.Namespace); err != nil {
		return ID{}, fmt.Errorf("%q: %w", s, err)
	}
	if err := validateSegment("service account", id.ServiceAccount); err != nil {
		return ID{}, fmt.Errorf("%q: %w", s, err)
	}
	return id, nil
}

// validateTrustDomain applies the specification's rule: lower-case letters,
// digits, '.', '-' and '_' only, which also rules out ports and user info.
func validateTrustDomain(td string) error {
	if td == "" {
		return fmt.Errorf("%w: empty trust domain", ErrInvalidID)
	}
	if len(td) > 255 {
		return fmt.Errorf("%w: trust domain longer than 255 bytes", ErrInvalidID)
	}
	for i := 0; i < len(td); i++ {
		c := td[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("%w: trust domain %q: character %q not allowed (want a-z 0-9 . - _)", ErrInvalidID, td, c)
		}
	}
	return nil
}

// validateSegment applies the specification's path-segment rule: letters,
// digits, '.', '-' and '_', and never "." or "..".
func validateSegment(what, seg string) error {
	if seg == "" {
		return fmt.Errorf("%w: empty %s", ErrInvalidID, what)
	}
	if seg == "." || seg == ".." {
		return fmt.Errorf("%w: %s %q is a relative path segment", ErrInvalidID, what, seg)
	}
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("%w: %s %q: character %q not allowed (want A-Z a-z 0-9 . - _)", ErrInvalidID, what, seg, c)
		}
	}
	return nil
}

// FromCertificate returns the SPIFFE ID in cert's URI SANs. Per the X.509
// SVID specification a leaf carries exactly one; zero or several is an error.
func FromCertificate(cert *x509.Certificate) (ID, error) {
	if cert == nil {
		return ID{}, ErrNoID
	}
	var found []string
	for _, u := range cert.URIs {
		if u.Scheme == "spiffe" {
			found = append(found, u.String())
		}
	}
	switch len(found) {
	case 0:
		return ID{}, ErrNoID
	case 1:
		return Parse(found[0])
	default:
		return ID{}, fmt.Errorf("%w: certificate has %d spiffe URI SANs, want exactly one", ErrInvalidID, len(found))
	}
}
