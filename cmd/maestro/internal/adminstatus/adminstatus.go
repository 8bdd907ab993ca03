// Package adminstatus reads a running control plane's /debug/status: the
// routes with the weights the policy writes and those served, the
// rollouts and the ensembles' member weights. `maestro status` prints it
// as tables and `maestro up`'s live view as one line per route, so both
// show the control plane's own state, decoded one way.
package adminstatus

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/maestro-ml/maestro/controlplane/closedloop"
)

// MaxBody bounds the status document read (a large mesh's nodes and
// routes).
const MaxBody = 64 << 20

// Document is the part of /debug/status its readers show.
type Document struct {
	Version   string `json:"version"`
	LastError string `json:"lastError"`
	closedloop.Status
}

// Fetch reads the status document of the control plane whose admin
// address is admin (host:port or a URL), with client; ctx bounds the
// request.
//
// # Errors
//
// An address that makes no URL, a failed request, a status other than
// 200 (with the body the server gave), or a body that is not the
// document, each naming the URL.
func Fetch(ctx context.Context, client *http.Client, admin string) (Document, error) {
	var doc Document
	base := admin
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/debug/status", nil)
	if err != nil {
		return doc, fmt.Errorf("admin address %q: %w", admin, err)
	}
	res, err := client.Do(req)
	if err != nil {
		return doc, fmt.Errorf("read status: %w", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, MaxBody))
	if err != nil {
		return doc, fmt.Errorf("read status: %s: %w", req.URL, err)
	}
	if res.StatusCode != http.StatusOK {
		return doc, fmt.Errorf("read status: %s: HTTP %d: %s", req.URL, res.StatusCode, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return doc, fmt.Errorf("read status: %s: %w", req.URL, err)
	}
	return doc, nil
}
