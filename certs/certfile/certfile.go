// Package certfile stores a workload certificate as the three PEM files
// that file-based consumers read: gRPC's file_watcher certificate provider
// (proxyless clients), Envoy's file-based SDS, and `maestro certs issue`.
//
//	cert.pem  leaf then intermediates
//	key.pem   PKCS#8 private key, mode 0600
//	ca.pem    trust bundle
package certfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/maestro-ml/maestro/certs"
	"github.com/maestro-ml/maestro/certs/spiffe"
)

// File names inside the directory.
const (
	CertFile = "cert.pem"
	KeyFile  = "key.pem"
	CAFile   = "ca.pem"
)

// Write stores c in dir (created 0700 if missing). Each file is replaced
// atomically, the key before the certificate, so a reader never pairs a new
// certificate with an old key for long; readers that need strict pairing
// check with Load, which refuses a mismatch.
func Write(dir string, c *certs.Certificate) error {
	if c == nil {
		return errors.New("write certificate files: no certificate")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write certificate files: %w", err)
	}
	if err := writeAtomic(dir, KeyFile, c.KeyPEM(), 0o600); err != nil {
		return err
	}
	if err := writeAtomic(dir, CertFile, c.ChainPEM(), 0o644); err != nil {
		return err
	}
	if c.Bundle == nil {
		return errors.New("write certificate files: certificate has no trust bundle")
	}
	return writeAtomic(dir, CAFile, c.Bundle.PEM(), 0o644)
}

// Load reads the files Write stores and checks them: the key must match
// the leaf, and the leaf must carry one SPIFFE ID.
func Load(dir string) (*certs.Certificate, error) {
	read := func(name string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("load certificate files: %w", err)
		}
		return b, nil
	}
	chainPEM, err := read(CertFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := read(KeyFile)
	if err != nil {
		return nil, err
	}
	caPEM, err := read(CAFile)
	if err != nil {
		return nil, err
	}
	chain, err := certs.ParseCertificates(filepath.Join(dir, CertFile), chainPEM)
	if err != nil {
		return nil, fmt.Errorf("load certificate files: %w", err)
	}
	key, err := certs.ParsePrivateKey(filepath.Join(dir, KeyFile), keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load certificate files: %w", err)
	}
	roots, err := certs.ParseCertificates(filepath.Join(dir, CAFile), caPEM)
	if err != nil {
		return nil, fmt.Errorf("load certificate files: %w", err)
	}
	id, err := spiffe.FromCertificate(chain[0])
	if err != nil {
		return nil, fmt.Errorf("load certificate files: %s: %w", filepath.Join(dir, CertFile), err)
	}
	c, err := certs.NewCertificate(certs.Parts{ID: id, Chain: chain, Key: key, Bundle: certs.NewBundle(roots...)})
	if err != nil {
		return nil, fmt.Errorf("load certificate files from %s: %w", dir, err)
	}
	return c, nil
}

func writeAtomic(dir, name string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(dir, "."+name+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}
