package controlplane

import (
	"context"
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/snapshot"
	"github.com/maestro-ml/maestro/controlplane/xds"
)

// Redacted replaces private keys in previews.
const Redacted = "[redacted]"

// Preview returns the resources node would receive from a control plane
// serving paths, and its group: the same loader, translation and grouping
// the server uses (Certificates.Loader, snapshot translation, Mesh.GroupFor),
// with private keys replaced by Redacted so the output can be shared.
//
// # Errors
//
// Policy problems (a policy.ErrorList), translation failures, or
// xds.ErrUnknownNode when no group matches node.
func Preview(ctx context.Context, load Loader, paths []string, node model.NodeInfo) (*xds.Resources, string, error) {
	m, _, err := load(ctx, paths)
	if err != nil {
		return nil, "", err
	}
	set, err := snapshot.Translate(m)
	if err != nil {
		return nil, "", fmt.Errorf("translate: %w", err)
	}
	group, ok := m.GroupFor(node)
	if !ok {
		return nil, "", fmt.Errorf("node %q role %q service %q: %w", node.ID, node.Role, node.Service, xds.ErrUnknownNode)
	}
	res := set.Resources[group]
	if res == nil {
		return nil, "", fmt.Errorf("group %q has no resources", group)
	}
	return redact(res), group, nil
}

// redact returns r with every private key replaced; r is not modified.
func redact(r *xds.Resources) *xds.Resources {
	out := &xds.Resources{Items: map[resource.Type][]types.Resource{}, Versions: r.Versions}
	for t, items := range r.Items {
		if t != resource.SecretType {
			out.Items[t] = items
			continue
		}
		for _, it := range items {
			s, ok := it.(*tlsv3.Secret)
			if !ok || s.GetTlsCertificate() == nil {
				out.Items[t] = append(out.Items[t], it)
				continue
			}
			c := proto.Clone(s).(*tlsv3.Secret)
			c.GetTlsCertificate().PrivateKey = &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: Redacted}}
			out.Items[t] = append(out.Items[t], c)
		}
	}
	return out
}
