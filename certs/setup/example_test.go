package setup_test

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/maestro-ml/maestro/certs/audit"
	"github.com/maestro-ml/maestro/certs/mtls"
	"github.com/maestro-ml/maestro/certs/secretauth"
	"github.com/maestro-ml/maestro/certs/setup"
	"github.com/maestro-ml/maestro/certs/spiffe"
)

// Example shows the wiring a control plane needs: start the issuer and
// rotation manager, serve xDS over mTLS with its own rotating certificate,
// authorise secret requests per peer, and turn every snapshot into secrets.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fs := flag.NewFlagSet("controlplane", flag.ContinueOnError)
	var opts setup.Options
	opts.RegisterFlags(fs)
	if err := fs.Parse([]string{"--ca-dir", "", "--trust-domain", "cluster.local"}); err != nil {
		panic(err)
	}
	self := spiffe.Must(opts.TrustDomain, "maestro-system", "controlplane")
	opts.Always = []spiffe.ID{self}

	auditLog := audit.New(os.Stderr, nil)
	reg := prometheus.NewRegistry()
	running, err := opts.Start(setup.Deps{Logger: slog.Default(), Registerer: reg, Audit: auditLog})
	if err != nil {
		panic(err)
	}
	go func() { _ = running.Run(ctx) }()

	// The xDS server: mTLS with the control plane's own certificate; the
	// guard decides per stream which secrets a node may receive.
	guard, err := secretauth.New(secretauth.Config{TrustDomain: opts.TrustDomain, Shared: []string{"trust-bundle"}, Audit: auditLog, Registerer: reg})
	if err != nil {
		panic(err)
	}
	_ = grpc.NewServer(grpc.Creds(credentials.NewTLS(mtls.ServerConfig(running.Manager, self, spiffe.AllowTrustDomain(opts.TrustDomain)))))
	_ = guard // OnStreamOpen: guard.Open(ctx, id); OnStreamRequest (secrets): guard.Check(ctx, id, node, names); OnStreamClosed: guard.Close(id)

	// Identities come from the policy (one per service); every snapshot
	// becomes SDS secrets named by SPIFFE ID plus the trust bundle.
	running.Manager.SetIdentities([]spiffe.ID{spiffe.Must(opts.TrustDomain, "default", "web")})
	for snap := range running.Manager.Subscribe(ctx) {
		if len(snap.Certs) < 2 {
			continue
		}
		for _, id := range snap.IDs() {
			c := snap.Certs[id]
			_, _ = c.ChainPEM(), c.KeyPEM() // tls_certificate of secret id.String()
		}
		_ = snap.Bundle.PEM() // validation_context of the trust bundle secret
		fmt.Println(len(snap.Certs), "certificates, bundle of", len(snap.Bundle.Roots), "root")
		break
	}
	// Output: 2 certificates, bundle of 1 root
}
